"""The one-way contract between a neuron and the fused kernels (docs/performance.md).

A neuron that a fused kernel can run describes itself with :class:`FusedForm`
(``Neuron.fused_form()``); the kernels take that description and tensors only, and know nothing
of the neuron modules.

Kernel families and their equations (λ = decay, θ = threshold, k = CIU gain, κ = MPIU gain)::

    "ilif"  I_t = k·(I_{t−1} + D_{t−1}) ; H_t = λ·v_{t−1} + x_t − max(I_t, 0) ; S_t = Θ(H_t − θ)
            U_t = H_t − S_t·θ ; M_t = κ·(M_{t−1} + S_t·U_t) ; v_t = U_t − S_t·σ(M_t) ; D_t = x_t·S_t
            (the CIU and the MPIU each switchable; both off: LIF, state (v) only)
    "clif"  H_t = λ·v_{t−1} + x_t ; C_t = C_{t−1}·σ(H_t/τ) + S_t ; v_t = H_t − S_t·(θ + σ(C_t))
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["FusedForm", "FLAG_NAMES", "PARAM_NAMES", "FAMILY_STATE"]

# the integer flags, in order: CIU on, MPIU on, reset detached, inhibition detached, surrogate
# code (0 rectangle, 1 triangle, 2 sigmoid, 3 atan)
FLAG_NAMES = ("ciu", "mpiu", "detach_reset", "detach_inhibition", "surrogate")
# the float parameters, in order: λ, θ, k, κ, τ, surrogate width γ
PARAM_NAMES = ("decay", "threshold", "ciu_gain", "mpiu_gain", "tau", "width")
# the state rows of each family, in order; every row starts at zero
FAMILY_STATE = {"ilif": ("v", "I", "M", "D"), "clif": ("v", "C")}
N_SURROGATES = 4


@dataclass(frozen=True)
class FusedForm:
    """A neuron as the fused kernels see it.

    ``family``: ``"ilif"`` or ``"clif"`` (module docstring); ``flags``: the integers of
    :data:`FLAG_NAMES`; ``params``: the floats of :data:`PARAM_NAMES`; ``state_size``: the rows
    of the state ``[state_size, N]``, the first ``state_size`` of the family's
    (:data:`FAMILY_STATE`: ILIF (v, I, M, D), LIF (v), CLIF (v, C)), all zero initially.
    """

    family: str
    flags: tuple[int, ...]
    params: tuple[float, ...]
    state_size: int

    def __post_init__(self) -> None:
        if self.family not in FAMILY_STATE:
            raise ValueError(f"family must be one of {sorted(FAMILY_STATE)}, got {self.family!r}")
        if len(self.flags) != len(FLAG_NAMES) or len(self.params) != len(PARAM_NAMES):
            raise ValueError(f"a FusedForm has {len(FLAG_NAMES)} flags {FLAG_NAMES} and "
                             f"{len(PARAM_NAMES)} params {PARAM_NAMES}")
        if not 0 <= self.flag("surrogate") < N_SURROGATES:
            raise ValueError(f"surrogate code must be in [0, {N_SURROGATES}), "
                             f"got {self.flag('surrogate')}")
        if not 1 <= self.state_size <= len(FAMILY_STATE[self.family]):
            raise ValueError(f"state_size of family {self.family!r} must be in "
                             f"[1, {len(FAMILY_STATE[self.family])}], got {self.state_size}")

    def flag(self, name: str) -> int:
        return self.flags[FLAG_NAMES.index(name)]

    def param(self, name: str) -> float:
        return self.params[PARAM_NAMES.index(name)]

    @classmethod
    def ilif(cls, decay: float, threshold: float, surrogate: int, width: float, *,
             ciu_gain: float = 0.0, mpiu_gain: float = 0.0, ciu: bool = False,
             mpiu: bool = False, detach_reset: bool = False, detach_inhibition: bool = False,
             state_size: int = 4) -> FusedForm:
        """The ILIF family; both units off is LIF (whose state is (v) only: ``state_size=1``)."""
        return cls("ilif", (int(ciu), int(mpiu), int(detach_reset), int(detach_inhibition),
                            int(surrogate)),
                   (float(decay), float(threshold), float(ciu_gain), float(mpiu_gain), 1.0,
                    float(width)), state_size)

    @classmethod
    def clif(cls, decay: float, tau: float, threshold: float, surrogate: int, width: float, *,
             detach_reset: bool = False) -> FusedForm:
        """The CLIF family."""
        return cls("clif", (0, 0, int(detach_reset), 0, int(surrogate)),
                   (float(decay), float(threshold), 0.0, 0.0, float(tau), float(width)), 2)
