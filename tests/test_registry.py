"""The neuron registry (`ilif.register_neuron`), the one τ default and the surrogate-width rule."""

from __future__ import annotations

import inspect

import pytest
import torch

import ilif
from ilif import surrogate
from ilif.models import create_model
from ilif.neurons import NEURON_VARIANTS, Neuron, create_neuron, neuron_class, neuron_names
from ilif.neurons import registry as reg
from ilif.train import TrainConfig


@pytest.fixture
def clean_registry():
    saved = dict(reg._REGISTRY)
    yield
    reg._REGISTRY.clear()
    reg._REGISTRY.update(saved)


def test_builtin_names_in_registration_order_with_variants() -> None:
    assert neuron_names() == ["lif", "ilif", "ilif-mpiu", "ilif-ciu", "clif", "plif", "alif",
                              "mpbn"]
    assert neuron_names(variants=False) == ["lif", "ilif", "clif", "plif", "alif", "mpbn"]
    assert neuron_class("ilif-ciu") is ilif.ILIF and neuron_class("MPBN") is ilif.MPBN
    # the decorator names each class's layers; a variant keeps its class's kind
    assert [neuron_class(n).kind for n in neuron_names()] == [
        "lif", "ilif", "ilif", "ilif", "clif", "plif", "alif", "mpbn"]
    ablation = create_neuron("ilif-mpiu", ciu_gain=0.1)
    assert ablation.mpiu and not ablation.ciu and ablation.ciu_gain == 0.1


def test_the_old_table_is_a_read_only_view_of_the_registry(clean_registry) -> None:
    assert list(NEURON_VARIANTS) == neuron_names()
    assert NEURON_VARIANTS["ilif-mpiu"] == (ilif.ILIF, {"ciu": False})
    with pytest.raises(TypeError):
        NEURON_VARIANTS["x"] = (ilif.LIF, {})  # type: ignore[index]

    @ilif.register_neuron("lif-half", v_threshold=0.5)
    class _Half(ilif.LIF):
        pass

    assert "lif-half" in NEURON_VARIANTS  # live: a new registration shows at once
    assert create_neuron("lif-half").v_threshold == 0.5
    assert create_neuron("lif-half", v_threshold=0.7).v_threshold == 0.7  # caller wins


def test_registration_errors_name_the_problem(clean_registry) -> None:
    with pytest.raises(TypeError, match="subclass of ilif.neurons.Neuron"):
        ilif.register_neuron("thing")(torch.nn.ReLU)
    with pytest.raises(ValueError, match="must start with a letter"):
        ilif.register_neuron("9 lives")
    with pytest.raises(ValueError, match="already taken by ilif.neurons.modules.LIF"):
        ilif.register_neuron("lif")(type("Other", (Neuron,), {}))
    with pytest.raises(ValueError, match=r"unknown neuron 'lifx'.*--import MODULE"):
        create_neuron("lifx")
    with pytest.raises(ValueError, match="unknown neuron 'lifx'"):
        create_model("digits-small", neuron="lifx")


def test_one_tau_default_everywhere() -> None:
    defaults = {inspect.signature(neuron_class(n).__init__).parameters["tau"].default
                for n in neuron_names(variants=False)}
    assert defaults == {1.1}
    assert inspect.signature(Neuron.__init__).parameters["tau"].default == 1.1
    assert inspect.signature(create_model).parameters["tau"].default == 1.1
    assert TrainConfig().tau == 1.1
    assert {n.tau for n in create_model("digits-small", in_channels=1).modules()
            if isinstance(n, Neuron)} == {1.1}


def test_width_with_a_surrogate_instance_is_an_error() -> None:
    with pytest.raises(ValueError, match="width=0.5 was given with the surrogate instance"):
        ilif.LIF(surrogate=surrogate.Triangle(width=2.0), width=0.5)
    assert ilif.LIF(surrogate="triangle", width=0.5).surrogate == surrogate.Triangle(0.5)
    assert ilif.LIF(surrogate=surrogate.Triangle(width=2.0)).surrogate.width == 2.0


def test_presets_cannot_be_changed_through_the_view() -> None:
    with pytest.raises(TypeError):
        NEURON_VARIANTS["ilif-mpiu"][1]["ciu"] = True  # type: ignore[index]
    assert not create_neuron("ilif-mpiu").ciu
