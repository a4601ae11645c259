"""The fused CPU kernels against the eager reference loop (``backend="torch"``).

Every case runs the same input through both engines and asserts identical spikes, gradients within
1e-5 relative (float32), equal final states and, with a stats callback, equal statistics.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import torch

from ilif import kernels
from ilif.kernels import cpu
from ilif.neurons import ALIF, CLIF, ILIF, LIF, PLIF

pytest.importorskip("numba")

ROOT = Path(__file__).resolve().parents[1]

NEURON_CASES = {
    "lif": (LIF, {}),
    "lif-detach": (LIF, {"detach_reset": True, "tau": 1.1}),
    "ilif": (ILIF, {}),
    "ilif-tau1.1": (ILIF, {"tau": 1.1}),
    "ilif-mpiu": (ILIF, {"ciu": False}),
    "ilif-ciu": (ILIF, {"mpiu": False}),
    "ilif-off": (ILIF, {"ciu": False, "mpiu": False}),
    "ilif-detach-reset": (ILIF, {"detach_reset": True}),
    "ilif-detach-inh": (ILIF, {"detach_inhibition": True}),
    "ilif-gains": (ILIF, {"ciu_gain": 0.4, "mpiu_gain": 0.6, "v_threshold": 0.8}),
    "clif": (CLIF, {}),
    "clif-detach": (CLIF, {"detach_reset": True, "tau": 3.0}),
}
SURROGATE_WIDTHS = [("rectangle", 1.0), ("triangle", 0.6), ("sigmoid", 1.7), ("atan", 0.8)]


def _input(shape, seed: int, dtype=torch.float32) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(shape, generator=gen, dtype=torch.float64) * 1.5 + 0.4).to(dtype)


def _run(neuron, x: torch.Tensor, grad_out: torch.Tensor, *extra: torch.Tensor):
    """Spikes, final state and the gradients of <spikes, grad_out> w.r.t. x and ``extra``."""
    x = x.detach().requires_grad_()
    spikes = neuron(x)
    grads = torch.autograd.grad((spikes * grad_out).sum(), (x, *extra), allow_unused=True)
    return spikes.detach(), neuron.state, grads


def _assert_grads_close(got: torch.Tensor, want: torch.Tensor, rtol: float = 1e-5) -> None:
    """Gradients within ``rtol`` of the reference, relative to its largest magnitude (elements
    near zero carry cancellation error of that absolute size)."""
    scale = want.abs().max().clamp(min=1e-12)
    torch.testing.assert_close(got, want, rtol=rtol, atol=rtol * scale.item())


def _pair(name: str, surrogate: str, width: float, **kw):
    cls, preset = NEURON_CASES[name]
    args = {**preset, "surrogate": surrogate, "width": width, **kw}
    return cls(backend="torch", **args), cls(backend="cpu", **args)


@pytest.mark.parametrize("steps", [1, 2, 6, 16])
@pytest.mark.parametrize("surrogate,width", SURROGATE_WIDTHS)
@pytest.mark.parametrize("name", list(NEURON_CASES))
def test_fused_matches_eager(name: str, surrogate: str, width: float, steps: int) -> None:
    # 3·5·277 = 4155 neurons per step: full chunks (512 neurons) and an odd
    # remainder
    x = _input((steps, 3, 5, 277), seed=steps * 7 + len(name))
    grad_out = _input(x.shape, seed=99)
    ref, fused = _pair(name, surrogate, width)
    s_ref, st_ref, (g_ref,) = _run(ref, x, grad_out)
    s_fused, st_fused, (g_fused,) = _run(fused, x, grad_out)
    assert s_fused.dtype == x.dtype and s_fused.shape == x.shape
    assert 0.02 < s_ref.mean().item() < 0.9  # a meaningful spike rate
    assert torch.equal(s_fused, s_ref)
    _assert_grads_close(g_fused, g_ref)
    assert type(st_fused) is type(st_ref)
    for a, b in zip(st_fused, st_ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["ilif", "ilif-detach-inh", "clif", "lif"])
def test_float64(name: str) -> None:
    x = _input((6, 4, 1100), seed=5, dtype=torch.float64)  # full chunks and a remainder
    grad_out = _input(x.shape, seed=6, dtype=torch.float64)
    ref, fused = _pair(name, "sigmoid", 1.3)
    s_ref, _, (g_ref,) = _run(ref, x, grad_out)
    s_fused, _, (g_fused,) = _run(fused, x, grad_out)
    assert s_fused.dtype == torch.float64
    assert torch.equal(s_fused, s_ref)
    _assert_grads_close(g_fused, g_ref, rtol=1e-11)


@pytest.mark.parametrize("name", ["ilif", "clif"])
def test_long_sequence_with_smaller_backward_chunks(name: str) -> None:
    """For long T the backward cuts the neurons into smaller chunks (its recomputed rows must
    stay in cache); results are unchanged."""
    steps = 160  # > 128: the chunk shrinks
    ops = cpu._ops()
    assert ops.chunk_len(steps, backward=True) < ops.chunk_len(6, backward=True)
    x = _input((steps, 3000), seed=17)
    grad_out = _input(x.shape, seed=18)
    ref, fused = _pair(name, "rectangle", 1.0)
    s_ref, _, (g_ref,) = _run(ref, x, grad_out)
    s_fused, _, (g_fused,) = _run(fused, x, grad_out)
    assert torch.equal(s_fused, s_ref)
    _assert_grads_close(g_fused, g_ref)


def test_non_contiguous_input() -> None:
    base = _input((6, 71, 3, 5), seed=3)
    x = base.permute(0, 2, 3, 1)  # [6, 3, 5, 71], non-contiguous
    assert not x.is_contiguous()
    grad_out = _input(x.shape, seed=4)
    ref, fused = _pair("ilif", "triangle", 0.9)
    xr = x.detach().requires_grad_()
    xf = x.detach().requires_grad_()
    s_ref, s_fused = ref(xr), fused(xf)
    assert torch.equal(s_fused, s_ref)
    (g_ref,) = torch.autograd.grad((s_ref * grad_out).sum(), xr)
    (g_fused,) = torch.autograd.grad((s_fused * grad_out).sum(), xf)
    _assert_grads_close(g_fused, g_ref)


@pytest.mark.parametrize("name", ["ilif", "ilif-gains", "clif", "lif"])
def test_chained_calls_from_non_zero_state(name: str) -> None:
    """A second call starts from the first call's (non-zero) state; gradients flow through it
    back to the first input, as in the eager loop."""
    x1 = _input((4, 2, 300), seed=11).requires_grad_()
    x2 = _input((6, 2, 300), seed=12).requires_grad_()
    g1, g2 = _input(x1.shape, seed=13), _input(x2.shape, seed=14)
    results = []
    for neuron in _pair(name, "atan", 1.1):
        s1 = neuron(x1)
        assert any(bool(t.detach().abs().sum() > 0) for t in neuron.state)
        s2 = neuron(x2)
        loss = (s1 * g1).sum() + (s2 * g2).sum()
        results.append((s1, s2, torch.autograd.grad(loss, (x1, x2))))
    (r1, r2, (rg1, rg2)), (f1, f2, (fg1, fg2)) = results
    assert torch.equal(f1, r1) and torch.equal(f2, r2)
    _assert_grads_close(fg1, rg1)
    _assert_grads_close(fg2, rg2)


def test_initial_state_gradient() -> None:
    """dL/d(initial state) for a user-given state that requires grad."""
    x = _input((6, 700), seed=21)
    grad_out = _input(x.shape, seed=22)
    ref, fused = _pair("ilif", "sigmoid", 1.0)
    grads = []
    for neuron in (ref, fused):
        init = [_input((700,), seed=30 + i).abs().mul(0.3).requires_grad_() for i in range(4)]
        neuron.state = neuron.state_type(*init)
        _, _, (gx, *g_state) = _run(neuron, x, grad_out, *init)
        grads.append((gx, g_state))
    (rgx, rgs), (fgx, fgs) = grads
    _assert_grads_close(fgx, rgx)
    for a, b in zip(fgs, rgs, strict=True):
        _assert_grads_close(a, b)


@pytest.mark.parametrize("name", ["ilif", "clif"])
def test_zero_initial_state_gradient(name: str) -> None:
    """A user-given all-zero state that requires grad: the kernels read the zero state as an
    empty array, and dL/d(initial state) still matches the eager loop."""
    x = _input((5, 600), seed=23)
    grad_out = _input(x.shape, seed=24)
    ref, fused = _pair(name, "triangle", 0.7)
    grads = []
    for neuron in (ref, fused):
        init = [torch.zeros(600, requires_grad=True) for _ in neuron.state_type._fields]
        neuron.state = neuron.state_type(*init)
        spikes, _, (gx, *g_state) = _run(neuron, x, grad_out, *init)
        grads.append((spikes, gx, g_state))
    (rs, rgx, rgs), (fs, fgx, fgs) = grads
    assert torch.equal(fs, rs)
    _assert_grads_close(fgx, rgx)
    assert any(bool(g.abs().sum() > 0) for g in rgs)
    for a, b in zip(fgs, rgs, strict=True):
        _assert_grads_close(a, b)


@pytest.mark.parametrize("surrogate,width", SURROGATE_WIDTHS)
@pytest.mark.parametrize("name", ["ilif", "clif", "lif"])
def test_statistics_match_eager(name: str, surrogate: str, width: float) -> None:
    """With a stats callback (the forward's counting variant) the counts, Σ g(h), the spikes and
    the gradient all agree with the eager loop."""
    x = _input((6, 3, 401), seed=41)
    grad_out = _input(x.shape, seed=42)
    stats, grads = {}, {}
    for key, neuron in zip(("ref", "fused"), _pair(name, surrogate, width), strict=True):
        neuron.stats_callback = lambda n, s, spk, key=key: stats.__setitem__(key, (s, spk))
        _, _, (grads[key],) = _run(neuron, x, grad_out)
    (ref, ref_spk), (fused, fused_spk) = stats["ref"], stats["fused"]
    assert torch.equal(fused_spk, ref_spk)
    _assert_grads_close(grads["fused"], grads["ref"])
    assert fused.neurons == ref.neurons == 3 * 401
    assert torch.equal(fused.spikes, ref.spikes)
    assert torch.equal(fused.open, ref.open)
    assert ref.open.sum() > 0
    torch.testing.assert_close(fused.surrogate_sum, ref.surrogate_sum, rtol=1e-5, atol=1e-6)
    if surrogate == "rectangle":  # g is 1/γ or 0: the fused open count · (1/γ) is the sum exactly
        assert torch.equal(fused.surrogate_sum, ref.surrogate_sum)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sigma_packing_round_trip(dtype) -> None:
    """σ ∈ (0, 1] packed with the spike (sign bit) and the clamp's slope (the exponent's top bit)
    comes back bit for bit, with both flags, for every flag pair, from the smallest σ the
    kernels can produce (about e^-87 in float32, e^-700 in float64) up to 1."""
    from numba import njit

    from ilif.kernels.numba_ops.fastmath import pack_sigma, unpack_sigma

    @njit(error_model="numpy")
    def round_trip(sg, b, out, spiked, sloped):
        for j in range(sg.shape[0]):
            out[j], spiked[j], sloped[j] = unpack_sigma(pack_sigma(sg[j], b[j]))

    tiny = np.exp(-87.0) if dtype == np.float32 else np.exp(-700.0)
    values = np.array([tiny, 1e-30, 1e-7, 0.25, 0.5, 0.7310586, 1 - 1e-7, 1.0], dtype)
    sg = np.repeat(values, 4)
    b = np.tile(np.arange(4, dtype=np.uint8), len(values))
    out = np.empty_like(sg)
    spiked, sloped = np.empty(len(sg), np.bool_), np.empty(len(sg), np.bool_)
    round_trip(sg, b, out, spiked, sloped)
    assert np.array_equal(out.view(np.uint8), sg.view(np.uint8))
    assert np.array_equal(spiked, (b & 1) != 0) and np.array_equal(sloped, (b & 2) != 0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_stream_rows_copy_every_alignment(dtype) -> None:
    """The streaming-store copy of the final state writes exactly the source, for rows that start
    anywhere in a 64-byte line and end anywhere (head, whole lines, tail), and nothing else."""
    from ilif.kernels.numba_ops.rows import stream_rows

    rng = np.random.default_rng(3)
    lanes = 64 // np.dtype(dtype).itemsize
    block = np.zeros(4096 // np.dtype(dtype).itemsize, dtype)  # numpy's data: 16-byte aligned
    start = (-(block.ctypes.data % 64) % 64) // block.itemsize  # first 64-byte aligned element
    for offset in range(lanes):
        for n in (0, 1, lanes - 1, lanes, lanes + 1, 3 * lanes + 5, 8 * lanes):
            block[:] = -1
            lo = start + offset
            src = rng.standard_normal((2, n)).astype(dtype)
            dst = block[lo:lo + 2 * n].reshape(2, n)
            stream_rows(dst, src)
            assert np.array_equal(dst, src), (offset, n)
            assert (block[:lo] == -1).all() and (block[lo + 2 * n:] == -1).all(), (offset, n)


def test_width_is_a_runtime_argument() -> None:
    """A γ sweep, or another surrogate, compiles nothing new."""
    x = _input((2, 64), seed=1).requires_grad_()  # one chunk: the drivers run in this thread
    torch.autograd.grad(LIF(backend="cpu", surrogate="atan", width=0.3)(x).sum(), x)
    drivers = cpu._ops().drivers
    before = (len(drivers.ilif_forward.signatures), len(drivers.ilif_backward.signatures))
    for surrogate, _ in SURROGATE_WIDTHS:
        for width in (0.25, 0.5, 2.0):
            neuron = ILIF(backend="cpu", surrogate=surrogate, width=width)
            torch.autograd.grad(neuron(x).sum(), x)
    assert (len(drivers.ilif_forward.signatures),
            len(drivers.ilif_backward.signatures)) == before


def test_threads_agree() -> None:
    """Large enough for the chunks to be split over two threads: same results as one."""
    x = _input((3, 5 * cpu._ops().CHUNK + 37), seed=8)
    grad_out = _input(x.shape, seed=9)
    threads = torch.get_num_threads()
    out = []
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            out.append(_run(ILIF(backend="cpu", surrogate="sigmoid"), x, grad_out))
    finally:
        torch.set_num_threads(threads)
    (s1, _, (g1,)), (s2, _, (g2,)) = out
    assert torch.equal(s1, s2) and torch.equal(g1, g2)


@pytest.mark.parametrize("n_chunks", [1, 2, 7, 64, 129])
@pytest.mark.parametrize("threads", [2, 3])
def test_run_chunks_covers_each_chunk_once(n_chunks: int, threads: int) -> None:
    calls: list[tuple[int, int]] = []
    lock = threading.Lock()

    def kernel(tag, c0, c1):
        assert tag == "args" and 0 <= c0 < c1 <= n_chunks
        with lock:
            calls.append((c0, c1))

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(threads)
        cpu._run_chunks(kernel, n_chunks, "args")
    finally:
        torch.set_num_threads(before)
    covered = sorted(c for c0, c1 in calls for c in range(c0, c1))
    assert covered == list(range(n_chunks))
    if n_chunks == 64:  # guided blocks: far fewer calls than chunks, the last ones small
        assert len(calls) < 32 and min(c1 - c0 for c0, c1 in calls) == 1


def _with_threads(n: int, fn):
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(n)
        return fn()
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("name,dtype", [("ilif", torch.float32), ("clif", torch.float32),
                                        ("lif", torch.float32), ("ilif", torch.float64)])
def test_torch_openmp_launch_matches_eager(name: str, dtype: torch.dtype, monkeypatch) -> None:
    """On torch's OpenMP threads (where torch has GNU OpenMP) and on the kernel's own threads:
    the same spikes, final state, dL/dx and dL/d(initial state) as the eager loop, over many
    chunks (a chunk run twice would add its dL/d(initial state) twice)."""
    from ilif.kernels import _omp

    if _omp.runtime() is None:
        pytest.skip("torch has no GNU-compatible OpenMP runtime here")
    n = 9 * cpu._ops().CHUNK + 123
    x = _input((4, n), seed=51, dtype=dtype)
    grad_out = _input(x.shape, seed=52, dtype=dtype)
    ref, _ = _pair(name, "sigmoid", 1.0)

    def run(neuron):
        init = [_input((n,), seed=60 + i, dtype=dtype).abs().mul(0.3).requires_grad_()
                for i in range(len(neuron.state_type._fields))]
        neuron.state = neuron.state_type(*init)
        return _run(neuron, x, grad_out, *init)

    want = run(ref)
    for use_openmp in (True, False):
        monkeypatch.setattr(cpu, "USE_TORCH_OPENMP", use_openmp)
        fused = _pair(name, "sigmoid", 1.0)[1]
        with mock.patch.object(_omp, "run", wraps=_omp.run) as spy:
            spikes, final, (gx, *g_state) = _with_threads(2, lambda fused=fused: run(fused))
        assert spy.call_count == (2 if use_openmp else 0)  # forward and backward
        assert torch.equal(spikes, want[0])
        for a, b in zip(final, want[1], strict=True):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
        _assert_grads_close(gx, want[2][0])
        for a, b in zip(g_state, want[2][1:], strict=True):
            _assert_grads_close(a, b)


def test_openmp_blocks_cover_each_chunk_once() -> None:
    """The guided schedule of the OpenMP launch: consecutive blocks, each a share of what is
    left, at least one chunk, until every chunk is taken."""
    from numba import njit

    from ilif.kernels.numba_ops import layout as ops
    from ilif.kernels.numba_ops.omp import next_block

    @njit
    def take_all(meta):
        out = []
        while True:
            c0, c1 = next_block(meta)
            if c0 >= c1:
                return out
            out.append((c0, c1))

    for n_chunks, n_threads in ((1, 2), (7, 2), (128, 2), (129, 3)):
        meta = np.zeros(ops.HEADER, np.int64)
        meta[ops.N_CHUNKS], meta[ops.N_THREADS] = n_chunks, n_threads
        blocks = take_all(meta)
        assert [c for c0, c1 in blocks for c in range(c0, c1)] == list(range(n_chunks))
        first = blocks[0][1] - blocks[0][0]
        assert first == max(1, n_chunks // (2 * n_threads)) and blocks[-1][1] - blocks[-1][0] >= 1


def test_buffer_cache_reuses_freed_blocks() -> None:
    cache = cpu.BufferCache(max_free_bytes=3 << 20, min_bytes=1 << 20)
    a = cache.empty((2, 1 << 18), torch.float32)  # 2 MiB
    assert a.shape == (2, 1 << 18) and a.dtype == torch.float32 and a.is_contiguous()
    assert a.data_ptr() % cpu.BufferCache.ALIGN == 0
    ptr = a.data_ptr()
    view = a[1]
    del a
    assert cache.free_bytes == 0  # a view still holds the block
    del view
    assert cache.free_bytes == 2 << 20
    b = cache.empty((1 << 19,), torch.float32)  # the same byte count: the same block
    assert b.data_ptr() == ptr and cache.free_bytes == 0
    c = cache.empty((1 << 21,), torch.uint8)  # 2 MiB more; both freed exceed the cap
    del b, c
    assert cache.free_bytes == 2 << 20
    small = cache.empty((10,), torch.float64)  # under min_bytes: a plain tensor
    assert small.shape == (10,) and cache.free_bytes == 2 << 20
    cache.clear()
    assert cache.free_bytes == 0


def test_fused_outputs_come_from_the_cache() -> None:
    """The spikes of one call reuse the block of a previous call's freed spikes, and the result
    is unaffected."""
    x = _input((6, 3, 50_000), seed=21)
    neuron = ILIF(backend="cpu")
    with torch.no_grad():
        first = neuron(x)
        ptr, want = first.data_ptr(), first.clone()
        del first
        neuron.reset()
        again = neuron(x)
    assert again.data_ptr() == ptr and torch.equal(again, want)


def _saved_bytes_per_step(neuron, x: torch.Tensor) -> float:
    """Bytes autograd keeps for backward during ``neuron(x)`` (each storage once, without x's
    own), per element of x."""
    saved: dict[int, int] = {}
    x_ptr = x.untyped_storage().data_ptr()

    def pack(t):
        storage = t.untyped_storage()
        if storage.data_ptr() != x_ptr:
            saved[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        neuron(x)
    return sum(saved.values()) / x.numel()


def test_saved_state_is_compact() -> None:
    """ILIF float32 keeps 4 bytes per neuron-step for backward besides the input (target 9,
    goal 5): σ(M) with the spike and the clamp's slope packed into it, in the buffer that
    becomes dL/dx; the initial state only when it is not zero. LIF and ILIF without the MPIU
    keep the uint8 spikes only; CLIF σ(C) with the spike packed in (in the dL/dx buffer)."""
    x = _input((6, 4, 500), seed=2).requires_grad_()
    neuron = ILIF(backend="cpu")
    assert _saved_bytes_per_step(neuron, x) == 4.0  # zero initial state
    # continuing from the non-zero state adds 4 states · 4 B once, i.e. 16/6 B per step
    assert _saved_bytes_per_step(neuron, x) == pytest.approx(4.0 + 16 / 6)
    assert _saved_bytes_per_step(ILIF(backend="cpu", mpiu=False), x) == 1.0
    assert _saved_bytes_per_step(LIF(backend="cpu"), x) == 1.0
    assert _saved_bytes_per_step(CLIF(backend="cpu"), x) == 4.0
    assert _saved_bytes_per_step(ILIF(backend="torch"), x) > 9  # the eager loop keeps more


@pytest.mark.parametrize("continued", [False, True])
@pytest.mark.parametrize("name", ["ilif", "ilif-detach-inh", "ilif-ciu", "clif", "lif"])
def test_second_backward_with_retained_graph(name: str, continued: bool) -> None:
    """The first backward turns the buffer holding σ(M) (CLIF: σ(C)) and the spikes into dL/dx;
    a second backward through the retained graph runs the forward again (even after another
    forward ran in between, and from a non-zero initial state when ``continued``) and gives the
    same gradient, without touching the first one."""
    x = _input((6, 3, 500), seed=15).requires_grad_()
    grad_out = _input(x.shape, seed=16)
    ref, fused = _pair(name, "sigmoid", 1.2)
    if continued:  # the second call starts from the state the first one left
        warm = _input(x.shape, seed=18)
        ref(warm)
        fused(warm)
    (g_ref,) = torch.autograd.grad((ref(x) * grad_out).sum(), x)
    loss = (fused(x) * grad_out).sum()
    (g_first,) = torch.autograd.grad(loss, x, retain_graph=True)
    first = g_first.clone()
    other = _pair(name, "sigmoid", 1.2)[1]
    other(_input(x.shape, seed=19).requires_grad_())
    (g_second,) = torch.autograd.grad(loss, x)
    _assert_grads_close(g_first, g_ref)
    torch.testing.assert_close(g_second, g_first, rtol=1e-6, atol=1e-7)
    assert torch.equal(g_first, first)  # the second backward wrote into a buffer of its own


@pytest.mark.parametrize("name", ["ilif", "lif", "clif"])
def test_eager_path_equals_the_operator(name: str, monkeypatch) -> None:
    """An eager call skips the operators' dispatch (``_EagerFused``); it gives what the
    operators and their autograd formula give, bit for bit: spikes, final state, dL/dx and
    dL/d(initial state)."""
    cls, preset = NEURON_CASES[name]
    form = cls(backend="cpu", **preset).fused_form()
    x = _input((6, 2100), seed=31)
    state = [_input((2100,), seed=40 + k) * 0.3 for k in range(form.state_size)]
    grad_out = _input(x.shape, seed=32)

    def run():
        xs = x.clone().requires_grad_()
        st = [s.clone().requires_grad_() for s in state]
        spikes, final, _ = cpu.run_checked(form, xs, st, False, False)
        loss = (spikes * grad_out).sum() + sum((f * (k + 1)).sum() for k, f in enumerate(final))
        return spikes, final, torch.autograd.grad(loss, (xs, *st))

    calls = []
    forward = cpu._EagerFused.forward

    def spy(ctx, *args):
        calls.append(1)
        return forward(ctx, *args)

    monkeypatch.setattr(cpu._EagerFused, "forward", staticmethod(spy))
    eager = run()
    assert calls  # the eager path ran
    monkeypatch.setattr(cpu, "_traced", lambda *t: True)
    calls.clear()
    traced = run()
    assert not calls  # the operators ran
    for a, b in zip(eager[0:1] + tuple(eager[1]) + tuple(eager[2]),
                    traced[0:1] + tuple(traced[1]) + tuple(traced[2]), strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("name,in_place", [("ilif", True), ("ilif-mpiu", True), ("lif", False),
                                           ("ilif-ciu", False), ("clif", False)])
def test_ilif_backward_writes_dl_dx_over_sigma(name: str, in_place: bool) -> None:
    """An eager ILIF backward (σ(M) kept, float32) returns dL/dx in the very buffer that held
    σ(M); the others (LIF, ILIF without the MPIU: uint8 spikes; CLIF) in a buffer of their own.
    Three backwards through a retained graph give the eager loop's gradient each time."""
    cls, preset = NEURON_CASES[name]
    x = _input((6, 3, 700), seed=21).requires_grad_()
    grad_out = _input(x.shape, seed=22)
    saved = []

    def pack(t):
        saved.append(t)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = (cls(backend="cpu", **preset)(x) * grad_out).sum()
    (g_ref,) = torch.autograd.grad((cls(backend="torch", **preset)(x) * grad_out).sum(), x)
    # each backward returns a buffer of its own: the later ones rebuild σ(M) in a new one
    grads = [torch.autograd.grad(loss, x, retain_graph=True)[0] for _ in range(3)]
    kept = {t.data_ptr() for t in saved if t.dtype == torch.float32 and t is not x}
    assert (grads[0].data_ptr() in kept) == in_place
    for g in grads:
        _assert_grads_close(g, g_ref)
    assert torch.equal(grads[1], grads[0]) and torch.equal(grads[2], grads[0])


