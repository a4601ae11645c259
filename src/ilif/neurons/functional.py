"""Pure functional neuron steps: ``step(x, state, params, spike_fn) -> (S, state, h)``.

One step of every neuron of docs/neurons.md, with the threshold crossing ``h = H − θ`` returned
beside the spikes (monitors read it; ``spike_fn(h) = Θ(h)`` forward, surrogate backward). States
are typed named tuples of tensors, all zero before the first step; parameters are typed named
tuples of floats (or tensors, for learnable ones). The modules in :mod:`ilif.neurons.modules`
wrap these, and the eager path, the tests and the kernels' references all call them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor

SpikeFn = Callable[[Tensor], Tensor]
Number = float | Tensor


def _maybe_detach(t: Tensor, detach: bool) -> Tensor:
    return t.detach() if detach else t


# ----------------------------------------------------------------------------------------- LIF
class LIFParams(NamedTuple):
    decay: Number  # λ = 1 − 1/τ
    v_threshold: float = 1.0
    detach_reset: bool = False


class LIFState(NamedTuple):
    v: Tensor


def lif_step(x: Tensor, state: LIFState, p: LIFParams, spike_fn: SpikeFn):
    """LIF with soft reset (also PLIF, whose λ is a tensor)::

    H_t = λ·v_{t−1} + x_t ;  S_t = Θ(H_t − θ) ;  v_t = H_t − S_t·θ
    """
    h_mem = p.decay * state.v + x
    h = h_mem - p.v_threshold
    s = spike_fn(h)
    v = h_mem - _maybe_detach(s, p.detach_reset) * p.v_threshold
    return s, LIFState(v), h


# ---------------------------------------------------------------------------------------- ILIF
class ILIFParams(NamedTuple):
    decay: Number  # λ = 1 − 1/τ
    v_threshold: float = 1.0
    ciu_gain: float = 0.03  # k
    mpiu_gain: float = 1.0  # κ
    mpiu: bool = True
    ciu: bool = True
    detach_reset: bool = False
    detach_inhibition: bool = False


class ILIFState(NamedTuple):
    v: Tensor  # membrane after reset and inhibition
    trace: Tensor  # I_{t−1}, the CIU trace
    memory: Tensor  # M_{t−1}, the MPIU memory
    drive: Tensor  # x_{t−1}·S_{t−1}, the input that produced the previous spike


def ilif_step(x: Tensor, state: ILIFState, p: ILIFParams, spike_fn: SpikeFn):
    """ILIF, the authors' reference semantics::

    I_t = k·(I_{t−1} + x_{t−1}·S_{t−1})
    H_t = λ·v_{t−1} + x_t − max(I_t, 0)      (d max/dI = 1 at I = 0, as torch.clamp)
    S_t = Θ(H_t − θ)
    U_t = H_t − S_t·θ
    M_t = κ·(M_{t−1} + S_t·U_t)
    v_t = U_t − S_t·σ(M_t)

    ``ciu=False`` sets I ≡ 0; ``mpiu=False`` drops M and σ(M). ``detach_inhibition`` cuts the
    gradient through max(I, 0) and σ(M); ``detach_reset`` cuts it through the S·θ reset.
    """
    h_mem = p.decay * state.v + x
    trace = state.trace
    if p.ciu:
        trace = p.ciu_gain * (state.trace + state.drive)
        h_mem = h_mem - _maybe_detach(torch.clamp(trace, min=0), p.detach_inhibition)
    h = h_mem - p.v_threshold
    s = spike_fn(h)
    u = h_mem - _maybe_detach(s, p.detach_reset) * p.v_threshold
    memory = state.memory
    v = u
    if p.mpiu:
        memory = p.mpiu_gain * (state.memory + s * u)
        v = u - s * _maybe_detach(torch.sigmoid(memory), p.detach_inhibition)
    drive = x * s if p.ciu else state.drive
    return s, ILIFState(v, trace, memory, drive), h


# ---------------------------------------------------------------------------------------- CLIF
class CLIFParams(NamedTuple):
    decay: Number
    tau: float
    v_threshold: float = 1.0
    detach_reset: bool = False


class CLIFState(NamedTuple):
    v: Tensor
    c: Tensor  # complementary memory C_{t−1}


def clif_step(x: Tensor, state: CLIFState, p: CLIFParams, spike_fn: SpikeFn):
    """Complementary LIF (Huang et al., 2024)::

    H_t = λ·v_{t−1} + x_t ;  C'_t = C_{t−1}·σ(H_t/τ) ;  S_t = Θ(H_t − θ)
    C_t = C'_t + S_t ;  v_t = H_t − S_t·θ − S_t·σ(C_t)
    """
    h_mem = p.decay * state.v + x
    c = state.c * torch.sigmoid(h_mem / p.tau)
    h = h_mem - p.v_threshold
    s = spike_fn(h)
    c = c + s
    s_reset = _maybe_detach(s, p.detach_reset)
    v = h_mem - s_reset * (p.v_threshold + torch.sigmoid(c))
    return s, CLIFState(v, c), h


# ---------------------------------------------------------------------------------------- ALIF
class ALIFParams(NamedTuple):
    decay: Number
    adapt_decay: float  # ρ = exp(−1/τ_a)
    beta: float = 1.0
    v_threshold: float = 1.0  # θ₀
    detach_reset: bool = False


class ALIFState(NamedTuple):
    v: Tensor
    a: Tensor  # adaptation a_{t−1}
    s: Tensor  # spikes S_{t−1}


def alif_step(x: Tensor, state: ALIFState, p: ALIFParams, spike_fn: SpikeFn):
    """Adaptive-threshold LIF (Bellec et al., 2018)::

    a_t = ρ·a_{t−1} + (1 − ρ)·S_{t−1} ;  θ_t = θ₀ + β·a_t
    H_t = λ·v_{t−1} + x_t ;  S_t = Θ(H_t − θ_t) ;  v_t = H_t − S_t·θ_t
    """
    a = p.adapt_decay * state.a + (1.0 - p.adapt_decay) * state.s
    threshold = p.v_threshold + p.beta * a
    h_mem = p.decay * state.v + x
    h = h_mem - threshold
    s = spike_fn(h)
    v = h_mem - _maybe_detach(s, p.detach_reset) * threshold
    return s, ALIFState(v, a, s), h
