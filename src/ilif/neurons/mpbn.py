"""MPBN: LIF with its membrane potential batch-normalised before the threshold.

Membrane-potential batch normalisation (Guo et al., ICCV 2023), docs/neurons.md::

    H_t = λ·v_{t−1} + x_t
    Ĥ_t = γ_c·(H_t − μ_{t,c}) / sqrt(σ²_{t,c} + ε) + β_c
    S_t = Θ(Ĥ_t − θ)
    v_t = H_t − S_t·θ          (soft reset of the un-normalised state)

In training μ_{t,c}, σ²_{t,c} are the statistics of step t over (N, H, W); the affine γ, β and
the running estimates are shared by all steps. At inference the normalisation folds into a
per-channel threshold ``θ′_c = μ_c + (θ − β_c)·sqrt(σ²_c + ε)/γ_c``, the comparison flipped
where γ_c < 0. Eager loop only (no fused form).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import torch
import torch.nn.functional as TF
from torch import Tensor, nn

from ilif.neurons.base import DEFAULT_TAU, Neuron, check_tau
from ilif.neurons.functional import SpikeFn
from ilif.neurons.ops import NeuronOps
from ilif.neurons.registry import register_neuron


class MPBNParams(NamedTuple):
    decay: float  # λ = 1 − 1/τ
    v_threshold: float  # θ
    weight: Tensor  # γ_c
    bias: Tensor  # β_c
    running_mean: Tensor
    running_var: Tensor
    training: bool  # batch statistics (and running updates) vs running estimates
    momentum: float
    eps: float
    detach_reset: bool = False
    fold: tuple[Tensor, Tensor, Tensor] | None = None  # (θ′, scale, offset), see folded_threshold


class MPBNState(NamedTuple):
    v: Tensor  # the un-normalised membrane after reset


def mpbn_step(x: Tensor, state: MPBNState, p: MPBNParams, spike_fn: SpikeFn):
    """One MPBN step on ``x`` [N, C, *] (the equations of the module docstring).

    ``h = Ĥ_t − θ``; with ``p.fold`` (inference) ``h = scale_c·(H_t − θ′_c) + offset_c``, the
    same number up to rounding. In training the running estimates are updated in place.
    """
    h_mem = p.decay * state.v + x
    if p.fold is None:
        h_hat = TF.batch_norm(h_mem, p.running_mean, p.running_var, p.weight, p.bias,
                              p.training, p.momentum, p.eps)
        h = h_hat - p.v_threshold
    else:
        shape = (-1,) + (1,) * (h_mem.dim() - 2)
        threshold, scale, offset = (t.view(shape) for t in p.fold)
        h = scale * (h_mem - threshold) + offset
    s = spike_fn(h)
    reset = s.detach() if p.detach_reset else s
    v = h_mem - reset * p.v_threshold
    return s, MPBNState(v), h


@register_neuron("mpbn")
class MPBN(Neuron):
    """LIF with membrane-potential batch normalisation (Guo et al., ICCV 2023)::

    H_t = λ·v_{t−1} + x_t ;  Ĥ_t = γ_c·(H_t − μ_{t,c})/sqrt(σ²_{t,c} + ε) + β_c
    S_t = Θ(Ĥ_t − θ) ;  v_t = H_t − S_t·θ

    The input is ``[T, N, C, *]`` (``step_mode="m"``) or ``[N, C, *]`` (``"s"``). ``channels``
    (C) is inferred on the first call when not given; pass it when an optimiser is built before
    the first forward pass (:func:`ilif.models.create_model` does). ``momentum`` and ``eps`` as
    in ``nn.BatchNorm``. In ``eval()`` mode the normalisation is folded into a per-channel
    threshold (:meth:`folded_threshold`). The eager loop always runs. docs/neurons.md.
    """

    state_type = MPBNState
    step_fn = mpbn_step
    # at inference, after the fold: λ·v + x 1 MAC; H vs θ′_c 1 compare; per spike − θ 1 AC
    operations = NeuronOps(dense_mac=1, dense_ac=1, spike_ac=1, state_values=1)

    def __init__(
        self,
        tau: float = DEFAULT_TAU,
        v_threshold: float = 1.0,
        channels: int | None = None,
        momentum: float = 0.1,
        eps: float = 1e-5,
        **kwargs: Any,
    ) -> None:
        super().__init__(tau=check_tau(tau), v_threshold=v_threshold, **kwargs)
        momentum, eps = float(momentum), float(eps)
        if not 0.0 < momentum <= 1.0:
            raise ValueError(f"momentum must lie in (0, 1], got momentum={momentum!r}")
        if not (math.isfinite(eps) and eps > 0):
            raise ValueError(f"eps must be > 0, got eps={eps!r}")
        self.momentum, self.eps = momentum, eps
        self.channels: int | None = None
        self.register_parameter("weight", None)
        self.register_parameter("bias", None)
        self.register_buffer("running_mean", None)
        self.register_buffer("running_var", None)
        if channels is not None:
            self._build(channels)

    def _build(self, channels: int, like: Tensor | None = None) -> None:
        if int(channels) != channels or channels < 1:
            raise ValueError(f"channels must be an integer >= 1, got channels={channels!r}")
        self.channels = int(channels)
        kw: dict[str, Any] = {}
        if like is not None:
            kw = {"dtype": like.dtype, "device": like.device}
        self.weight = nn.Parameter(torch.ones(self.channels, **kw))
        self.bias = nn.Parameter(torch.zeros(self.channels, **kw))
        self.running_mean = torch.zeros(self.channels, **kw)
        self.running_var = torch.ones(self.channels, **kw)

    def _load_from_state_dict(self, state_dict, prefix, *args: Any, **kwargs: Any) -> None:
        weight = state_dict.get(prefix + "weight")
        if self.weight is None and weight is not None:
            self._build(weight.shape[0], weight)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, x: Tensor) -> Tensor:
        self._check_input(x)
        dim = 2 if self.step_mode == "m" else 1
        if x.dim() <= dim:
            layout = "[T, N, C, *]" if self.step_mode == "m" else "[N, C, *]"
            raise ValueError(
                f"MPBN normalises per channel and needs an input {layout}, got shape "
                f"{tuple(x.shape)}"
            )
        if self.weight is None:
            self._build(x.shape[dim], x)
        elif x.shape[dim] != self.channels:
            raise ValueError(
                f"MPBN was built for {self.channels} channels, got an input with {x.shape[dim]} "
                f"(shape {tuple(x.shape)}, channels in dimension {dim})"
            )
        return super().forward(x)

    def folded_threshold(self) -> tuple[Tensor, Tensor, Tensor]:
        """The inference fold ``(θ′, scale, offset)``, per channel.

        ``θ′_c = μ_c + (θ − β_c)·sqrt(σ²_c + ε)/γ_c`` and ``scale_c = γ_c/sqrt(σ²_c + ε)``, so
        that ``Ĥ − θ = scale_c·(H − θ′_c)``: a spike is ``H ≥ θ′_c`` where γ_c > 0 and
        ``H ≤ θ′_c`` where γ_c < 0. Where γ_c = 0, Ĥ = β_c and ``offset_c = β_c − θ`` decides.
        """
        if self.weight is None:
            raise RuntimeError("MPBN has no channels yet: pass channels= or run it once")
        std = torch.sqrt(self.running_var + self.eps)
        zero = self.weight == 0
        gamma = torch.where(zero, torch.ones_like(self.weight), self.weight)
        threshold = torch.where(
            zero, torch.zeros_like(std), self.running_mean + (self.v_threshold - self.bias) * std
            / gamma,
        )
        scale = torch.where(zero, torch.zeros_like(std), self.weight / std)
        offset = torch.where(zero, self.bias - self.v_threshold, torch.zeros_like(std))
        return threshold, scale, offset

    def params(self) -> MPBNParams:
        if self.weight is None:
            raise RuntimeError("MPBN has no channels yet: pass channels= or run it once")
        return MPBNParams(
            self.decay, self.v_threshold, self.weight, self.bias, self.running_mean,
            self.running_var, self.training, self.momentum, self.eps, self.detach_reset,
            None if self.training else self.folded_threshold(),
        )

    def hyperparameters(self) -> dict[str, Any]:
        return {**super().hyperparameters(), "channels": self.channels,
                "momentum": self.momentum, "eps": self.eps}
