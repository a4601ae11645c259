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
import torch.nn.functional as F
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


# Layers that treat every sample alone (or, BN, through batch statistics that a repeated batch
# leaves unchanged): a repeated input may run through them once (:class:`TimeDistributed`).
_ONCE_SAFE = (
    nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear, nn.Identity, nn.Flatten, nn.ReLU,
    nn.AvgPool2d, nn.MaxPool2d, nn.AdaptiveAvgPool2d,
    nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d,  # not SyncBatchNorm: it syncs its own way
)


def _once_safe(module: nn.Module) -> bool:
    if isinstance(module, nn.Sequential):
        return all(_once_safe(m) for m in module)
    return isinstance(module, _ONCE_SAFE)


def repeated_batch_norm(bn: nn.modules.batchnorm._BatchNorm, x: Tensor, repeats: int) -> Tensor:
    """``bn`` on ``x`` [N, C, ...] as if on the batch of ``repeats`` copies of ``x`` [R·N, C, ...].

    The output needs nothing special: the mean and the biased variance that normalise the batch
    are the same for one copy and for R. The running variance is the unbiased one, and PyTorch's
    Bessel factor n/(n − 1) counts the values per channel: n = R·N·(spatial size) for the repeated
    batch, not N·(spatial size). It is kept at that of the repeated batch (docs/performance.md):
    ``running_var ← (1 − m)·running_var + m·var_b·n/(n − 1)`` with ``n = R·N·H·W``.
    """
    if not (bn.training and bn.track_running_stats) or repeats == 1:
        return bn(x)
    assert bn.running_mean is not None and bn.running_var is not None
    bn.num_batches_tracked.add_(1)  # type: ignore[operator, union-attr]
    momentum = (
        1.0 / float(bn.num_batches_tracked) if bn.momentum is None else float(bn.momentum)
    )
    # momentum 1 writes the batch mean and the one-copy unbiased variance into the scratch rows
    mean = torch.zeros_like(bn.running_mean)
    var = torch.zeros_like(bn.running_var)
    y = F.batch_norm(x, mean, var, bn.weight, bn.bias, True, 1.0, bn.eps)
    n_one = x.numel() // x.shape[1]
    n_all = n_one * repeats
    with torch.no_grad():
        # one copy's n_one/(n_one − 1) becomes the repeated batch's n_all/(n_all − 1)
        factor = (n_one - 1) / n_one * n_all / (n_all - 1) if n_one > 1 else 0.0
        bn.running_mean.mul_(1.0 - momentum).add_(mean, alpha=momentum)
        bn.running_var.mul_(1.0 - momentum).add_(var, alpha=momentum * factor)
    return y


def _run_once(module: nn.Module, x: Tensor, repeats: int) -> Tensor:
    if isinstance(module, nn.Sequential):
        for layer in module:
            x = _run_once(layer, x, repeats)
        return x
    if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)):
        return repeated_batch_norm(module, x, repeats)
    return module(x)


def step_format(x_seq: Tensor) -> torch.memory_format:
    """The memory format of one step ``x_seq[t]`` [N, C, H, W] (channels_last or contiguous)."""
    step = x_seq[0]
    if step.dim() == 4 and not step.is_contiguous() and step.is_contiguous(
        memory_format=torch.channels_last
    ):
        return torch.channels_last
    return torch.contiguous_format


def fold_time(x_seq: Tensor) -> Tensor:
    """``[T, N, ...] -> [T·N, ...]``: a view where one exists, else a copy in the steps' own
    memory format (a channels_last sequence stays channels_last)."""
    steps, batch = x_seq.shape[:2]
    shape = (steps * batch, *x_seq.shape[2:])
    # time and batch merge into one dimension of a view exactly when this holds (a stride check,
    # not a try of view(): torch.compile traces it without an exception)
    if steps == 1 or batch == 1 or x_seq.stride(0) == x_seq.stride(1) * batch:
        return x_seq.view(shape)
    # a clone (whose backward passes the gradient on as it is), in the steps' storage order
    if step_format(x_seq) == torch.channels_last:
        dense = x_seq.permute(0, 1, 3, 4, 2).contiguous().permute(0, 1, 4, 2, 3)
    else:
        dense = x_seq.contiguous()
    return dense.view(shape)


def run_neuron(neuron: nn.Module, x_seq: Tensor) -> Tensor:
    """``neuron(x_seq)`` on ``[T, N, C, H, W]``, with channels_last steps kept channels_last.

    A neuron that acts on each element alone may see the sequence in its storage order: a
    channels_last sequence goes in as the dense ``[T, N, H, W, C]`` view and comes back permuted
    to ``[T, N, C, H, W]`` (channels_last again), with no copy on either side. A module with a
    ``channels`` attribute keeps per-channel parameters (MPBN) and gets ``[T, N, C, H, W]``.
    """
    if (
        x_seq.dim() == 5
        and not hasattr(neuron, "channels")
        and step_format(x_seq) == torch.channels_last
    ):
        return neuron(x_seq.permute(0, 1, 3, 4, 2)).permute(0, 1, 4, 2, 3)
    return neuron(x_seq)


class TimeDistributed(nn.Module):
    """A stateless ``module`` applied to each step: ``[T, N, ...] -> [T·N, ...] -> [T, N, ...]``.

    Folding and unfolding keep the memory format (channels_last in, channels_last out).
    ``once=True``: a sequence that is one tensor repeated over the steps (stride 0 in T, as
    :meth:`ilif.models.SpikingModel.encode` gives for static images) runs through ``module`` once,
    on ``[N, ...]``, and the output is repeated: ``f(x)`` for all ``t`` equals ``f`` on the
    repeated batch, with BN's running variance kept at the repeated batch's
    (:func:`repeated_batch_norm`). Only for modules that treat samples alone (convolutions,
    linear, pooling, BN); others are folded as usual.
    """

    def __init__(self, module: nn.Module, once: bool = False) -> None:
        super().__init__()
        self.module = module
        self.once = bool(once)

    def forward(self, x_seq: Tensor) -> Tensor:
        steps, batch = x_seq.shape[:2]
        if self.once and steps > 1 and x_seq.stride(0) == 0 and _once_safe(self.module):
            y = _run_once(self.module, x_seq[0], steps)
            return y.unsqueeze(0).expand(steps, *y.shape)
        y = self.module(fold_time(x_seq))
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
    """``conv → BN → neuron (→ dropout)`` on a sequence ``[T, N, C, H, W]``; ``once``: the
    conv → BN runs once on a repeated input (the stem, :class:`TimeDistributed`)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        make_neuron: MakeNeuron,
        dropout: float = 0.0,
        bias: bool = False,
        once: bool = False,
    ) -> None:
        super().__init__()
        self.conv_bn = TimeDistributed(
            nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=bias),
                nn.BatchNorm2d(out_channels),
            ),
            once=once,
        )
        self.neuron = make_neuron(out_channels)
        self.dropout = TemporalDropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x_seq: Tensor) -> Tensor:
        return self.dropout(run_neuron(self.neuron, self.conv_bn(x_seq)))
