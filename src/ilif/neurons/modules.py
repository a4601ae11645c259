"""The neurons as modules: thin wrappers of :mod:`ilif.neurons.functional`.

Equations, operation counts and conventions: docs/neurons.md. Each class is registered by name
with :func:`ilif.register_neuron` (variants with preset arguments stacked on it).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from ilif.kernels import FusedForm
from ilif.neurons import functional as F
from ilif.neurons.base import DEFAULT_TAU, Neuron, check_tau, check_unit
from ilif.neurons.ops import NeuronOps
from ilif.neurons.registry import create_neuron, register_neuron, registry_view


@register_neuron("lif")
class LIF(Neuron):
    """Leaky integrate-and-fire, soft reset, inputs not divided by τ::

    H_t = λ·v_{t−1} + x_t ;  S_t = Θ(H_t − θ) ;  v_t = H_t − S_t·θ ;  λ = 1 − 1/τ
    """

    state_type = F.LIFState
    step_fn = F.lif_step
    # λ·v + x: 1 MAC; H ≥ θ: 1 compare; per spike − θ: 1 AC; state v
    operations = NeuronOps(dense_mac=1, dense_ac=1, spike_ac=1, state_values=1)

    def __init__(self, tau: float = DEFAULT_TAU, v_threshold: float = 1.0, **kwargs: Any) -> None:
        super().__init__(tau=check_tau(tau), v_threshold=v_threshold, **kwargs)

    def params(self) -> F.LIFParams:
        return F.LIFParams(self.decay, self.v_threshold, self.detach_reset)

    def fused_form(self) -> FusedForm | None:
        code = self._surrogate_code()
        if type(self).step_fn is not F.lif_step or code is None:
            return None
        return FusedForm.ilif(self.decay, self.v_threshold, code, self.surrogate.width,
                              detach_reset=self.detach_reset, state_size=1)


@register_neuron("ilif-ciu", mpiu=False)
@register_neuron("ilif-mpiu", ciu=False)
@register_neuron("ilif")
class ILIF(Neuron):
    """Temporal inhibitory LIF (arXiv 2505.10371), the authors' reference semantics::

    I_t = k·(I_{t−1} + x_{t−1}·S_{t−1})         CIU trace (k = ciu_gain)
    H_t = λ·v_{t−1} + x_t − max(I_t, 0)
    S_t = Θ(H_t − θ)
    U_t = H_t − S_t·θ
    M_t = κ·(M_{t−1} + S_t·U_t)                  MPIU memory (κ = mpiu_gain)
    v_t = U_t − S_t·σ(M_t)

    ``mpiu=False`` / ``ciu=False`` switch a unit off (both off: exactly :class:`LIF`).
    ``detach_inhibition=True`` cuts the gradient through max(I, 0) and σ(M).
    """

    state_type = F.ILIFState
    step_fn = F.ilif_step

    def operation_counts(self) -> NeuronOps:
        """LIF's counts plus, with the CIU, 1 MAC (k·…), 2 ACs (clamp, subtract), 1 AC per
        previous spike and 3 state values; with the MPIU, 2 ACs and 1 sigmoid per spike, 1 MAC
        when κ ≠ 1, and 1 state value (docs/neurons.md, "Energy")."""
        mac, ac, spike_ac, spike_sigmoid, values = 1.0, 1.0, 1.0, 0.0, 1
        if self.ciu:
            mac, ac, spike_ac, values = mac + 1, ac + 2, spike_ac + 1, values + 3
        if self.mpiu:
            mac += 0.0 if self.mpiu_gain == 1.0 else 1.0
            spike_ac, spike_sigmoid, values = spike_ac + 2, spike_sigmoid + 1, values + 1
        return NeuronOps(dense_mac=mac, dense_ac=ac, spike_ac=spike_ac,
                         spike_sigmoid=spike_sigmoid, state_values=values)

    def __init__(
        self,
        tau: float = DEFAULT_TAU,
        v_threshold: float = 1.0,
        ciu_gain: float = 0.03,
        mpiu_gain: float = 1.0,
        mpiu: bool = True,
        ciu: bool = True,
        detach_inhibition: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(tau=check_tau(tau), v_threshold=v_threshold, **kwargs)
        self.ciu_gain = check_unit(ciu_gain, "ciu_gain")
        self.mpiu_gain = check_unit(mpiu_gain, "mpiu_gain")
        self.mpiu = bool(mpiu)
        self.ciu = bool(ciu)
        self.detach_inhibition = bool(detach_inhibition)

    def params(self) -> F.ILIFParams:
        return F.ILIFParams(
            self.decay,
            self.v_threshold,
            self.ciu_gain,
            self.mpiu_gain,
            self.mpiu,
            self.ciu,
            self.detach_reset,
            self.detach_inhibition,
        )

    def hyperparameters(self) -> dict[str, Any]:
        return {
            **super().hyperparameters(),
            "ciu_gain": self.ciu_gain,
            "mpiu_gain": self.mpiu_gain,
            "mpiu": self.mpiu,
            "ciu": self.ciu,
            "detach_inhibition": self.detach_inhibition,
        }

    def fused_form(self) -> FusedForm | None:
        code = self._surrogate_code()
        if type(self).step_fn is not F.ilif_step or code is None:
            return None
        return FusedForm.ilif(
            self.decay, self.v_threshold, code, self.surrogate.width, ciu_gain=self.ciu_gain,
            mpiu_gain=self.mpiu_gain, ciu=self.ciu, mpiu=self.mpiu,
            detach_reset=self.detach_reset, detach_inhibition=self.detach_inhibition,
        )


@register_neuron("clif")
class CLIF(Neuron):
    """Complementary LIF (Huang et al., ICML 2024)::

    H_t = λ·v_{t−1} + x_t ;  C'_t = C_{t−1}·σ(H_t/τ) ;  S_t = Θ(H_t − θ)
    C_t = C'_t + S_t ;  v_t = H_t − S_t·θ − S_t·σ(C_t)
    """

    state_type = F.CLIFState
    step_fn = F.clif_step
    # λ·v + x, H/τ, C·σ: 3 MACs; σ(H/τ): 1 sigmoid; 1 compare; per spike C + S, − θ, − σ(C):
    # 3 ACs and 1 sigmoid; state v, C
    operations = NeuronOps(dense_mac=3, dense_ac=1, dense_sigmoid=1, spike_ac=3,
                           spike_sigmoid=1, state_values=2)

    def __init__(self, tau: float = DEFAULT_TAU, v_threshold: float = 1.0, **kwargs: Any) -> None:
        super().__init__(tau=check_tau(tau), v_threshold=v_threshold, **kwargs)

    def params(self) -> F.CLIFParams:
        return F.CLIFParams(self.decay, self.tau, self.v_threshold, self.detach_reset)

    def fused_form(self) -> FusedForm | None:
        code = self._surrogate_code()
        if type(self).step_fn is not F.clif_step or code is None:
            return None
        return FusedForm.clif(self.decay, self.tau, self.v_threshold, code, self.surrogate.width,
                              detach_reset=self.detach_reset)


@register_neuron("plif")
class PLIF(Neuron):
    """Parametric LIF (Fang et al., 2021): LIF with a learnable leak::

    1/τ = σ(w), w initialised so that τ = τ₀ (``tau``, > 1) ;  λ = 1 − σ(w)
    H_t = λ·v_{t−1} + x_t ;  S_t = Θ(H_t − θ) ;  v_t = H_t − S_t·θ
    """

    state_type = F.LIFState
    step_fn = F.lif_step
    operations = LIF.operations  # LIF's equations with a learnt λ

    def __init__(self, tau: float = DEFAULT_TAU, v_threshold: float = 1.0, **kwargs: Any) -> None:
        tau = check_tau(tau, strict=True)
        super().__init__(tau=tau, v_threshold=v_threshold, **kwargs)
        self.w = nn.Parameter(torch.tensor(-math.log(tau - 1.0)))

    @property
    def decay(self) -> Tensor:
        return 1.0 - torch.sigmoid(self.w)

    def params(self) -> F.LIFParams:
        return F.LIFParams(self.decay, self.v_threshold, self.detach_reset)


@register_neuron("alif")
class ALIF(Neuron):
    """Adaptive-threshold LIF (Bellec et al., 2018)::

    a_t = ρ·a_{t−1} + (1 − ρ)·S_{t−1} ;  ρ = exp(−1/τ_a) ;  θ_t = θ₀ + β·a_t
    H_t = λ·v_{t−1} + x_t ;  S_t = Θ(H_t − θ_t) ;  v_t = H_t − S_t·θ_t
    """

    state_type = F.ALIFState
    step_fn = F.alif_step
    # ρ·a, θ₀ + β·a, λ·v + x: 3 MACs; 1 compare; per previous spike + (1 − ρ): 1 AC, per spike
    # − θ_t: 1 AC; state v, a, S_{t−1}
    operations = NeuronOps(dense_mac=3, dense_ac=1, spike_ac=2, state_values=3)

    def __init__(
        self,
        tau: float = DEFAULT_TAU,
        v_threshold: float = 1.0,
        tau_adapt: float = 4.0,
        beta: float = 1.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(tau=check_tau(tau), v_threshold=v_threshold, **kwargs)
        tau_adapt, beta = float(tau_adapt), float(beta)
        if not math.isfinite(tau_adapt) or tau_adapt <= 0:
            raise ValueError(f"tau_adapt must be > 0, got tau_adapt={tau_adapt!r}")
        if not math.isfinite(beta) or beta < 0:
            raise ValueError(f"beta must be >= 0, got beta={beta!r}")
        self.tau_adapt = tau_adapt
        self.beta = beta

    def params(self) -> F.ALIFParams:
        return F.ALIFParams(
            self.decay, math.exp(-1.0 / self.tau_adapt), self.beta, self.v_threshold,
            self.detach_reset,
        )

    def hyperparameters(self) -> dict[str, Any]:
        return {**super().hyperparameters(), "tau_adapt": self.tau_adapt, "beta": self.beta}


# Read-only views of the registry, kept for code written against the old tables.
NEURON_VARIANTS = registry_view()

__all__ = ["LIF", "ILIF", "CLIF", "PLIF", "ALIF", "NEURON_VARIANTS", "create_neuron"]
