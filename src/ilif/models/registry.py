"""``create_model(name, ...)``: the spiking models by name."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from ilif.models.base import SpikingModel
from ilif.models.convnet import cifar_small, digits_small, vgg11
from ilif.models.imagenet import resnet34, sew_resnet34
from ilif.models.layers import neuron_factory
from ilif.models.resnet import resnet18, resnet19
from ilif.neurons.base import DEFAULT_TAU

MODELS: dict[str, Callable[..., SpikingModel]] = {
    "resnet18": resnet18,
    "resnet19": resnet19,
    "vgg11": vgg11,
    "cifar-small": cifar_small,
    "digits-small": digits_small,
    "resnet34": resnet34,
    "sew-resnet34": sew_resnet34,
}


def list_models() -> list[str]:
    """The names :func:`create_model` accepts."""
    return list(MODELS)


def create_model(
    name: str,
    neuron: str = "ilif",
    num_classes: int = 10,
    in_channels: int = 3,
    T: int = 4,
    surrogate: str = "rectangle",
    width: float = 1.0,
    tau: float = DEFAULT_TAU,
    backend: str = "auto",
    dropout: float | None = None,
    **neuron_kwargs: Any,
) -> SpikingModel:
    """A spiking model by name, with every neuron of kind ``neuron`` (any registered name,
    :func:`ilif.neurons.neuron_names`), surrogate ``surrogate`` of width ``width`` (γ), time
    constant ``tau`` (the paper's 1.1 by default) and ``T`` steps for static input.

    ``dropout`` (VGG-11 and the small convnets) is the per-layer dropout probability;
    ``neuron_kwargs`` go to every neuron (e.g. ``ciu_gain=0.05`` for ILIF).
    """
    key = str(name).lower()
    if key not in MODELS:
        raise ValueError(f"unknown model {name!r}; valid names: {', '.join(MODELS)}")
    for label, value in (("num_classes", num_classes), ("in_channels", in_channels)):
        if int(value) < 1:
            raise ValueError(f"{label} must be >= 1, got {label}={value!r}")
    make_neuron = neuron_factory(neuron, tau, surrogate, width, backend, **neuron_kwargs)
    builder = MODELS[key]
    extra: dict[str, Any] = {}
    if dropout:
        if "dropout" not in inspect.signature(builder).parameters:
            takes = [n for n, b in MODELS.items() if "dropout" in inspect.signature(b).parameters]
            raise ValueError(
                f"model {key!r} has no dropout; dropout={dropout!r} applies to: {', '.join(takes)}"
            )
        extra["dropout"] = float(dropout)
    return builder(make_neuron, int(num_classes), int(in_channels), int(T), **extra)
