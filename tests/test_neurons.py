"""The neurons of docs/neurons.md against hand-computed values, the float64 reference and
SpikingJelly."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from reference import (
    assert_matches_reference,
    reference_config,
    run_reference,
    spike_agreement,
)
from torch import nn

import ilif
from ilif import surrogate
from ilif.neurons import NEURON_VARIANTS, Neuron, NeuronStats, create_neuron

DTYPE = torch.float64
# The eager engine; the fused kernels have their own tests, which can reuse these checks.
BACKEND = "torch"
TAUS = [1.1, 2.0, 4.0]
WIDTHS = [0.5, 1.0, 2.0]
SHAPES = [surrogate.Rectangle, surrogate.Triangle, surrogate.Sigmoid, surrogate.ATan]
ILIF_FLAGS = list(itertools.product([True, False], repeat=4))  # mpiu, ciu, detach_reset, detach_inh


def _ilif_factory(mpiu: bool, ciu: bool, detach_reset: bool, detach_inhibition: bool):
    def make(**kw) -> Neuron:
        return ilif.ILIF(mpiu=mpiu, ciu=ciu, detach_reset=detach_reset,
                         detach_inhibition=detach_inhibition, **kw)

    flags = f"mpiu{int(mpiu)}-ciu{int(ciu)}-dr{int(detach_reset)}-di{int(detach_inhibition)}"
    return pytest.param(make, id=f"ilif-{flags}")


NEURON_FACTORIES = [
    pytest.param(ilif.LIF, id="lif"),
    pytest.param(ilif.CLIF, id="clif"),
    pytest.param(ilif.ALIF, id="alif"),
    pytest.param(ilif.PLIF, id="plif"),
    pytest.param(lambda **kw: ilif.LIF(detach_reset=True, **kw), id="lif-dr1"),
    pytest.param(lambda **kw: ilif.CLIF(detach_reset=True, **kw), id="clif-dr1"),
    pytest.param(lambda **kw: ilif.ALIF(detach_reset=True, **kw), id="alif-dr1"),
    *[_ilif_factory(*flags) for flags in ILIF_FLAGS],
]


def random_input(shape: tuple[int, ...], seed: int, dtype=DTYPE) -> torch.Tensor:
    """Currents N(0.5, 0.8²): a mix of silent, single and repeated spikes for θ = 1."""
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(shape, generator=g, dtype=torch.float64) * 0.8 + 0.5).to(dtype)


def run_steps(neuron: Neuron, xs: list[float]) -> tuple[list[float], list[tuple]]:
    """Single-step a scalar neuron (shape [1]) through ``xs``; spikes and the state after each."""
    neuron.step_mode = "s"
    neuron.reset()
    spikes, states = [], []
    for x in xs:
        spikes.append(neuron(torch.tensor([x], dtype=DTYPE)).item())
        states.append(tuple(t.item() for t in neuron.state))
    return spikes, states


def field_trace(states: list[tuple], neuron: Neuron, name: str) -> list[float]:
    index = neuron.state_type._fields.index(name)
    return [s[index] for s in states]


# ------------------------------------------------------------------------- hand-computed values
X_HAND = [1.5, 1.0, 1.25, 1.0]


def test_lif_hand_computed() -> None:
    # τ = 2 → λ = 0.5, θ = 1, x = [0.5, 0.75, 0.5, 1.0]:
    # t1 H = 0.5            S = 0  v = 0.5
    # t2 H = 0.25 + 0.75 = 1.0 = θ → S = 1 (Θ(0) = 1)  v = 0
    # t3 H = 0 + 0.5 = 0.5  S = 0  v = 0.5
    # t4 H = 0.25 + 1 = 1.25 S = 1 v = 0.25
    neuron = ilif.LIF(tau=2.0, backend=BACKEND)
    spikes, states = run_steps(neuron, [0.5, 0.75, 0.5, 1.0])
    assert spikes == [0.0, 1.0, 0.0, 1.0]
    assert field_trace(states, neuron, "v") == [0.5, 0.0, 0.5, 0.25]


def test_lif_hand_computed_on_ilif_input() -> None:
    # τ = 2, x = [1.5, 1.0, 1.25, 1.0]: H = 1.5, 0.25 + 1 = 1.25, 0.125 + 1.25 = 1.375,
    # 0.1875 + 1 = 1.1875: all above θ, v = H − 1 = 0.5, 0.25, 0.375, 0.1875.
    neuron = ilif.LIF(tau=2.0, backend=BACKEND)
    spikes, states = run_steps(neuron, X_HAND)
    assert spikes == [1.0, 1.0, 1.0, 1.0]
    assert field_trace(states, neuron, "v") == [0.5, 0.25, 0.375, 0.1875]


def test_ilif_hand_computed_both_units() -> None:
    # τ = 2 (λ = 0.5), θ = 1, k = 0.5, κ = 1, x = [1.5, 1.0, 1.25, 1.0], σ = logistic:
    # t1 I = 0, H = 1.5, S = 1, U = 0.5, M = 0.5, v = 0.5 − σ(0.5) = 0.5 − 0.6224593312
    #    = −0.1224593312
    # t2 I = 0.5·(0 + 1.5·1) = 0.75, H = 0.5·(−0.1224593312) + 1 − 0.75 = 0.1887703344, S = 0,
    #    M = 0.5, v = 0.1887703344
    # t3 I = 0.5·(0.75 + 0) = 0.375, H = 0.0943851672 + 1.25 − 0.375 = 0.9693851672, S = 0
    #    (LIF would spike here), v = 0.9693851672
    # t4 I = 0.5·0.375 = 0.1875, H = 0.4846925836 + 1 − 0.1875 = 1.2971925836, S = 1,
    #    U = 0.2971925836, M = 0.5 + 0.2971925836 = 0.7971925836,
    #    v = 0.2971925836 − σ(0.7971925836) = 0.2971925836 − 0.6893736275 = −0.3921810439
    neuron = ilif.ILIF(tau=2.0, ciu_gain=0.5, mpiu_gain=1.0, backend=BACKEND)
    spikes, states = run_steps(neuron, X_HAND)
    assert spikes == [1.0, 0.0, 0.0, 1.0]
    v = field_trace(states, neuron, "v")
    assert v == pytest.approx([-0.1224593312, 0.1887703344, 0.9693851672, -0.3921810439],
                              abs=1e-10)
    assert field_trace(states, neuron, "trace") == [0.0, 0.75, 0.375, 0.1875]
    assert field_trace(states, neuron, "memory") == pytest.approx(
        [0.5, 0.5, 0.5, 0.7971925836], abs=1e-10)
    assert field_trace(states, neuron, "drive") == [1.5, 0.0, 0.0, 1.0]  # x_t·S_t


def test_ilif_hand_computed_mpiu_only() -> None:
    # LIF+MPIU (I ≡ 0), τ = 2, κ = 1, x = [1.5, 1.0, 1.25, 1.0]:
    # t1 H = 1.5, S = 1, U = 0.5, M = 0.5, v = 0.5 − σ(0.5) = −0.1224593312
    # t2 H = −0.0612296656 + 1 = 0.9387703344, S = 0, v = 0.9387703344
    # t3 H = 0.4693851672 + 1.25 = 1.7193851672, S = 1, U = 0.7193851672,
    #    M = 0.5 + 0.7193851672 = 1.2193851672, v = 0.7193851672 − σ(1.2193851672)
    #    = 0.7193851672 − 0.7719553322 = −0.0525701650
    # t4 H = −0.0262850825 + 1 = 0.9737149175, S = 0, v = 0.9737149175
    neuron = ilif.ILIF(tau=2.0, ciu=False, backend=BACKEND)
    spikes, states = run_steps(neuron, X_HAND)
    assert spikes == [1.0, 0.0, 1.0, 0.0]
    assert field_trace(states, neuron, "v") == pytest.approx(
        [-0.1224593312, 0.9387703344, -0.0525701650, 0.9737149175], abs=1e-10)
    assert field_trace(states, neuron, "memory") == pytest.approx(
        [0.5, 0.5, 1.2193851672, 1.2193851672], abs=1e-10)
    assert field_trace(states, neuron, "trace") == [0.0] * 4


def test_ilif_hand_computed_ciu_only() -> None:
    # LIF+CIU (no M), τ = 2, k = 0.5, x = [1.5, 1.0, 1.25, 1.0]:
    # t1 I = 0, H = 1.5, S = 1, v = 0.5
    # t2 I = 0.5·(0 + 1.5) = 0.75, H = 0.25 + 1 − 0.75 = 0.5, S = 0, v = 0.5
    # t3 I = 0.5·(0.75 + 0) = 0.375, H = 0.25 + 1.25 − 0.375 = 1.125, S = 1, v = 0.125
    # t4 I = 0.5·(0.375 + 1.25) = 0.8125, H = 0.0625 + 1 − 0.8125 = 0.25, S = 0, v = 0.25
    neuron = ilif.ILIF(tau=2.0, ciu_gain=0.5, mpiu=False, backend=BACKEND)
    spikes, states = run_steps(neuron, X_HAND)
    assert spikes == [1.0, 0.0, 1.0, 0.0]
    assert field_trace(states, neuron, "v") == [0.5, 0.5, 0.125, 0.25]
    assert field_trace(states, neuron, "trace") == [0.0, 0.75, 0.375, 0.8125]
    assert field_trace(states, neuron, "memory") == [0.0] * 4


def test_ilif_hand_computed_both_off_is_lif() -> None:
    # No unit: the LIF trajectory of test_lif_hand_computed_on_ilif_input.
    neuron = ilif.ILIF(tau=2.0, ciu_gain=0.5, mpiu=False, ciu=False, backend=BACKEND)
    spikes, states = run_steps(neuron, X_HAND)
    assert spikes == [1.0, 1.0, 1.0, 1.0]
    assert field_trace(states, neuron, "v") == [0.5, 0.25, 0.375, 0.1875]


def test_clif_hand_computed() -> None:
    # τ = 2 (λ = 0.5), θ = 1, x = [1.5, 1.0, 1.25, 1.0]:
    # t1 H = 1.5, C' = 0·σ(0.75) = 0, S = 1, C = 1, v = 1.5 − 1 − σ(1) = −0.2310585786
    # t2 H = −0.1155292893 + 1 = 0.8844707107, C' = 1·σ(0.4422353553) = 0.6087915421, S = 0,
    #    C = 0.6087915421, v = 0.8844707107
    # t3 H = 0.4422353553 + 1.25 = 1.6922353553, C' = 0.6087915421·σ(0.8461176777)
    #    = 0.6087915421·0.6997521031 = 0.4260031620, S = 1, C = 1.4260031620,
    #    v = 1.6922353553 − 1 − σ(1.4260031620) = 0.6922353553 − 0.8062777981 = −0.1140424428
    # t4 H = −0.0570212214 + 1 = 0.9429787786, C' = 1.4260031620·σ(0.4714893893)
    #    = 1.4260031620·0.6157362142 = 0.8780417884, S = 0, v = 0.9429787786
    neuron = ilif.CLIF(tau=2.0, backend=BACKEND)
    spikes, states = run_steps(neuron, X_HAND)
    assert spikes == [1.0, 0.0, 1.0, 0.0]
    assert field_trace(states, neuron, "v") == pytest.approx(
        [-0.2310585786, 0.8844707107, -0.1140424428, 0.9429787786], abs=1e-10)
    assert field_trace(states, neuron, "c") == pytest.approx(
        [1.0, 0.6087915421, 1.4260031620, 0.8780417884], abs=1e-10)


def test_alif_hand_computed() -> None:
    # τ = 2 (λ = 0.5), θ₀ = 1, τ_a = 4 → ρ = e^(−1/4) = 0.7788007831, β = 1, x = [1.5, 1, 1.25, 1]:
    # t1 a = 0, θ = 1, H = 1.5, S = 1, v = 0.5
    # t2 a = (1 − ρ)·1 = 0.2211992169, θ = 1.2211992169, H = 0.25 + 1 = 1.25, S = 1,
    #    v = 1.25 − 1.2211992169 = 0.0288007831
    # t3 a = ρ·0.2211992169 + 0.2211992169 = 0.3934693403, θ = 1.3934693403,
    #    H = 0.0144003915 + 1.25 = 1.2644003915 < θ, S = 0, v = 1.2644003915
    # t4 a = ρ·0.3934693403 + 0 = 0.3064342303, θ = 1.3064342303,
    #    H = 0.6322001958 + 1 = 1.6322001958, S = 1, v = 1.6322001958 − 1.3064342303 = 0.3257659654
    neuron = ilif.ALIF(tau=2.0, tau_adapt=4.0, beta=1.0, backend=BACKEND)
    spikes, states = run_steps(neuron, X_HAND)
    assert spikes == [1.0, 1.0, 0.0, 1.0]
    assert field_trace(states, neuron, "v") == pytest.approx(
        [0.5, 0.0288007831, 1.2644003915, 0.3257659654], abs=1e-10)
    assert field_trace(states, neuron, "a") == pytest.approx(
        [0.0, 0.2211992169, 0.3934693403, 0.3064342303], abs=1e-10)


def test_plif_hand_computed() -> None:
    # τ₀ = 2: w = −ln(τ₀ − 1) = 0, 1/τ = σ(0) = 0.5, λ = 0.5: the LIF(2) trajectory.
    neuron = ilif.PLIF(tau=2.0, backend=BACKEND)
    assert neuron.w.item() == 0.0
    spikes, states = run_steps(neuron, X_HAND)
    assert spikes == [1.0, 1.0, 1.0, 1.0]
    assert field_trace(states, neuron, "v") == [0.5, 0.25, 0.375, 0.1875]
    # τ₀ = 4: w = −ln 3 = −1.0986122887, σ(w) = 1/(1 + 3) = 0.25, λ = 0.75.
    assert ilif.PLIF(tau=4.0).w.item() == pytest.approx(-1.0986122887, abs=1e-7)
    assert ilif.PLIF(tau=4.0).decay.item() == pytest.approx(0.75, abs=1e-7)


def test_lif_hand_computed_gradient_rectangle() -> None:
    # τ = 2, θ = 1, Rectangle(γ = 1), x = [0.5, 0.75, 0.5, 1.0], L = Σ_t S_t.
    # h = H − θ = [−0.5, 0, −0.5, 0.25] → g = [0 (|h| = γ/2 is closed), 1, 0, 1].
    # dL/dH_t = g_t + λ·(1 − θ·g_t)·dL/dH_{t+1}:
    #   dL/dH_4 = 1 ; dL/dH_3 = 0 + 0.5·1·1 = 0.5 ; dL/dH_2 = 1 + 0.5·0·0.5 = 1 ;
    #   dL/dH_1 = 0 + 0.5·1·1 = 0.5 ; dL/dx_t = dL/dH_t.
    x = torch.tensor([[0.5], [0.75], [0.5], [1.0]], dtype=DTYPE, requires_grad=True)
    neuron = ilif.LIF(tau=2.0, surrogate=surrogate.Rectangle(width=1.0), backend=BACKEND)
    neuron(x).sum().backward()
    assert x.grad.flatten().tolist() == [0.5, 1.0, 0.5, 1.0]


def test_ciu_clamp_has_unit_derivative_at_zero() -> None:
    # LIF+CIU, τ = 2, k = 0.5, Rectangle(γ = 1), x = [0.8, 0.9], L = S_2.
    # t1 I_1 = 0, H_1 = 0.8, h_1 = −0.2 (open, g = 1), S_1 = 0.
    # t2 I_2 = k·(I_1 + x_1·S_1) = 0 exactly, H_2 = 0.4 + 0.9 − max(0, 0) = 1.3, h_2 = 0.3 (g = 1).
    # dL/dx_2 = 1. dL/dx_1 via v_1: λ·(1 − g_1·θ) = 0; via I_2: −(d max/dI at 0 = 1)·k·x_1·g_1
    #   = −0.5·0.8 = −0.4 (a relu, with derivative 0 at 0, would give 0).
    x = torch.tensor([[0.8], [0.9]], dtype=DTYPE, requires_grad=True)
    neuron = ilif.ILIF(tau=2.0, ciu_gain=0.5, mpiu=False, surrogate=surrogate.Rectangle(1.0),
                       backend=BACKEND)
    s = neuron(x)
    assert s.flatten().tolist() == [0.0, 1.0]
    s[1].sum().backward()
    assert x.grad.flatten().tolist() == pytest.approx([-0.4, 1.0], abs=1e-15)


# --------------------------------------------------------------- float64 reference, random input
@pytest.mark.parametrize("make", NEURON_FACTORIES)
@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("tau", TAUS)
def test_matches_float64_reference(make: Callable[..., Neuron], tau: float, width: float) -> None:
    neuron = make(tau=tau, surrogate=surrogate.Rectangle(width=width), backend=BACKEND)
    x = random_input((10, 64, 3), seed=int(tau * 100 + width * 10))
    result = assert_matches_reference(neuron.double(), x)
    assert result["spikes"].any() and not result["spikes"].all()
    assert result["ref_grad"].abs().sum() > 0
    # float32: the same input rounded to float32, ≥ 99.9 % of the spikes as in float64
    assert spike_agreement(neuron.float(), x.float()) >= 0.999


@pytest.mark.parametrize("make", NEURON_FACTORIES[:8])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda c: c.name)
def test_matches_float64_reference_every_surrogate(make, shape) -> None:
    neuron = make(tau=1.1, surrogate=shape(width=0.5), backend=BACKEND)
    assert_matches_reference(neuron.double(), random_input((8, 96), seed=7))


def test_reference_comparison_catches_a_wrong_neuron() -> None:
    # The comparison is not vacuous: an ILIF that runs k = 0.04 while saying k = 0.03 fails it.
    class Mislabelled(ilif.ILIF):
        def params(self):
            return super().params()._replace(ciu_gain=0.04)

    x = random_input((10, 128), seed=3)
    assert_matches_reference(ilif.ILIF(tau=1.1, backend=BACKEND).double(), x)
    with pytest.raises(AssertionError):
        assert_matches_reference(Mislabelled(tau=1.1, backend=BACKEND).double(), x)


# --------------------------------------------------------------------------- exact equivalences
@pytest.mark.parametrize("shape", SHAPES, ids=lambda c: c.name)
@pytest.mark.parametrize("detach_reset", [False, True])
@pytest.mark.parametrize("tau", TAUS)
def test_ilif_without_units_equals_lif_exactly(shape, detach_reset: bool, tau: float) -> None:
    kw = dict(tau=tau, surrogate=shape(width=1.0), detach_reset=detach_reset, backend=BACKEND)
    x = random_input((12, 200), seed=11)
    x_lif, x_ilif = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    w = torch.rand_like(x)
    s_lif = ilif.LIF(**kw)(x_lif)
    s_ilif = ilif.ILIF(mpiu=False, ciu=False, **kw)(x_ilif)
    (s_lif * w).sum().backward()
    (s_ilif * w).sum().backward()
    assert torch.equal(s_lif, s_ilif)
    assert torch.equal(x_lif.grad, x_ilif.grad)


@pytest.mark.parametrize("tau", TAUS)
def test_plif_at_init_equals_lif(tau: float, float64_default) -> None:
    # Created with float64 as the default dtype, w = −ln(τ₀ − 1) is exact to float64 and the
    # spikes and input gradients equal LIF(τ₀).
    x = random_input((12, 300), seed=5)
    w = torch.rand_like(x)
    outs = []
    for neuron in (ilif.LIF(tau=tau, backend=BACKEND), ilif.PLIF(tau=tau, backend=BACKEND)):
        xi = x.clone().requires_grad_(True)
        s = neuron(xi)
        (s * w).sum().backward()
        outs.append((s, xi.grad))
    assert torch.equal(outs[0][0], outs[1][0])
    torch.testing.assert_close(outs[1][1], outs[0][1], rtol=1e-12, atol=1e-14)


def test_plif_leak_is_learnable() -> None:
    neuron = ilif.PLIF(tau=2.0, backend=BACKEND).double()
    x = random_input((8, 50), seed=9).requires_grad_(True)
    neuron(x).sum().backward()
    assert neuron.w.grad is not None and neuron.w.grad.abs() > 0
    assert [name for name, _ in neuron.named_parameters()] == ["w"]
    for cls in (ilif.LIF, ilif.ILIF, ilif.CLIF, ilif.ALIF):
        assert list(cls().parameters()) == []


@pytest.mark.parametrize("name", list(NEURON_VARIANTS))
def test_create_neuron_variants(name: str) -> None:
    neuron = create_neuron(name, tau=1.1, width=0.5)
    cls, preset = NEURON_VARIANTS[name]
    assert type(neuron) is cls and neuron.tau == 1.1 and neuron.surrogate.width == 0.5
    for key, value in preset.items():
        assert getattr(neuron, key) == value
    if name == "ilif-mpiu":
        assert neuron.mpiu and not neuron.ciu  # LIF+MPIU
    if name == "ilif-ciu":
        assert neuron.ciu and not neuron.mpiu  # LIF+CIU


# --------------------------------------------------------------- step modes, state and reset
KINDS = {
    "lif": lambda: ilif.LIF(tau=1.1, backend=BACKEND),
    "ilif": lambda: ilif.ILIF(tau=1.1, ciu_gain=0.3, mpiu_gain=0.9, backend=BACKEND),
    "ilif-mpiu": lambda: ilif.ILIF(tau=2.0, ciu=False, backend=BACKEND),
    "ilif-ciu": lambda: ilif.ILIF(tau=2.0, ciu_gain=0.5, mpiu=False, backend=BACKEND),
    "clif": lambda: ilif.CLIF(tau=2.0, backend=BACKEND),
    "plif": lambda: ilif.PLIF(tau=4.0, backend=BACKEND),
    "alif": lambda: ilif.ALIF(tau=2.0, tau_adapt=3.0, beta=0.5, backend=BACKEND),
}


def _fresh(kind: str, step_mode: str) -> Neuron:
    neuron = KINDS[kind]().double()
    neuron.backend, neuron.step_mode = BACKEND, step_mode
    return neuron


def _states_equal(a: tuple, b: tuple) -> bool:
    return all(torch.equal(u, v) for u, v in zip(a, b, strict=True))


@given(
    kind=st.sampled_from(sorted(KINDS)),
    steps=st.integers(1, 7),
    shape=st.lists(st.integers(1, 4), min_size=1, max_size=3).map(tuple),
    seed=st.integers(0, 2**16),
)
def test_multi_step_equals_single_steps(kind: str, steps: int, shape: tuple, seed: int) -> None:
    x = random_input((steps, *shape), seed=seed)
    w = torch.rand_like(x)
    x_multi, x_single = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    multi, single = _fresh(kind, "m"), _fresh(kind, "s")
    s_multi = multi(x_multi)
    s_single = torch.stack([single(x_t) for x_t in x_single.unbind(0)])
    assert torch.equal(s_multi, s_single)
    assert _states_equal(multi.state, single.state)
    (s_multi * w).sum().backward()
    (s_single * w).sum().backward()
    assert torch.equal(x_multi.grad, x_single.grad)


@given(
    kind=st.sampled_from(sorted(KINDS)),
    steps=st.integers(2, 8),
    split=st.integers(1, 7),
    batch=st.integers(1, 5),
    seed=st.integers(0, 2**16),
)
def test_multi_step_continues_from_current_state(kind, steps, split, batch, seed) -> None:
    split = min(split, steps - 1)
    x = random_input((steps, batch, 2), seed=seed)
    whole = _fresh(kind, "m")
    s_whole = whole(x)
    parts = _fresh(kind, "m")
    s_parts = torch.cat([parts(x[:split]), parts(x[split:])])
    assert torch.equal(s_whole, s_parts)
    assert _states_equal(whole.state, parts.state)
    # single steps first, then a multi-step call on the rest
    mixed = _fresh(kind, "s")
    head = [mixed(x_t) for x_t in x[:split]]
    mixed.step_mode = "m"
    assert torch.equal(torch.cat([torch.stack(head), mixed(x[split:])]), s_whole)


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_reset_restores_the_initial_state(kind: str) -> None:
    x = random_input((6, 4, 5), seed=21)
    neuron = _fresh(kind, "m")
    first = neuron(x)
    assert neuron.state is not None and any(t.abs().sum() > 0 for t in neuron.state)
    assert not torch.equal(neuron(x), first)  # the carried state changes the output
    neuron.reset()
    assert neuron.state is None
    assert torch.equal(neuron(x), first)
    zero = neuron.initial_state(x[0])
    assert type(zero) is neuron.state_type and all(torch.equal(t, torch.zeros_like(x[0]))
                                                    for t in zero)


# ----------------------------------------------------------------------------------- statistics
def test_stats_callback_counts_spikes_and_open_steps() -> None:
    width = 0.5
    neuron = ilif.ILIF(tau=1.1, surrogate=surrogate.Sigmoid(width=width), backend=BACKEND)
    neuron = neuron.double()
    x = random_input((6, 40, 3), seed=4)
    calls = []
    neuron.stats_callback = lambda n, stats, s: calls.append((n, stats, s))
    spikes = neuron(x)
    ref_spikes, _, h = run_reference(reference_config(neuron), x)
    (who, stats, passed), = calls
    assert who is neuron and passed is spikes and isinstance(stats, NeuronStats)
    assert stats.neurons == 120
    assert stats.spikes.tolist() == ref_spikes.sum(dim=(1, 2)).tolist()
    assert stats.open.tolist() == (h.abs() < width / 2).sum(dim=(1, 2)).double().tolist()
    g = (4 / width) * torch.sigmoid(4 * h / width) * torch.sigmoid(-4 * h / width)
    torch.testing.assert_close(stats.surrogate_sum, g.sum(dim=(1, 2)), rtol=1e-5, atol=1e-6)
    neuron.step_mode = "s"
    neuron.reset()
    neuron(x[0])
    assert calls[-1][1].spikes.shape == (1,)
    assert calls[-1][1].spikes.item() == ref_spikes[0].sum().item()


# ------------------------------------------------------------------------- SpikingJelly oracle
def _spikingjelly_pairs():
    sj_surrogate = pytest.importorskip("spikingjelly.activation_based.surrogate")
    # Equal derivatives: Rect(α) is 1/γ-wide with α = 1/γ; PiecewiseQuadratic(α) is the triangle
    # α·(1 − α|h|) with α = 1/γ; Sigmoid(α) is d/dh σ(αh) with α = 4/γ; ATan(α) is
    # (α/2)/(1 + (παh/2)²) with α = 2/γ.
    return {
        "rectangle": lambda g: sj_surrogate.Rect(alpha=1.0 / g),
        "triangle": lambda g: sj_surrogate.PiecewiseQuadratic(alpha=1.0 / g),
        "sigmoid": lambda g: sj_surrogate.Sigmoid(alpha=4.0 / g),
        "atan": lambda g: sj_surrogate.ATan(alpha=2.0 / g),
    }


@pytest.mark.parametrize("shape", SHAPES, ids=lambda c: c.name)
@pytest.mark.parametrize("tau", TAUS)
def test_lif_equals_spikingjelly(shape, tau: float) -> None:
    sj_neuron = pytest.importorskip("spikingjelly.activation_based.neuron")
    pairs = _spikingjelly_pairs()
    for width in WIDTHS:
        x = random_input((10, 32, 4), seed=int(tau * 10 + width))
        w = torch.rand_like(x)
        oracle = sj_neuron.LIFNode(tau=tau, decay_input=False, v_reset=None, v_threshold=1.0,
                                   surrogate_function=pairs[shape.name](width), step_mode="m")
        ours = ilif.LIF(tau=tau, surrogate=shape(width=width), backend=BACKEND)
        grads, spikes = [], []
        for neuron in (oracle, ours):
            xi = x.clone().requires_grad_(True)
            s = neuron(xi)
            (s * w).sum().backward()
            spikes.append(s)
            grads.append(xi.grad)
        assert torch.equal(spikes[0], spikes[1])
        torch.testing.assert_close(grads[1], grads[0], rtol=1e-12, atol=1e-14)


def test_spikingjelly_reset_net_and_sequential() -> None:
    functional = pytest.importorskip("spikingjelly.activation_based.functional")
    model = nn.Sequential(nn.Linear(6, 5), ilif.ILIF(step_mode="s", backend=BACKEND),
                          nn.Linear(5, 3), ilif.LIF(step_mode="s", backend=BACKEND))
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for linear in (model[0], model[2]):
            linear.weight.copy_(torch.rand(linear.weight.shape, generator=g) * 0.6)
            linear.bias.zero_()
    x = torch.rand(4, 6, generator=g)
    first = [model(x) for _ in range(4)]
    assert first[0].any() and not all(torch.equal(first[0], f) for f in first)  # state matters
    neurons = [model[1], model[3]]
    assert all(n.state is not None for n in neurons)
    functional.reset_net(model)
    assert all(n.state is None for n in neurons)
    again = [model(x) for _ in range(4)]
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    ilif.reset_net(model)
    assert all(n.state is None for n in neurons)
    model(x)
    with pytest.raises(RuntimeError, match="reset"):
        model(x[:2])  # a new batch size without a reset: the left-over state is caught


# ------------------------------------------------------------------ use inside PyTorch models
ALL_KINDS = sorted(KINDS)


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_state_follows_input_dtype(kind: str) -> None:
    neuron = KINDS[kind]()
    neuron.step_mode = "s"
    x = random_input((3, 4), seed=1, dtype=torch.float32)
    neuron(x)
    assert all(t.dtype == torch.float32 for t in neuron.state)
    s64 = neuron(x.double())  # continuing in float64: the state is converted, not rejected
    assert s64.dtype == torch.float64 and all(t.dtype == torch.float64 for t in neuron.state)
    neuron.reset()
    assert neuron(x.half()).dtype == torch.float16


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_state_follows_input_device(kind: str) -> None:
    # The meta device stands in for an accelerator: the state must live where the input lives.
    neuron = KINDS[kind]().to("meta")
    x = torch.empty(5, 3, 2, device="meta")
    out = neuron(x)
    assert out.device.type == "meta" and out.shape == x.shape
    assert all(t.device.type == "meta" for t in neuron.state)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("kind", ALL_KINDS)
def test_cuda_matches_cpu(kind: str) -> None:
    x = random_input((8, 16, 8), seed=2)
    cpu = _fresh(kind, "m")
    cuda = _fresh(kind, "m").to("cuda")
    assert torch.equal(cuda(x.cuda()).cpu(), cpu(x))
    assert all(t.device.type == "cuda" for t in cuda.state)


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_no_grad_inference(kind: str) -> None:
    x = random_input((6, 10), seed=8).requires_grad_(True)
    with_grad = _fresh(kind, "m")(x)
    neuron = _fresh(kind, "m")
    with torch.no_grad():
        out = neuron(x)
    assert not out.requires_grad and not any(t.requires_grad for t in neuron.state)
    assert torch.equal(out, with_grad.detach())


@pytest.mark.parametrize("kind", ALL_KINDS)
@pytest.mark.parametrize("step_mode", ["s", "m"])
def test_bfloat16_autocast_after_conv(kind: str, step_mode: str) -> None:
    steps, batch = 4, 2
    conv = nn.Conv2d(2, 4, 3, padding=1)
    neuron = KINDS[kind]()
    neuron.step_mode = step_mode
    x = random_input((steps, batch, 2, 6, 6), seed=3, dtype=torch.float32) * 2

    def run() -> torch.Tensor:
        neuron.reset()
        if step_mode == "s":
            model = nn.Sequential(conv, neuron)
            return torch.stack([model(x_t) for x_t in x])
        current = conv(x.flatten(0, 1)).unflatten(0, (steps, batch))
        return neuron(current)

    exact = run()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = run()
    assert low.dtype == torch.bfloat16 and exact.dtype == torch.float32
    assert set(low.unique().tolist()) <= {0.0, 1.0}
    assert exact.any() and (low.float() == exact).float().mean() > 0.98  # bf16 rounds currents
    low.float().sum().backward()
    assert conv.weight.grad is not None and torch.isfinite(conv.weight.grad).all()


@pytest.mark.parametrize("kind", ALL_KINDS)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_to_dtype(kind: str, dtype: torch.dtype) -> None:
    neuron = KINDS[kind]().to(dtype)
    neuron.backend = BACKEND
    assert all(p.dtype == dtype for p in neuron.parameters())
    x = random_input((8, 64), seed=6, dtype=dtype).requires_grad_(True)
    out = neuron(x)
    assert out.dtype == dtype and all(t.dtype == dtype for t in neuron.state)
    out.sum().backward()
    assert x.grad.dtype == dtype and torch.isfinite(x.grad).all()
    # low precision still agrees with the float64 reference on almost every spike
    assert spike_agreement(neuron, x.detach()) >= (0.999 if dtype == torch.float64 else 0.97)


def test_repr_shows_parameters() -> None:
    text = repr(ilif.ILIF(tau=1.1, surrogate=surrogate.Triangle(width=0.5), ciu_gain=0.05,
                          mpiu_gain=0.9, ciu=False, detach_inhibition=True))
    for part in ("ILIF(", "tau=1.1", "v_threshold=1.0", "surrogate=Triangle(width=0.5)",
                 "step_mode='m'", "detach_reset=False", "ciu_gain=0.05", "mpiu_gain=0.9",
                 "mpiu=True", "ciu=False", "detach_inhibition=True"):
        assert part in text, (part, text)
    assert "tau_adapt=3.0" in repr(ilif.ALIF(tau_adapt=3.0)) and "beta=1.0" in repr(ilif.ALIF())
    for cls in (ilif.LIF, ilif.CLIF, ilif.PLIF):
        assert "tau=4.0" in repr(cls(tau=4.0)) and "Rectangle(width=1)" in repr(cls())


@pytest.mark.parametrize(("cls", "equations"), [
    (ilif.LIF, ["H_t = λ·v_{t−1} + x_t", "S_t = Θ(H_t − θ)", "v_t = H_t − S_t·θ"]),
    (ilif.ILIF, ["I_t = k·(I_{t−1} + x_{t−1}·S_{t−1})", "H_t = λ·v_{t−1} + x_t − max(I_t, 0)",
                 "U_t = H_t − S_t·θ", "M_t = κ·(M_{t−1} + S_t·U_t)", "v_t = U_t − S_t·σ(M_t)"]),
    (ilif.CLIF, ["C'_t = C_{t−1}·σ(H_t/τ)", "C_t = C'_t + S_t", "v_t = H_t − S_t·θ − S_t·σ(C_t)"]),
    (ilif.PLIF, ["1/τ = σ(w)", "H_t = λ·v_{t−1} + x_t"]),
    (ilif.ALIF, ["a_t = ρ·a_{t−1} + (1 − ρ)·S_{t−1}", "θ_t = θ₀ + β·a_t", "S_t = Θ(H_t − θ_t)"]),
])
def test_docstrings_carry_the_equations(cls, equations: list[str]) -> None:
    for equation in equations:
        assert equation in cls.__doc__, equation
