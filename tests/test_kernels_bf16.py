"""bfloat16 in the fused CPU kernels: the bit conversions against torch's, the native kernels
against a float64 reference on the same (upcast) input, and a model under CPU autocast.

Tolerances: the spikes agree with the float64 reference on ≥ 99.9 % of neuron-steps (float32
and float64 may decide a current within rounding of θ differently); dL/dx within relative L2
1e-2 of the float64 reference's rounded to bfloat16 (bfloat16 itself rounds to 2^-8 relative).
"""

from __future__ import annotations

import copy
from unittest import mock

import numpy as np
import pytest
import torch

from ilif.kernels import cpu
from ilif.models import create_model
from ilif.neurons import CLIF, ILIF, LIF, Neuron

pytest.importorskip("numba")

SPIKE_AGREEMENT = 0.999
GRAD_REL_L2 = 1e-2


def _bf16_ops():
    from ilif.kernels.numba_ops import bf16

    return bf16


def _special_floats() -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    random_bits = torch.randint(-(2**31), 2**31, (200_000,), generator=gen, dtype=torch.int64)
    halves = torch.randint(0, 2**16, (20_000,), generator=gen, dtype=torch.int64) << 16
    ties = (halves | 0x8000).to(torch.int32)  # exactly half-way: even and odd last bits
    near_ties = torch.cat([(halves | 0x7FFF), (halves | 0x8001)]).to(torch.int32)
    subnormal = torch.randint(1, 2**23, (20_000,), generator=gen, dtype=torch.int32)
    listed = torch.tensor([0.0, -0.0, float("inf"), -float("inf"), float("nan"), -float("nan"),
                           3.3895314e38, 3.4028235e38, -3.4028235e38, 1e-45, -1e-45, 1.0,
                           1.00390625, 1.0078125, 0.99999994])
    bits = torch.cat([random_bits.to(torch.int32), ties, near_ties, subnormal,
                      subnormal | (1 << 31), torch.tensor([0x7F800001, 0x7FC00000, -1],
                                                          dtype=torch.int32)])
    return torch.cat([bits.view(torch.float32), listed])


def test_narrowing_matches_torch_bit_for_bit() -> None:
    """float32 → bfloat16 (round to nearest, ties to even) equals torch's conversion bit for bit
    on random bit patterns, exact ties, their neighbours, subnormals, the largest finite values
    (which round to ±inf), ±inf and ±0; every NaN stays a NaN."""
    values = _special_floats()
    got = torch.from_numpy(_bf16_ops().to_bf16_bits(values.numpy()).view(np.int16))
    want = values.to(torch.bfloat16).view(torch.int16)
    nan = torch.isnan(values)
    assert nan.sum() > 100 and (values.abs() == float("inf")).any()
    assert torch.equal(got[~nan], want[~nan])
    assert torch.isnan(got.view(torch.bfloat16)[nan].float()).all()


def test_widening_every_bfloat16_exactly() -> None:
    """bfloat16 → float32 on all 65 536 bit patterns equals torch's (bit for bit)."""
    bits = torch.arange(2**16, dtype=torch.int32).to(torch.int16)
    got = torch.from_numpy(_bf16_ops().from_bf16_bits(bits.numpy().view(np.uint16)))
    want = bits.view(torch.bfloat16).float()
    assert torch.equal(got.view(torch.int32), want.view(torch.int32))


CASES = {
    "ilif": (ILIF, {"surrogate": "sigmoid", "width": 1.0}),
    "ilif-ciu": (ILIF, {"mpiu": False, "surrogate": "atan", "width": 0.8}),  # uint8 spikes kept
    "lif": (LIF, {"surrogate": "rectangle", "width": 1.0}),
    "clif": (CLIF, {"surrogate": "triangle", "width": 0.6}),
}


def _input(shape, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=gen, dtype=torch.float64) * 1.5 + 0.4


def _rel_l2(got: torch.Tensor, want: torch.Tensor) -> float:
    got, want = got.detach().double(), want.detach().double()
    return float((got - want).norm() / want.norm())


