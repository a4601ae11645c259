"""Float64 reference neurons written straight from docs/neurons.md, independent of ``ilif.neurons``.

Every neuron is a plain Python loop over time on tensors. The spike is an autograd function of
its own: forward ``Θ(h)`` with ``Θ(0) = 1``, backward ``g(h)`` with the width-γ surrogate
derivatives of docs/neurons.md, so input gradients can be compared with the library's.

``reference_config(neuron)`` reads a neuron module's public attributes (duck typing, no import of
``ilif``) and ``run_reference(config, x_seq)`` runs the reference on ``[T, *]`` inputs;
``assert_matches_reference(neuron, x_seq)`` compares spikes, final state and input gradients, so
other tests can parametrise it over backends.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor


# ------------------------------------------------------------------------------- surrogates
def surrogate_derivative(shape: str, h: Tensor, width: float) -> Tensor:
    """g(h) of docs/neurons.md: unit area, peak 1/γ.

    rectangle: 1/γ on |h| < γ/2 ; triangle: (γ − |h|)/γ² on |h| < γ ;
    sigmoid: d/dh σ(4h/γ) ; atan: d/dh [arctan(πh/γ)/π + 1/2].
    """
    gamma = float(width)
    zero = torch.zeros_like(h)
    if shape == "rectangle":
        return torch.where(h.abs() < gamma / 2, zero + 1.0 / gamma, zero)
    if shape == "triangle":
        return torch.where(h.abs() < gamma, (gamma - h.abs()) / gamma**2, zero)
    if shape == "sigmoid":
        e = torch.exp(-4.0 * h / gamma)
        return (4.0 / gamma) * e / (1.0 + e) ** 2
    if shape == "atan":
        z = math.pi * h / gamma
        return 1.0 / (gamma * (1.0 + z * z))
    raise ValueError(f"unknown surrogate shape {shape!r}")


def surrogate_primitive(shape: str, h: Tensor, width: float) -> Tensor:
    """The smooth step φ(h) whose derivative is g(h) (φ(−∞) = 0, φ(∞) = 1)."""
    gamma = float(width)
    if shape == "sigmoid":
        return 1.0 / (1.0 + torch.exp(-4.0 * h / gamma))
    if shape == "atan":
        return torch.atan(math.pi * h / gamma) / math.pi + 0.5
    if shape == "triangle":
        a = (h.abs() / gamma).clamp(max=1.0)
        half = a - a * a / 2  # ∫_0^|h| g = |h|/γ − |h|²/(2γ²), capped at 1/2
        return 0.5 + torch.sign(h) * half
    raise ValueError(f"no smooth primitive for shape {shape!r}")


class _ReferenceSpike(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h: Tensor, shape: str, width: float) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(h)
        ctx.shape, ctx.width = shape, width
        return torch.where(h >= 0, torch.ones_like(h), torch.zeros_like(h))

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        (h,) = ctx.saved_tensors
        return grad * surrogate_derivative(ctx.shape, h, ctx.width), None, None


def spike(h: Tensor, shape: str, width: float) -> Tensor:
    """S = Θ(h) forward (Θ(0) = 1), g(h) backward."""
    return _ReferenceSpike.apply(h, shape, width)


def clamp_min0(i: Tensor) -> Tensor:
    """max(I, 0) with derivative 1 at I = 0 (docs/neurons.md: as torch.clamp, not relu)."""
    return torch.where(i >= 0, i, torch.zeros_like(i))


# ------------------------------------------------------------------------------ the neurons
@dataclass(frozen=True)
class ReferenceConfig:
    """Everything the equations need to run one neuron kind."""

    kind: str  # lif, ilif, clif, alif, plif
    tau: float = 2.0
    v_threshold: float = 1.0
    shape: str = "rectangle"
    width: float = 1.0
    detach_reset: bool = False
    ciu_gain: float = 0.03  # ILIF k
    mpiu_gain: float = 1.0  # ILIF κ
    mpiu: bool = True
    ciu: bool = True
    detach_inhibition: bool = False
    tau_adapt: float = 4.0  # ALIF τ_a
    beta: float = 1.0  # ALIF β
    plif_w: float | None = None  # PLIF: 1/τ = σ(w); None: w such that τ = tau

    def leak(self) -> float:
        """λ = 1 − 1/τ (PLIF: λ = 1 − σ(w))."""
        if self.kind == "plif":
            w = -math.log(self.tau - 1.0) if self.plif_w is None else self.plif_w
            return 1.0 - 1.0 / (1.0 + math.exp(-w))
        return 1.0 - 1.0 / self.tau


def reference_config(neuron: Any, **overrides: Any) -> ReferenceConfig:
    """The reference configuration of a neuron module, read from its public attributes."""
    kw: dict[str, Any] = {
        "kind": neuron.kind,
        "tau": float(neuron.tau),
        "v_threshold": float(neuron.v_threshold),
        "shape": neuron.surrogate.name,
        "width": float(neuron.surrogate.width),
        "detach_reset": bool(neuron.detach_reset),
    }
    for name in ("ciu_gain", "mpiu_gain", "mpiu", "ciu", "detach_inhibition", "tau_adapt", "beta"):
        if hasattr(neuron, name):
            kw[name] = getattr(neuron, name)
    if neuron.kind == "plif":
        kw["plif_w"] = float(neuron.w.detach().double())
    kw.update(overrides)
    return ReferenceConfig(**kw)


def run_reference(
    cfg: ReferenceConfig, x_seq: Tensor
) -> tuple[Tensor, dict[str, Tensor], Tensor]:
    """Run ``cfg`` on ``x_seq`` [T, *] from the all-zero state.

    Returns the spikes [T, *], the final state (named as the library's state fields: v, and
    trace/memory/drive, c, or a/s) and the threshold crossings h = H − θ [T, *].
    """
    lam = cfg.leak()
    theta = cfg.v_threshold
    zeros = torch.zeros_like(x_seq[0])
    step = {"lif": _lif, "plif": _lif, "ilif": _ilif, "clif": _clif, "alif": _alif}[cfg.kind]
    state: dict[str, Tensor] = {}
    spikes, crossings = [], []
    for t in range(x_seq.shape[0]):
        s, h = step(cfg, lam, theta, x_seq[t], state, zeros)
        spikes.append(s)
        crossings.append(h.detach())
    return torch.stack(spikes), state, torch.stack(crossings)


def _reset_spike(cfg: ReferenceConfig, s: Tensor) -> Tensor:
    return s.detach() if cfg.detach_reset else s


def _lif(cfg, lam, theta, x, st, zeros):
    # H_t = λ·v_{t−1} + x_t ; S_t = Θ(H_t − θ) ; v_t = H_t − S_t·θ
    v = st.get("v", zeros)
    big_h = lam * v + x
    h = big_h - theta
    s = spike(h, cfg.shape, cfg.width)
    st["v"] = big_h - _reset_spike(cfg, s) * theta
    return s, h


def _ilif(cfg, lam, theta, x, st, zeros):
    # I_t = k·(I_{t−1} + x_{t−1}·S_{t−1}) ; H_t = λ·v_{t−1} + x_t − max(I_t, 0)
    # S_t = Θ(H_t − θ) ; U_t = H_t − S_t·θ ; M_t = κ·(M_{t−1} + S_t·U_t) ; v_t = U_t − S_t·σ(M_t)
    v = st.get("v", zeros)
    big_h = lam * v + x
    if cfg.ciu:
        i = cfg.ciu_gain * (st.get("trace", zeros) + st.get("drive", zeros))
        inhibition = clamp_min0(i)
        if cfg.detach_inhibition:
            inhibition = inhibition.detach()
        big_h = big_h - inhibition
        st["trace"] = i
    h = big_h - theta
    s = spike(h, cfg.shape, cfg.width)
    u = big_h - _reset_spike(cfg, s) * theta
    if cfg.mpiu:
        m = cfg.mpiu_gain * (st.get("memory", zeros) + s * u)
        sig_m = 1.0 / (1.0 + torch.exp(-m))
        if cfg.detach_inhibition:
            sig_m = sig_m.detach()
        st["memory"] = m
        st["v"] = u - s * sig_m
    else:
        st["v"] = u
    if cfg.ciu:
        st["drive"] = x * s  # x_t·S_t, used by I_{t+1}
    return s, h


def _clif(cfg, lam, theta, x, st, zeros):
    # H_t = λ·v_{t−1} + x_t ; C'_t = C_{t−1}·σ(H_t/τ) ; S_t = Θ(H_t − θ)
    # C_t = C'_t + S_t ; v_t = H_t − S_t·θ − S_t·σ(C_t)
    v, c = st.get("v", zeros), st.get("c", zeros)
    big_h = lam * v + x
    c_decayed = c * (1.0 / (1.0 + torch.exp(-big_h / cfg.tau)))
    h = big_h - theta
    s = spike(h, cfg.shape, cfg.width)
    c = c_decayed + s
    s_r = _reset_spike(cfg, s)
    st["v"] = big_h - s_r * theta - s_r * (1.0 / (1.0 + torch.exp(-c)))
    st["c"] = c
    return s, h


def _alif(cfg, lam, theta, x, st, zeros):
    # a_t = ρ·a_{t−1} + (1 − ρ)·S_{t−1} ; θ_t = θ₀ + β·a_t
    # H_t = λ·v_{t−1} + x_t ; S_t = Θ(H_t − θ_t) ; v_t = H_t − S_t·θ_t
    rho = math.exp(-1.0 / cfg.tau_adapt)
    v, a, s_prev = st.get("v", zeros), st.get("a", zeros), st.get("s", zeros)
    a = rho * a + (1.0 - rho) * s_prev
    threshold = theta + cfg.beta * a
    big_h = lam * v + x
    h = big_h - threshold
    s = spike(h, cfg.shape, cfg.width)
    st["v"] = big_h - _reset_spike(cfg, s) * threshold
    st["a"], st["s"] = a, s
    return s, h


# ------------------------------------------------------------------------------ comparison
def spike_agreement(neuron: Any, x_seq: Tensor) -> float:
    """Share of spikes of ``neuron`` (fresh state, input dtype) equal to the float64 reference."""
    neuron.reset()
    with torch.no_grad():
        got = neuron(x_seq)
        ref, _, _ = run_reference(reference_config(neuron), x_seq.detach().double())
    neuron.reset()
    return (got.double() == ref).double().mean().item()


def assert_matches_reference(
    neuron: Any,
    x_seq: Tensor,
    grad_rtol: float = 1e-7,
    state_rtol: float = 1e-10,
    weight_seed: int = 1,
) -> dict[str, Tensor]:
    """Spikes equal the reference exactly, input gradients of ``Σ w·S`` (random w) match to
    ``grad_rtol``, final states to ``state_rtol``. ``neuron`` runs in step_mode 'm' from a fresh
    state; ``x_seq`` [T, *] should be float64. Returns the gradients and spikes for further
    checks."""
    cfg = reference_config(neuron)
    weights = torch.rand(x_seq.shape, generator=torch.Generator().manual_seed(weight_seed),
                         dtype=torch.float64).to(x_seq.dtype)

    x_ref = x_seq.detach().double().requires_grad_(True)
    ref_spikes, ref_state, _ = run_reference(cfg, x_ref)
    (ref_spikes * weights.double()).sum().backward()

    x_got = x_seq.detach().clone().requires_grad_(True)
    neuron.reset()
    got_spikes = neuron(x_got)
    state = neuron.state
    (got_spikes * weights).sum().backward()
    neuron.reset()

    assert got_spikes.dtype == x_seq.dtype and got_spikes.shape == x_seq.shape
    mismatch = (got_spikes.detach().double() != ref_spikes.detach()).sum().item()
    assert mismatch == 0, f"{mismatch} of {ref_spikes.numel()} spikes differ from the reference"
    for name, ref_value in ref_state.items():
        torch.testing.assert_close(
            getattr(state, name).detach().double(), ref_value.detach(),
            rtol=state_rtol, atol=state_rtol, msg=lambda m, n=name: f"state {n}: {m}",
        )
    scale = ref_spikes.new_tensor(1.0).clamp(min=x_ref.grad.abs().max().item())
    torch.testing.assert_close(
        x_got.grad.double(), x_ref.grad, rtol=grad_rtol, atol=grad_rtol * 1e-3 * scale.item(),
        msg=lambda m: f"input gradient vs reference: {m}",
    )
    return {"grad": x_got.grad, "ref_grad": x_ref.grad, "spikes": got_spikes.detach()}