@pytest.mark.parametrize("name", ["ilif", "ilif-mpiu"])
def test_bfloat16_backward_writes_dl_dx_over_the_sigma_code(name: str, monkeypatch) -> None:
    """bfloat16 ILIF (σ(M) kept as its int16 code): the eager backward returns the bfloat16
    dL/dx in the code's own storage, bit for bit the gradient of a backward into a buffer of
    its own (``BACKWARD_IN_PLACE = False``) and of the operators; a second and third backward
    through the retained graph give it again."""
    cls, preset = NEURON_CASES[name]
    x = _input((6, 3, 700), seed=25, dtype=torch.bfloat16).requires_grad_()
    grad_out = _input(x.shape, seed=26, dtype=torch.bfloat16)
    eager = cpu._traced

    def grads(in_place: bool, traced: bool = False, times: int = 1):
        monkeypatch.setattr(cpu, "BACKWARD_IN_PLACE", in_place)
        monkeypatch.setattr(cpu, "_traced", (lambda *t: True) if traced else eager)
        saved: list[torch.Tensor] = []

        def pack(t, saved=saved):
            saved.append(t)
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            spikes = cls(backend="cpu", **preset)(x)
        codes = [t for t in saved if t.dtype == torch.int16]
        out = [torch.autograd.grad(spikes, x, grad_out, retain_graph=True)[0]
               for _ in range(times)]
        return out, codes

    own, _ = grads(False)
    operator, _ = grads(False, traced=True)
    over, codes = grads(True, times=3)
    assert len(codes) == 1 and over[0].dtype == torch.bfloat16
    assert over[0].untyped_storage().data_ptr() == codes[0].untyped_storage().data_ptr()
    assert own[0].untyped_storage().data_ptr() != codes[0].untyped_storage().data_ptr()
    assert torch.equal(own[0], operator[0]) and own[0].abs().sum() > 0
    for g in over:
        assert torch.equal(g, own[0])


