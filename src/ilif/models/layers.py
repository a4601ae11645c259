"""Building blocks of the spiking models: time folded into the batch, neuron factories, dropout.

Every model runs on sequences ``[T, N, ...]``. Stateless layers (conv, BN, linear, pooling) see the
time steps folded into the batch, ``[T·N, ...]`` (:class:`TimeDistributed`); the neurons see the
sequence itself, in ``step_mode="m"``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from ilif.neurons import Neuron, create_neuron, neuron_class
from ilif.surrogate import SURROGATES

# Constructor arguments a model sets itself and a caller may not pass through ``neuron_kwargs``.
_RESERVED_NEURON_ARGS = ("step_mode", "channels")

# make_neuron(channels): one neuron layer; ``channels`` is the channel count C of its input
# [T, N, C, *], used by neurons that keep per-channel parameters (MPBN), ignored by the others.
MakeNeuron = Callable[..., Neuron]


def accepted_neuron_args(name: str) -> list[str]:
    """The keyword arguments the neuron ``name`` accepts (its constructor's and the base's)."""
    cls = neuron_class(name)
    names: list[str] = []
    for klass in (cls, Neuron):
        for param in inspect.signature(klass.__init__).parameters.values():
            if param.name != "self" and param.kind not in (param.VAR_KEYWORD, param.VAR_POSITIONAL):
                if param.name not in names:
                    names.append(param.name)
    return names


def neuron_factory(
    name: str,
    tau: float,
    surrogate: str = "rectangle",
    width: float = 1.0,
    backend: str = "auto",
    **neuron_kwargs: Any,
) -> MakeNeuron:
    """A callable ``make(channels=None)`` making one multi-step neuron layer of the given kind
    and settings; a model passes the channel count of the layer's input, which reaches the
    neurons whose constructor takes ``channels`` (MPBN).

    The arguments are checked once, here: an argument the neuron does not take is an error naming
    it and listing those it takes.
    """
    key = str(name).lower()
    accepted = accepted_neuron_args(key)
    if str(surrogate).lower() not in SURROGATES:
        raise ValueError(
            f"unknown surrogate {surrogate!r}; valid names: {', '.join(SURROGATES)}"
        )
    for arg in neuron_kwargs:
        if arg in _RESERVED_NEURON_ARGS:
            raise ValueError(f"neuron argument {arg!r} is set by the model and cannot be passed")
        if arg not in accepted:
            options = ", ".join(a for a in accepted if a not in _RESERVED_NEURON_ARGS)
            raise ValueError(
                f"neuron {key!r} does not accept the argument {arg!r}; it accepts: {options}"
            )
    settings = dict(
        tau=tau, surrogate=str(surrogate).lower(), width=width, backend=backend, step_mode="m",
        **neuron_kwargs,
    )
    takes_channels = "channels" in accepted

    def make(channels: int | None = None) -> Neuron:
        if takes_channels and channels is not None:
            return create_neuron(key, channels=channels, **settings)
        return create_neuron(key, **settings)

    make()  # fail here, on bad values (τ < 1, an unknown backend), not deep inside a model
    return make


class TimeDistributed(nn.Module):
    """A stateless ``module`` applied to each step: ``[T, N, ...] -> [T·N, ...] -> [T, N, ...]``."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, x_seq: Tensor) -> Tensor:
        steps, batch = x_seq.shape[:2]
        y = self.module(x_seq.flatten(0, 1))
        return y.reshape(steps, batch, *y.shape[1:])


class TemporalDropout(nn.Module):
    """Dropout with one mask per sample shared by all time steps (``x_seq``: ``[T, N, ...]``).

    ``y_t = x_t · m / (1 − p)``, ``m ~ Bernoulli(1 − p)`` drawn once per sample and element.
    """

    def __init__(self, p: float) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout must lie in [0, 1), got dropout={p!r}")
        self.p = float(p)

    def forward(self, x_seq: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return x_seq
        keep = torch.empty_like(x_seq[0]).bernoulli_(1.0 - self.p) / (1.0 - self.p)
        return x_seq * keep.unsqueeze(0)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class SpikingConv(nn.Module):
    """``conv → BN → neuron (→ dropout)`` on a sequence ``[T, N, C, H, W]``."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        make_neuron: MakeNeuron,
        dropout: float = 0.0,
        bias: bool = False,
    ) -> None:
        super().__init__()
        self.conv_bn = TimeDistributed(
            nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=bias),
                nn.BatchNorm2d(out_channels),
            )
        )
        self.neuron = make_neuron(out_channels)
        self.dropout = TemporalDropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x_seq: Tensor) -> Tensor:
        return self.dropout(self.neuron(self.conv_bn(x_seq)))
