"""Bad input gets an error naming the problem and the fix; bad parameters fail at construction."""

from __future__ import annotations

import pytest
import torch

import ilif
from ilif import surrogate

ALL_NEURONS = [ilif.LIF, ilif.ILIF, ilif.CLIF, ilif.PLIF, ilif.ALIF]
BACKEND = "torch"  # the checks run before any engine; the eager one keeps them fast


@pytest.mark.parametrize("cls", ALL_NEURONS)
@pytest.mark.parametrize("step_mode", ["s", "m"])
@pytest.mark.parametrize("dtype", [torch.int64, torch.uint8, torch.bool])
def test_non_floating_input(cls, step_mode: str, dtype: torch.dtype) -> None:
    neuron = cls(step_mode=step_mode, backend=BACKEND)
    x = torch.ones(3, 4, dtype=dtype)
    with pytest.raises(TypeError, match=rf"floating-point.*{dtype}.*x\.float\(\)"):
        neuron(x)
    assert neuron.state is None  # nothing was stored by the failed call


@pytest.mark.parametrize("cls", ALL_NEURONS)
def test_non_tensor_input(cls) -> None:
    with pytest.raises(TypeError, match="expects a torch.Tensor, got list"):
        cls()([0.5, 1.5])


@pytest.mark.parametrize("cls", ALL_NEURONS)
@pytest.mark.parametrize("shape", [(), (7,)])
def test_multi_step_without_time_dimension(cls, shape: tuple) -> None:
    with pytest.raises(ValueError, match=r"\[T, \*\].*unsqueeze\(0\).*step_mode='s'"):
        cls(step_mode="m")(torch.ones(shape))


@pytest.mark.parametrize("cls", ALL_NEURONS)
@pytest.mark.parametrize("step_mode", ["s", "m"])
def test_shape_change_without_reset(cls, step_mode: str) -> None:
    neuron = cls(step_mode=step_mode, backend=BACKEND)
    lead = (5,) if step_mode == "m" else ()
    neuron(torch.rand(*lead, 8, 3))
    with pytest.raises(RuntimeError, match=r"\(4, 3\).*\(8, 3\).*reset\(\).*ilif\.reset_net"):
        neuron(torch.rand(*lead, 4, 3))
    neuron.reset()
    assert neuron(torch.rand(*lead, 4, 3)).shape == (*lead, 4, 3)


@pytest.mark.parametrize("cls", [ilif.LIF, ilif.ILIF, ilif.CLIF, ilif.ALIF])
@pytest.mark.parametrize("tau", [0.999, 0.5, 0.0, -2.0, float("nan")])
def test_tau_below_one(cls, tau: float) -> None:
    with pytest.raises(ValueError, match=r"tau must be >= 1.*λ = 1 − 1/τ"):
        cls(tau=tau)


@pytest.mark.parametrize("cls", [ilif.LIF, ilif.ILIF, ilif.CLIF, ilif.ALIF])
@pytest.mark.parametrize("tau", [1.0, 1.1, 2.0, 1e6])
def test_valid_tau(cls, tau: float) -> None:
    # τ = 1.1 (the paper's) is valid, and τ = 1 gives λ = 0: no memory, still a valid neuron.
    assert cls(tau=tau).decay == pytest.approx(1 - 1 / tau)


@pytest.mark.parametrize("tau", [1.0, 0.9, -1.0])
def test_plif_tau_must_exceed_one(tau: float) -> None:
    with pytest.raises(ValueError, match="tau must be > 1"):
        ilif.PLIF(tau=tau)
    assert ilif.PLIF(tau=1.1).decay.item() == pytest.approx(1 - 1 / 1.1, rel=1e-6)


@pytest.mark.parametrize("name", ["ciu_gain", "mpiu_gain"])
@pytest.mark.parametrize("value", [-0.01, 1.01, 5.0, float("nan")])
def test_gains_outside_unit_interval(name: str, value: float) -> None:
    with pytest.raises(ValueError, match=rf"{name} must lie in \[0, 1\]"):
        ilif.ILIF(**{name: value})


@pytest.mark.parametrize("name", ["ciu_gain", "mpiu_gain"])
@pytest.mark.parametrize("value", [0.0, 1.0])
def test_gains_at_the_ends_are_valid(name: str, value: float) -> None:
    assert getattr(ilif.ILIF(**{name: value}), name) == value


@pytest.mark.parametrize("cls", ALL_NEURONS)
@pytest.mark.parametrize("width", [0.0, -0.5])
def test_width_must_be_positive(cls, width: float) -> None:
    with pytest.raises(ValueError, match="width must be a finite number > 0"):
        cls(width=width)
    with pytest.raises(ValueError, match="width"):
        cls(surrogate="atan", width=width)
    with pytest.raises(ValueError, match="width"):
        surrogate.Rectangle(width=width)


@pytest.mark.parametrize("cls", ALL_NEURONS)
@pytest.mark.parametrize("step_mode", ["multi", "S", "", None])
def test_unknown_step_mode(cls, step_mode) -> None:
    with pytest.raises(ValueError, match="step_mode must be 's' or 'm'"):
        cls(step_mode=step_mode)


def test_other_bad_parameters() -> None:
    with pytest.raises(ValueError, match="backend must be one of"):
        ilif.LIF(backend="cuda")
    with pytest.raises(ValueError, match="v_threshold must be > 0"):
        ilif.LIF(v_threshold=0.0)
    with pytest.raises(ValueError, match="unknown surrogate 'rect'"):
        ilif.LIF(surrogate="rect")
    with pytest.raises(TypeError, match="surrogate must be an ilif.surrogate.Surrogate"):
        ilif.LIF(surrogate=torch.sigmoid)
    with pytest.raises(ValueError, match="tau_adapt must be > 0"):
        ilif.ALIF(tau_adapt=0.0)
    with pytest.raises(ValueError, match="beta must be >= 0"):
        ilif.ALIF(beta=-1.0)
    with pytest.raises(ValueError, match="unknown neuron 'lifx'.*ilif-mpiu"):
        ilif.create_neuron("lifx")