def test_backward_in_place_switch(monkeypatch) -> None:
    """``BACKWARD_IN_PLACE = False`` gives ILIF's eager backward a buffer of its own, with the
    same gradient bit for bit."""
    x = _input((6, 2, 900), seed=23).requires_grad_()
    grad_out = _input(x.shape, seed=24)
    grads = {}
    for flag in (True, False):
        monkeypatch.setattr(cpu, "BACKWARD_IN_PLACE", flag)
        saved: list[torch.Tensor] = []

        def pack(t, saved=saved):
            saved.append(t)
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            loss = (ILIF(backend="cpu")(x) * grad_out).sum()
        (grads[flag],) = torch.autograd.grad(loss, x)
        sigma = [t for t in saved if t.dtype == torch.float32 and t.shape == (6, 1800)
                 and t.data_ptr() != x.data_ptr()]
        assert len(sigma) == 1
        assert (grads[flag].data_ptr() == sigma[0].data_ptr()) == flag
    assert torch.equal(grads[True], grads[False])


def test_prefetch_row_is_a_read_prefetch_into_l2() -> None:
    """``prefetch_row`` compiles to LLVM read prefetches into L2 (``llvm.prefetch`` with rw 0,
    locality 2, data cache), and the prefetched row is left as it was."""
    from numba import njit

    from ilif.kernels.numba_ops.rows import prefetch_row

    @njit
    def ask(a):
        prefetch_row(a)

    a = np.arange(512, dtype=np.float32)
    ask(a)
    assert np.array_equal(a, np.arange(512, dtype=np.float32))
    ir = ask.inspect_llvm(ask.signatures[0])
    calls = [line for line in ir.splitlines() if "call void @llvm.prefetch" in line]
    assert calls and all(line.rstrip().endswith("i32 0, i32 2, i32 1)") for line in calls)