@pytest.mark.parametrize("name", list(CASES))
def test_native_bfloat16_against_float64(name: str) -> None:
    """bfloat16 in, from a non-zero state, two chained calls (2 053 neurons: whole chunks and a
    remainder): spikes, dL/dx, dL/d(initial state) and the final state against the float64 eager
    loop on the upcast input; the kernels get bfloat16 x and dL/dS, not a float32 copy."""
    cls, kw = CASES[name]
    x1 = _input((4, 2053), seed=1).to(torch.bfloat16)
    x2 = _input((3, 2053), seed=2).to(torch.bfloat16)
    g1 = _input(x1.shape, seed=3).to(torch.bfloat16)
    g2 = _input(x2.shape, seed=4).to(torch.bfloat16)
    results = []
    for backend, dtype in (("cpu", torch.bfloat16), ("torch", torch.float64)):
        neuron = cls(backend=backend, **kw)
        a = x1.to(dtype).requires_grad_()
        b = x2.to(dtype).requires_grad_()
        init = [(_input((2053,), seed=10 + i).abs() * 0.3).to(dtype).requires_grad_()
                for i in range(len(neuron.state_type._fields))]
        neuron.state = neuron.state_type(*init)
        with mock.patch.object(cpu, "_launch", wraps=cpu._launch) as launch:
            s1 = neuron(a)
            s2 = neuron(b)
            loss = (s1 * g1.to(dtype)).sum() + (s2 * g2.to(dtype)).sum()
            grads = torch.autograd.grad(loss, (a, b, *init), allow_unused=True)
        if backend == "cpu":
            assert launch.call_count == 4  # two forwards, two backwards
            for call in launch.call_args_list:
                kind, arrays = call.args[1], call.args[3:]
                assert arrays[0].dtype == torch.bfloat16  # x
                if kind == "backward":
                    assert arrays[3].dtype == torch.bfloat16  # dL/dS
                    assert arrays[6].dtype == torch.bfloat16  # dL/dx
        results.append((s1, s2, grads, neuron.state))
    (f1, f2, fgrads, fstate), (r1, r2, rgrads, rstate) = results
    assert f1.dtype == f2.dtype == torch.bfloat16
    agree = (torch.cat([f1.flatten(), f2.flatten()]).double()
             == torch.cat([r1.flatten(), r2.flatten()])).double().mean()
    assert agree >= SPIKE_AGREEMENT
    assert 0 < float(r1.detach().mean()) < 1
    for got, want in zip(fgrads[:2], rgrads[:2], strict=True):
        assert got.dtype == torch.bfloat16
        assert _rel_l2(got, want.to(torch.bfloat16)) <= GRAD_REL_L2
    assert any(g is not None for g in rgrads[2:])
    for got, want in zip(fgrads[2:], rgrads[2:], strict=True):
        if want is None:  # a state the neuron does not read (the MPIU's without the MPIU)
            assert got is None or float(got.abs().sum()) == 0
            continue
        assert got.dtype == torch.bfloat16 and float(want.abs().sum()) > 0
        assert _rel_l2(got, want) <= GRAD_REL_L2
    for got, want in zip(fstate, rstate, strict=True):  # returned in the input dtype
        assert got.dtype == torch.bfloat16
        assert _rel_l2(got, want.detach()) <= GRAD_REL_L2


@pytest.mark.parametrize("name", list(CASES))
def test_bfloat16_kernel_is_the_float32_kernel_on_the_widened_input(name: str) -> None:
    """The bfloat16 kernels compute in float32 on the widened values (exact), so their spikes,
    final state and dL/dx are the float32 kernel's on ``x.float()`` and ``grad.float()``, each
    rounded to bfloat16 once: bit for bit (the float32 ops are the same, in the same order).
    ILIF with the MPIU keeps σ(M) as the 16-bit code for its backward: its forward is still bit
    for bit, its dL/dx within one bfloat16 rounding step (relative L2 ≤ 2^-8)."""
    cls, kw = CASES[name]
    x = _input((5, 3 * 512 + 29), seed=7).to(torch.bfloat16)
    grad_out = _input(x.shape, seed=8).to(torch.bfloat16)
    outs = {}
    for dtype in (torch.bfloat16, torch.float32):
        neuron = cls(backend="cpu", **kw)
        xx = x.to(dtype).requires_grad_()
        spikes = neuron(xx)
        (gx,) = torch.autograd.grad(spikes, xx, grad_out.to(dtype))
        outs[dtype] = [spikes.detach(), *(s.detach() for s in neuron.state), gx]
    assert 0 < float(outs[torch.float32][0].mean()) < 1
    form = neuron.fused_form()
    sigma16 = form.flags[1] != 0 and cpu.sigma_dtype(form.family, torch.bfloat16) == torch.int16
    assert sigma16 == (name == "ilif")
    pairs = list(zip(outs[torch.bfloat16], outs[torch.float32], strict=True))
    for got, want in pairs[:-1] if sigma16 else pairs:
        assert got.dtype == torch.bfloat16
        assert torch.equal(got.view(torch.int16), want.to(torch.bfloat16).view(torch.int16))
    if sigma16:
        got, want = pairs[-1]
        assert got.dtype == torch.bfloat16 and float(want.abs().sum()) > 0
        assert _rel_l2(got, want) <= 2.0**-8