@pytest.mark.parametrize("name", ["ilif", "ilif-ciu", "lif", "clif"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_prefetching_changes_no_result(name: str, dtype: torch.dtype, monkeypatch) -> None:
    """With and without the backward's software prefetches (``cpu.PREFETCH``): the same spikes,
    final state and gradients bit for bit, on 2 threads over blocks of several chunks (the
    prefetches of a next chunk run), a last chunk cut short, from a non-zero initial state."""
    n = 11 * cpu._ops().CHUNK + 77
    x = _input((5, n), seed=71, dtype=dtype)
    grad_out = _input(x.shape, seed=72, dtype=dtype)
    results = {}
    for flag in (True, False):
        monkeypatch.setattr(cpu, "PREFETCH", flag)
        cls, kw = NEURON_CASES[name]
        neuron = cls(backend="cpu", **kw)
        init = [_input((n,), seed=80 + i).abs().mul(0.3).requires_grad_()
                for i in range(len(neuron.state_type._fields))]
        neuron.state = neuron.state_type(*init)
        results[flag] = _with_threads(2, lambda neuron=neuron, init=init: _run(
            neuron, x, grad_out, *init))
    (s1, f1, g1), (s0, f0, g0) = results[True], results[False]
    assert torch.equal(s1, s0) and s1.dtype == dtype
    assert all(torch.equal(a, b) for a, b in zip(f1, f0, strict=True))
    assert all(torch.equal(a, b) for a, b in zip(g1, g0, strict=True))
    assert g1[0].abs().sum() > 0  # a gradient flowed


def test_backward_in_place_benchmark_runs(tmp_path: Path) -> None:
    out = tmp_path / "in_place.json"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "backward_in_place.py"), "--parts", "neuron",
           "--rounds", "1", "--calls", "1", "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(out.read_text())
    medians = report["neuron"]["median_ms"]
    assert set(medians) == {"own buffer", "over sigma"}
    assert all(v > 0 for m in medians.values() for v in m.values())
    assert report["neuron"]["over_sigma_over_own_buffer"] > 0 and "step" not in report


def test_no_grad_forward() -> None:
    x = _input((6, 900), seed=3)
    with torch.no_grad():
        spikes = ILIF(backend="cpu")(x)
    assert torch.equal(spikes, ILIF(backend="torch")(x))
    assert not spikes.requires_grad


# ------------------------------------------------------------------------------- dispatch
def _spy():
    return mock.patch.object(cpu, "run_checked", wraps=cpu.run_checked)


@pytest.mark.parametrize("cls", [LIF, ILIF, CLIF])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_auto_uses_fused_kernel_on_cpu(cls, dtype) -> None:
    with _spy() as spy:
        cls()(_input((2, 30), seed=1, dtype=dtype))
    assert spy.call_count == 1


@pytest.mark.parametrize(
    "make,x",
    [
        (lambda: PLIF(), _input((2, 30), seed=1)),
        (lambda: ALIF(), _input((2, 30), seed=1)),
    ],
    ids=["plif", "alif"],
)
def test_auto_falls_back_to_eager(make, x) -> None:
    neuron = make()
    with _spy() as spy:
        spikes = neuron(x)
    assert spy.call_count == 0
    ref = make()
    ref.backend = "torch"
    assert torch.equal(spikes, ref(x))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("name", ["ilif", "clif", "lif"])
def test_half_precision_input_runs_in_float32(name: str, dtype: torch.dtype) -> None:
    """bfloat16/float16 in: the kernel runs in float32 on the upcast input, so the spikes equal
    the eager loop's on ``x.float()``; spikes, final state and dL/dx come back in the input
    dtype, dL/dx the float32 gradient rounded to it."""
    x32 = _input((5, 3, 40), seed=61)
    x = x32.to(dtype).requires_grad_()
    ref, fused = _pair(name, "sigmoid", 1.0)
    grad_out = _input(x.shape, seed=62)
    spikes, state, (gx,) = _run(fused, x, grad_out.to(dtype))
    ref_spikes, ref_state, (ref_gx,) = _run(ref, x.detach().float(), grad_out.to(dtype).float())
    assert spikes.dtype == dtype and gx.dtype == dtype and state[0].dtype == dtype
    assert torch.equal(spikes.float(), ref_spikes)
    torch.testing.assert_close(gx, ref_gx.to(dtype), rtol=0, atol=0)
    for got, want in zip(state, ref_state, strict=True):
        torch.testing.assert_close(got, want.detach().to(dtype), rtol=0, atol=0)


def test_runs_under_cpu_autocast() -> None:
    """Under CPU autocast a conv hands the neuron bfloat16: the fused kernel runs (in float32)
    and the result equals the neuron on the same bfloat16 input outside autocast."""
    conv = torch.nn.Conv2d(2, 4, 3, padding=1)
    x = _input((3, 2, 2, 8, 8), seed=63)
    with _spy() as spy, torch.autocast("cpu", dtype=torch.bfloat16):
        current = conv(x.flatten(0, 1)).unflatten(0, (3, 2))
        spikes = ILIF()(current)
    assert spy.call_count == 1 and current.dtype == torch.bfloat16
    assert spikes.dtype == torch.bfloat16
    assert torch.equal(spikes, ILIF(backend="cpu")(current.detach()))


@pytest.mark.parametrize(
    "make,x,reason",
    [
        (lambda: PLIF(backend="cpu"), _input((2, 30), seed=1), "PLIF"),
        (lambda: ALIF(backend="cpu"), _input((2, 30), seed=1), "ALIF"),
        (lambda: LIF(backend="cpu"), _input((2, 30), seed=1).to(torch.float8_e5m2), "dtype"),
    ],
    ids=["plif", "alif", "float8"],
)
def test_explicit_cpu_backend_says_why_not(make, x, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        make()(x)


def test_explicit_triton_without_triton_says_how_to_install() -> None:
    with mock.patch.object(kernels, "triton_module", return_value=None):
        with pytest.raises(ImportError, match="triton"):
            LIF(backend="triton")(_input((2, 30), seed=1))
        # auto on CPU tensors never needs it
        assert LIF()(_input((2, 30), seed=1)).shape == (2, 30)


# ------------------------------------------------------------------------------- benchmark
def test_benchmark_quick_run_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "neurons.json"
    md = tmp_path / "neurons.md"
    cmd = [
        sys.executable, str(ROOT / "benchmarks" / "neurons.py"), "--quick", "--size", "4,2,64",
        "--repeats", "2", "--warmup", "1", "--settle", "1", "--threads", "1", "--out", str(out),
        "--markdown", str(md),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(out.read_text())
    assert {"command", "device", "threads", "baseline", "sizes", "torch"} <= set(report)
    assert report["settle"] == 1 and report["repeats"] == 2
    (size,) = report["sizes"]
    assert size["shape"] == [4, 2, 64]
    assert {"copy_bandwidth_GBps", "floor_fwd_ms", "floor_fwd_bwd_ms", "results",
            "stats_overhead"} <= set(size)
    rows = {(r["name"], r["backend"]): r for r in size["results"]}
    fused = rows[("ilif ILIF", "cpu")]
    assert {"fwd_ms", "fwd_bwd_ms", "vs_sj_fwd_bwd", "x_floor_fwd_bwd",
            "saved_bytes_per_neuron_step"} <= set(fused)
    assert fused["fwd_bwd_ms"] > 0 and fused["saved_bytes_per_neuron_step"] == 4.0
    assert rows[("ilif LIF", "cpu")]["saved_bytes_per_neuron_step"] == 1.0
    assert rows[("ilif ILIF", "torch")]["saved_bytes_per_neuron_step"] > 9
    assert "ilif ILIF" in md.read_text()


def test_kernel_profile_writes_json(tmp_path: Path) -> None:
    """The profiling script behind docs/performance.md runs and reports every variant."""
    out = tmp_path / "profile.json"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "kernel_profile.py"), "--only", "rows",
           "--only", "row_cost", "--only", "final_state", "--only", "prefetch", "--only",
           "backward", "--only", "sizes", "--only", "dispatch", "--rounds", "1", "--out",
           str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(out.read_text())
    rows = report["rows"]["ns_per_neuron"]
    assert len(rows) == 10 and all(v > 0 for v in rows.values())
    assert set(report["backward"]["ms"]) == {"ilif", "lif"}
    for times in report["backward"]["ms"].values():
        assert set(times) == {"forward", "backward"}
        assert all(v > 0 for v in times.values())
    cost = report["row_cost"]
    kinds = ("forward", "backward")
    assert set(cost["ms"]) == {f"{k}, chunk {c}" for k in kinds for c in (64, 512)}
    assert all(v > 0 for v in cost["ms"].values())
    assert {"forward_ns_per_row", "backward_ns_per_row"} <= set(cost)
    assert set(report["final_state"]["ms"]) == {"streaming stores", "plain stores"}
    prefetch = report["prefetch"]["ms"]
    assert set(prefetch) == {"ilif", "lif", "clif"}
    for times in prefetch.values():
        assert set(times) == {"backward, with prefetch", "backward, without", "ratio"}
        assert all(v > 0 for v in times.values())
    sizes = report["sizes"]["neurons_per_step"]
    assert [int(n) for n in sizes] == [8192, 32768, 131072, 524288, 2097152]
    touched = [row["MiB touched"] for row in sizes.values()]
    assert touched[3] == 5 * 6 * 524288 * 4 / 2**20  # x, spikes, σ, dL/dS, dL/dx at the main size
    assert touched == sorted(touched)
    assert all(row[f"{k} ns per neuron-step"] > 0 for row in sizes.values()
               for k in ("forward", "backward"))
    dispatch = report["dispatch"]["ms"]
    assert set(dispatch) == {"eager path", "operators"}
    assert all(v > 0 for way in dispatch.values() for v in way.values())
    assert "threads" not in report