def test_sigma16_code_round_trip() -> None:
    """The 16-bit σ code: σ ∈ (0, 1] comes back within half a step (1/32766) of itself, and
    the spike and the slope bit exactly, for every flag combination; σ = 1 is kept exactly."""
    from numba import njit

    from ilif.kernels.numba_ops.fastmath import store_sigma, unpack_sigma

    @njit(error_model="numpy")
    def round_trip(sg, flags):
        codes = np.empty(sg.shape[0], np.int16)
        back = np.empty(sg.shape[0], np.float32)
        bits = np.empty(sg.shape[0], np.uint8)
        for j in range(sg.shape[0]):
            store_sigma(codes, j, sg[j], flags[j])
            value, spiked, sloped = unpack_sigma(codes[j])
            back[j] = value
            bits[j] = (1 if spiked else 0) | (2 if sloped else 0)
        return back, bits

    gen = np.random.default_rng(0)
    z = np.concatenate([gen.normal(0, 4, 20000), [-90.0, -20.0, 0.0, 20.0, 90.0]])
    sg = (1 / (1 + np.exp(-z))).astype(np.float32)
    sg = np.concatenate([sg, np.float32([1.0, 1e-30, 3e-5, 1 / 16383])])
    flags = gen.integers(0, 4, sg.shape[0]).astype(np.uint8)
    back, bits = round_trip(sg, flags)
    assert np.array_equal(bits, flags)
    assert np.abs(back.astype(np.float64) - sg).max() <= 0.5 / 16383 + 1e-7
    assert back[sg == 1.0].min() == 1.0 and back.min() >= 0


def test_bfloat16_ilif_keeps_two_bytes_of_sigma() -> None:
    """Under bfloat16 the fused ILIF keeps x (2 B) and the 16-bit σ code (2 B) per neuron-step
    for its backward; in float32 x and σ (4 B each)."""
    for dtype, want in ((torch.bfloat16, 4), (torch.float32, 8)):
        x = _input((4, 1000), seed=9).to(dtype).requires_grad_()
        sizes: dict[int, int] = {}

        def pack(t: torch.Tensor, sizes: dict[int, int] = sizes) -> torch.Tensor:
            sizes[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            ILIF(backend="cpu")(x)
        assert sum(sizes.values()) / x.numel() == want


@pytest.mark.parametrize("use_openmp", [True, False])
def test_bfloat16_on_two_threads(use_openmp: bool, monkeypatch) -> None:
    """Over many chunks on two threads (torch's OpenMP threads, or the kernel's own with numpy
    views of the bfloat16 bits): the same spikes and dL/dx as on one thread."""
    monkeypatch.setattr(cpu, "USE_TORCH_OPENMP", use_openmp)
    x = _input((3, 9 * 512 + 77), seed=5).to(torch.bfloat16)
    grad_out = _input(x.shape, seed=6).to(torch.bfloat16)
    before = torch.get_num_threads()
    outs = []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            xx = x.clone().requires_grad_()
            spikes = ILIF(backend="cpu")(xx)
            (gx,) = torch.autograd.grad((spikes * grad_out).sum(), xx)
            outs.append((spikes, gx))
    finally:
        torch.set_num_threads(before)
    assert torch.equal(outs[0][0], outs[1][0]) and torch.equal(outs[0][1], outs[1][1])
    assert outs[0][1].abs().sum() > 0


def test_model_under_cpu_autocast() -> None:
    """cifar-small (T = 2) under CPU bfloat16 autocast: every neuron gets bfloat16 and runs the
    fused kernel natively, forward and backward; each neuron's spikes agree with the float64
    eager loop on its (upcast) input, and the gradients are finite and non-zero."""
    torch.manual_seed(0)
    model = create_model("cifar-small", neuron="ilif", T=2)
    seen = []
    hooks = [module.register_forward_hook(lambda m, i, o: seen.append((m, i[0].detach(),
                                                                        o.detach())))
             for module in model.modules() if isinstance(module, Neuron)]
    x = torch.rand((2, 3, 16, 16), generator=torch.Generator().manual_seed(1)) * 2.0
    with mock.patch.object(cpu, "_launch", wraps=cpu._launch) as launch:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(x)
        out.float().square().mean().backward()
    for hook in hooks:
        hook.remove()
    kinds = [c.args[1] for c in launch.call_args_list]
    assert kinds.count("forward") == kinds.count("backward") == len(seen) > 0
    assert all(c.args[3].dtype == torch.bfloat16 for c in launch.call_args_list)
    for neuron, current, spikes in seen:
        assert current.dtype == spikes.dtype == torch.bfloat16
        neuron = copy.deepcopy(neuron)
        neuron.backend = "torch"
        neuron.reset()
        with torch.no_grad():
            want = neuron(current.double())
        assert (spikes.double() == want).double().mean() >= SPIKE_AGREEMENT
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(bool(torch.isfinite(g).all()) for g in grads)
    assert any(float(g.abs().sum()) > 0 for g in grads)
