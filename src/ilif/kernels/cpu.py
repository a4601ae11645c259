"""The fused multi-step CPU path: one numba pass forward, one BPTT pass backward, as PyTorch
operators (``torch.ops.ilif.fused_cpu_forward`` / ``fused_cpu_backward``, docs/performance.md).

The forward operator runs the whole time loop (:mod:`ilif.kernels.numba_ops.drivers`) and, when
a gradient will be needed, returns beside the spikes, the final state and the per-step statistics
what the backward needs per neuron-step: for ILIF with the MPIU and CLIF σ(M) resp. σ(C) with the
spike packed in (4 bytes in float32); for LIF and ILIF without the MPIU the spikes as uint8
(1 byte). Autograd keeps these and the input ``x`` (and the initial state, unless it is the zero
state of a fresh neuron). The backward operator rebuilds the other per-step values chunk by chunk
(cheap without the exponentials, and cache-resident) and runs BPTT backwards in time into a new
dL/dx buffer; what the forward kept is only read, so a second backward through a retained graph
gives the same result. Eager calls run the same implementations through :class:`_EagerFused`,
whose ILIF backward writes dL/dx over the kept σ(M) instead. Gradients flow to
the input, to the initial state and from the final state, exactly as through the eager loop, so
calls can be chained.

Both operators have fake implementations and an autograd formula (``torch.library``), so
``torch.compile`` and ``torch.export`` trace them as single nodes.

The kernels take a :class:`ilif.kernels.contract.FusedForm` and tensors only. Supported: the
families ``"ilif"`` (LIF, ILIF with every flag) and ``"clif"``; every surrogate, any width;
float32 and float64; bfloat16 natively (its bits read and written by the kernels, float32
inside, :mod:`ilif.kernels.numba_ops.bf16_drivers`); float16 runs in float32, cast at the
operator's boundary (also under CPU autocast).
"""

from __future__ import annotations

import functools
import importlib.util
import math
import threading
import weakref
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ilif.kernels.contract import FAMILY_STATE, FusedForm

__all__ = ["cpu_multi_step", "run_checked", "unsupported_reason", "BufferCache", "BUFFERS"]

_SUPPORTED_DTYPES = (torch.float32, torch.float64, torch.bfloat16)
# inputs run in float32: cast at the operator's boundary, spikes and dL/dx in the input dtype
_UPCAST_DTYPES = (torch.float16,)
_HAVE_NUMBA = importlib.util.find_spec("numba") is not None


def _ops():
    """The numba kernels (:mod:`ilif.kernels.numba_ops`), imported on first use; each variant
    compiles (or loads from the cache) when it first runs."""
    from ilif.kernels import numba_ops

    return numba_ops


def unsupported_reason(form: FusedForm, x_seq: Tensor, state: Sequence[Tensor]) -> str | None:
    """Why the fused CPU kernel cannot run ``form`` on this call, or None when it can."""
    if form.family not in FAMILY_STATE:  # pragma: no cover - FusedForm checks it
        return f"no fused CPU kernel for the family {form.family!r}"
    if x_seq.device.type != "cpu":
        return f"the input is on {x_seq.device}, the fused CPU kernel needs CPU tensors"
    if x_seq.dtype not in _SUPPORTED_DTYPES + _UPCAST_DTYPES:
        return (f"input dtype {x_seq.dtype} (the fused CPU kernel runs float32, float64, "
                "bfloat16 and float16)")
    if len(state) != form.state_size:
        return f"the state has {len(state)} rows, the fused form {form.state_size}"
    if any(t.dtype != x_seq.dtype or t.device != x_seq.device for t in state):
        return "the state's dtype or device differs from the input's"
    if not _HAVE_NUMBA:  # pragma: no cover - numba is a runtime dependency
        return "numba is not installed (pip install numba)"
    return None


@functools.lru_cache(maxsize=256)
def _config(family: str, flags: tuple[int, ...], params: tuple[float, ...],
            dtype: torch.dtype) -> tuple[np.ndarray, np.ndarray]:
    """The kernels' ``cfg`` (int64) and ``par`` (in the input dtype) arrays of a fused form
    (:mod:`ilif.kernels.numba_ops.layout`); callers copy ``cfg`` before changing it."""
    ops = _ops()
    ciu, mpiu, detach_reset, detach_inhibition, surrogate = flags
    decay, threshold, ciu_gain, mpiu_gain, tau, width = params
    cfg = np.zeros(ops.CFG_SIZE, np.int64)
    par = np.zeros(ops.PAR_SIZE, _NUMPY_DTYPES[dtype])
    cfg[ops.KIND] = ops.FAMILIES[family]
    cfg[ops.CIU], cfg[ops.MPIU] = ciu, mpiu
    cfg[ops.DETACH_RESET], cfg[ops.DETACH_INHIBITION] = detach_reset, detach_inhibition
    cfg[ops.SURROGATE] = surrogate
    par[ops.LAMBDA], par[ops.THRESHOLD] = decay, threshold
    par[ops.CIU_GAIN], par[ops.MPIU_GAIN], par[ops.TAU] = ciu_gain, mpiu_gain, tau
    par[ops.WIDTH], par[ops.HALF_WIDTH] = width, 0.5 * width
    par[ops.PI_OVER_WIDTH] = math.pi / width
    par[ops.ZERO], par[ops.ONE] = 0.0, 1.0
    return cfg, par


# Whether the backward kernels prefetch a chunk's dL/dS and the next chunk's x and kept values
# (:mod:`ilif.kernels.numba_ops.drivers`); ``benchmarks/kernel_profile.py --only prefetch``
# compares both ways.
PREFETCH = True


def form_config(form: FusedForm, dtype: torch.dtype) -> tuple[np.ndarray, np.ndarray]:
    """``(cfg, par)`` of ``form`` for inputs of ``dtype`` (copies, free to change)."""
    cfg, par = _config(form.family, tuple(form.flags), tuple(form.params), compute_dtype(dtype))
    cfg = cfg.copy()
    cfg[_ops().PREFETCH] = int(PREFETCH)
    return cfg, par.copy()


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype the kernels compute and keep the state in for inputs of ``dtype``: float32 for
    bfloat16 and float16, else ``dtype``."""
    return torch.float32 if dtype in (torch.bfloat16, torch.float16) else dtype


def sigma_dtype(family: str, dtype: torch.dtype) -> torch.dtype:
    """The dtype of σ kept for the backward (with the spike packed in) for inputs of ``dtype``:
    for ILIF with bfloat16 input the 16-bit code (int16: σ rounded to a multiple of 1/16383,
    within 3.1e-5; only the backward reads it, docs/performance.md), else the compute dtype
    (σ itself, exact)."""
    return torch.int16 if family == "ilif" and dtype == torch.bfloat16 else compute_dtype(dtype)


_EXECUTOR: ThreadPoolExecutor | None = None
_EXECUTOR_SIZE = 0
_EXECUTOR_LOCK = threading.Lock()


def _executor(n_workers: int) -> ThreadPoolExecutor:
    global _EXECUTOR, _EXECUTOR_SIZE
    with _EXECUTOR_LOCK:
        if _EXECUTOR is None or _EXECUTOR_SIZE < n_workers:
            if _EXECUTOR is not None:
                _EXECUTOR.shutdown(wait=False)
            _EXECUTOR = ThreadPoolExecutor(n_workers, thread_name_prefix="ilif-cpu")
            _EXECUTOR_SIZE = n_workers
        return _EXECUTOR


def _run_chunks(kernel, n_chunks: int, *args: Any) -> None:
    """Run ``kernel(*args, c0, c1)`` over ``n_chunks`` chunks of neurons on
    ``torch.get_num_threads()`` threads (the kernels release the GIL).

    The threads take blocks of chunks from a shared counter, in the guided schedule of the OpenMP
    launch (:func:`ilif.kernels.numba_ops.omp.block_end`).
    """
    n_threads = max(1, min(torch.get_num_threads(), n_chunks))
    if n_threads == 1:
        kernel(*args, 0, n_chunks)
        return
    block_end = _ops().omp.block_end.py_func  # the plain Python function: a few calls per launch
    next_chunk = 0
    counter_lock = threading.Lock()

    def worker() -> None:
        nonlocal next_chunk
        while True:
            with counter_lock:
                c0 = next_chunk
                c1 = block_end(c0, n_chunks, n_threads)
                next_chunk = c1
            if c0 >= n_chunks:
                return
            kernel(*args, c0, c1)

    futures = [_executor(n_threads - 1).submit(worker) for _ in range(n_threads - 1)]
    worker()
    for f in futures:
        f.result()


USE_TORCH_OPENMP = True  # run the kernels on torch's OpenMP threads where it has GNU OpenMP


def _launch(family: str, kind: str, n_chunks: int, *arrays: np.ndarray | Tensor) -> None:
    """Run the driver ``kind`` ("forward" or "backward") of ``family`` over ``n_chunks`` chunks
    on ``torch.get_num_threads()`` threads: torch's own OpenMP threads where possible
    (:mod:`ilif.kernels._omp`: they may still be spinning after the previous torch op, and
    threads of our own would share the cores with them), else :func:`_run_chunks`. The arrays
    are contiguous numpy arrays or CPU tensors (the OpenMP launch reads a tensor's address
    directly, which costs less than its numpy view); the first one's dtype picks the variant."""
    x = arrays[0]
    dtype = np.dtype(_NUMPY_DTYPES[x.dtype]) if isinstance(x, Tensor) else x.dtype
    ops = _ops()
    ops.compile_variant(family, dtype)
    n_threads = max(1, min(torch.get_num_threads(), n_chunks))
    if n_threads > 1 and USE_TORCH_OPENMP:
        from ilif.kernels import _omp

        if _omp.runtime() is not None:
            _omp.run(family, kind, n_chunks, n_threads, arrays, dtype)
            return
    drivers = ops.bf16_drivers.DRIVERS_BF16 if dtype == np.uint16 else ops.drivers.DRIVERS
    _run_chunks(drivers[family][kind], n_chunks,
                *(_np(a) if isinstance(a, Tensor) else a for a in arrays))


def _np(t: Tensor) -> np.ndarray:
    """A tensor's numpy view; bfloat16 as its uint16 bits."""
    if t.dtype == torch.bfloat16:
        t = t.view(torch.uint16)
    return t.detach().numpy()


class BufferCache:
    """Output buffers of the fused kernels whose pages stay mapped between calls.

    glibc hands freed blocks of many MiB back to the OS, so the next call's outputs (the spikes,
    the dL/dx buffer, the uint8 spikes, the final state) page-fault in again: thousands of
    faults per call, a large share of a layer's time. :meth:`empty` returns a tensor over a cached
    block instead; when the tensor (every view of it) is freed, the block comes back here for the
    next call of that size. At most ``max_free_bytes`` of free blocks are kept; :meth:`clear`
    drops them. Blocks under ``min_bytes`` come from ``torch.empty``. The tensors are ordinary
    CPU tensors, except that their storage cannot be resized in place (``resize_``).
    """

    ALIGN = 64  # bytes: a cache line, and an AVX-512 register

    def __init__(self, max_free_bytes: int, min_bytes: int = 1 << 20) -> None:
        self.max_free_bytes = max_free_bytes
        self.min_bytes = min_bytes
        self._free: dict[int, list[np.ndarray]] = {}
        self._free_bytes = 0
        self._lock = threading.Lock()

    def empty(self, shape: tuple[int, ...], dtype: torch.dtype) -> Tensor:
        """An uninitialised tensor of ``shape`` and ``dtype``."""
        nbytes = math.prod(shape) * dtype.itemsize
        if nbytes < self.min_bytes:
            return torch.empty(shape, dtype=dtype)
        with self._lock:
            free = self._free.get(nbytes)
            block = free.pop() if free else None
            if block is not None:
                self._free_bytes -= nbytes
        if block is None:
            raw = np.empty(nbytes + self.ALIGN, np.uint8)
            start = -raw.ctypes.data % self.ALIGN
            block = raw[start:start + nbytes]
        view = block.view(_NUMPY_DTYPES[dtype]).reshape(shape)
        weakref.finalize(view, self._give, block).atexit = False
        out = torch.from_numpy(view)
        return out.view(torch.bfloat16) if dtype == torch.bfloat16 else out

    def _give(self, block: np.ndarray) -> None:
        with self._lock:
            if self._free_bytes + block.nbytes <= self.max_free_bytes:
                self._free.setdefault(block.nbytes, []).append(block)
                self._free_bytes += block.nbytes

    @property
    def free_bytes(self) -> int:
        return self._free_bytes

    def clear(self) -> None:
        with self._lock:
            self._free.clear()
            self._free_bytes = 0


BUFFERS = BufferCache(max_free_bytes=1 << 30)
# bfloat16 travels as its uint16 bits (numba has no bfloat16)
_NUMPY_DTYPES = {torch.float32: np.float32, torch.float64: np.float64, torch.uint8: np.uint8,
                 torch.int16: np.int16, torch.bfloat16: np.uint16}


def _packed(family: str, flags: Sequence[int]) -> bool:
    """Whether the backward reads σ with the spikes packed in (ILIF with the MPIU, CLIF), not
    the uint8 spikes."""
    return family == "clif" or flags[1] != 0


def _chunks(n: int, cfg: np.ndarray, n_steps: int, backward: bool) -> int:
    """Set ``cfg[CHUNK_LEN]`` for a call over ``n`` neurons; returns the number of chunks."""
    ops = _ops()
    cfg[ops.CHUNK_LEN] = ops.chunk_len(n_steps, backward=backward)
    return -(-n // int(cfg[ops.CHUNK_LEN]))


@torch.library.custom_op("ilif::fused_cpu_forward", mutates_args=(), device_types="cpu")
def fused_cpu_forward(x: Tensor, state0: Tensor, family: str, flags: list[int],
                      params: list[float], want_stats: bool,
                      keep: bool) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """The fused forward of ``x[T, N]`` (contiguous) from ``state0[S, N]`` (``[S, 0]``: the zero
    state). Returns the spikes ``[T, N]``, the final state ``[S, N]``, what the backward reads
    (with ``keep``: σ with the spikes packed in ``[T, N]`` or the uint8 spikes ``[T, N]``; the
    other ``[0, N]``) and the float64 statistics ``[3, T]`` (spike count, gradient-open count,
    Σ g(h) per step; ``[0, T]`` without ``want_stats``). For bfloat16 ``x`` the spikes and the
    final state are bfloat16, ``state0`` float32 (:func:`compute_dtype`) and σ of
    :func:`sigma_dtype`."""
    n_steps, n = x.shape
    x = x.contiguous()
    state0 = state0.contiguous()
    packed = _packed(family, flags)
    spikes = BUFFERS.empty((n_steps, n), x.dtype)
    bits = BUFFERS.empty((n_steps if keep and not packed else 0, n), torch.uint8)
    sgm = BUFFERS.empty((n_steps if keep and packed else 0, n), sigma_dtype(family, x.dtype))
    final = BUFFERS.empty((state0.shape[0], n), x.dtype)
    cfg, par = form_config(FusedForm(family, tuple(flags), tuple(params), state0.shape[0]), x.dtype)
    n_chunks = _chunks(n, cfg, n_steps, backward=False)
    cfg[_ops().WANT_STATS] = int(want_stats)
    stats = np.zeros((n_chunks if want_stats else 0, 3, n_steps), np.float64)
    _launch(family, "forward", n_chunks, x, state0, spikes, bits, sgm, final, par, cfg, stats)
    stats_out = (torch.from_numpy(stats.sum(axis=0)) if want_stats
                 else torch.zeros((0, n_steps), dtype=torch.float64))
    return spikes, final, sgm, bits, stats_out


@fused_cpu_forward.register_fake
def _(x, state0, family, flags, params, want_stats, keep):
    n_steps, n = x.shape
    packed = _packed(family, flags)
    kept = sigma_dtype(family, x.dtype)
    return (x.new_empty((n_steps, n)), x.new_empty((state0.shape[0], n)),
            x.new_empty((n_steps if keep and packed else 0, n), dtype=kept),
            x.new_empty((n_steps if keep and not packed else 0, n), dtype=torch.uint8),
            x.new_empty((3 if want_stats else 0, n_steps), dtype=torch.float64))


@torch.library.custom_op("ilif::fused_cpu_backward", mutates_args=(), device_types="cpu")
def fused_cpu_backward(x: Tensor, state0: Tensor, sgm: Tensor, bits: Tensor, grad_spikes: Tensor,
                       grad_final: Tensor | None, family: str, flags: list[int],
                       params: list[float], want_state_grad: bool) -> tuple[Tensor, Tensor]:
    """The fused BPTT of :func:`fused_cpu_forward`: dL/dx ``[T, N]`` and dL/d(initial state)
    ``[S, N]`` (``[S, 0]`` when neither wanted nor a gradient at the final state given) from
    dL/dS and dL/d(final state), reading what the forward kept (``sgm``, ``bits``). For
    bfloat16 ``x``, dL/dS and dL/dx are bfloat16, the state's gradients float32."""
    return _backward_into(BUFFERS.empty(tuple(x.shape), x.dtype), x, state0, sgm, bits,
                          grad_spikes, grad_final, family, flags, params, want_state_grad)


def _backward_into(grad_x: Tensor, x: Tensor, state0: Tensor, sgm: Tensor, bits: Tensor,
                   grad_spikes: Tensor, grad_final: Tensor | None, family: str, flags: list[int],
                   params: list[float], want_state_grad: bool) -> tuple[Tensor, Tensor]:
    """:func:`fused_cpu_backward` with dL/dx written into ``grad_x``, which may be ``sgm``
    itself (the ILIF kernel reads each step's σ before it writes that step's dL/dx there)."""
    n_steps, n = x.shape
    x = x.contiguous()
    n_state = state0.shape[0]
    inner = compute_dtype(x.dtype)
    if grad_final is not None:
        adj = grad_final.to(inner, copy=True).contiguous()  # the kernel turns it into dL/d(state0)
    elif want_state_grad:
        adj = x.new_zeros((n_state, n), dtype=inner)
    else:
        adj = x.new_empty((n_state, 0), dtype=inner)  # zero, and no dL/d(state0) wanted
    cfg, par = form_config(FusedForm(family, tuple(flags), tuple(params), n_state), x.dtype)
    n_chunks = _chunks(n, cfg, n_steps, backward=True)
    _launch(family, "backward", n_chunks, x, bits.contiguous(), sgm.contiguous(),
            grad_spikes.to(x.dtype).contiguous(), state0.contiguous(), adj, grad_x, par, cfg)
    return grad_x, adj


@fused_cpu_backward.register_fake
def _(x, state0, sgm, bits, grad_spikes, grad_final, family, flags, params, want_state_grad):
    n_state, n = state0.shape[0], x.shape[1]
    wanted = grad_final is not None or want_state_grad
    return (x.new_empty(x.shape),
            x.new_empty((n_state, n if wanted else 0), dtype=compute_dtype(x.dtype)))


def _setup_context(ctx, inputs, output) -> None:
    x, state0, family, flags, params, _want_stats, _keep = inputs
    _spikes, _final, sgm, bits, stats = output
    ctx.mark_non_differentiable(sgm, bits, stats)
    ctx.set_materialize_grads(False)  # an unused final state gets no zero-filled gradient
    ctx.save_for_backward(x, state0, sgm, bits)
    ctx.form = (family, flags, params)


def _backward_through(run_backward, ctx, grad_spikes: Tensor | None,
                      grad_final: Tensor | None) -> tuple[Tensor | None, ...]:
    """The gradients of the forward operator's inputs from ``run_backward`` (the backward
    operator or its implementation)."""
    x, state0, sgm, bits = ctx.saved_tensors
    family, flags, params = ctx.form
    if grad_spikes is None:
        grad_spikes = torch.zeros_like(x)
    want_state_grad = ctx.needs_input_grad[1]
    grad_x, grad_state = run_backward(
        x, state0, sgm, bits, grad_spikes, grad_final, family, flags, params, want_state_grad)
    return grad_x, (grad_state if want_state_grad else None), None, None, None, None, None


def _backward(ctx, grad_spikes, grad_final, _g_sgm, _g_bits, _g_stats):
    return _backward_through(torch.ops.ilif.fused_cpu_backward, ctx, grad_spikes, grad_final)


fused_cpu_forward.register_autograd(_backward, setup_context=_setup_context)


# Whether an eager ILIF backward writes dL/dx over the kept σ(M) (:class:`_EagerFused`);
# ``benchmarks/backward_in_place.py`` compares both ways.
BACKWARD_IN_PLACE = True


def _traced(*tensors: Tensor) -> bool:
    """Whether this call is being traced (``torch.compile``, ``torch.export``, fake or
    functional tensors), where the operators must appear; eager calls skip the operators'
    dispatch (about 0.07 ms per forward and 0.05 ms per backward call,
    ``benchmarks/kernel_profile.py --only dispatch``) through :class:`_EagerFused`, which runs
    the same functions."""
    return torch.compiler.is_compiling() or any(type(t) is not Tensor for t in tensors)


class _EagerFused(torch.autograd.Function):
    """The eager form of ``fused_cpu_forward`` with its autograd formula: the same
    implementation, forward and backward, without the operator dispatch.

    One difference, invisible from outside: ILIF's backward writes dL/dx into the buffer that
    held σ(M) (the kernel reads a step's σ before it writes there; in float32 and float64 over
    σ itself, in bfloat16 over its 16-bit code, 2 bytes each), which saves a buffer and the
    reads-for-ownership of its lines. A second backward through a retained graph finds σ(M)
    gone and runs the forward again for it (``ctx.sigma_spent``)."""

    @staticmethod
    def forward(ctx, x, state0, family, flags, params, want_stats, keep):
        output = fused_cpu_forward._init_fn(x, state0, family, flags, params, want_stats, keep)
        _setup_context(ctx, (x, state0, family, flags, params, want_stats, keep), output)
        ctx.in_place = BACKWARD_IN_PLACE and family == "ilif" and output[2].shape[0] > 0
        ctx.sigma_spent = False
        return output

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_spikes, grad_final, _g_sgm, _g_bits, _g_stats):
        if not ctx.in_place:
            return _backward_through(fused_cpu_backward._init_fn, ctx, grad_spikes, grad_final)

        def run_backward(x, state0, sgm, *rest):
            if ctx.sigma_spent:  # σ(M) became dL/dx in an earlier backward: rebuild it
                family, flags, params = ctx.form
                sgm = fused_cpu_forward._init_fn(x, state0, family, flags, params, False,
                                                 True)[2]
            ctx.sigma_spent = True
            # σ's storage in x's dtype: σ itself, or for bfloat16 its int16 code's bytes
            return _backward_into(sgm.view(x.dtype), x, state0, sgm, *rest)

        return _backward_through(run_backward, ctx, grad_spikes, grad_final)


def cpu_multi_step(
    form: FusedForm, x_seq: Tensor, state: Sequence[Tensor], zero_state: bool, want_stats: bool
) -> tuple[Tensor, tuple[Tensor, ...], Tensor | None]:
    """Run the neuron described by ``form`` over ``x_seq[T, *]`` from ``state`` (its rows, each
    of the shape of one step; ``zero_state``: the all-zero state of a fresh neuron, not read)
    with the fused CPU kernel.

    Returns the spikes (shape and dtype of ``x_seq``), the final state rows (differentiable like
    the eager loop's) and, with ``want_stats``, the float64 statistics ``[3, T]`` (spike count,
    gradient-open count, Σ g(h) per step), else None. Raises a ValueError saying why when the
    kernel cannot run this call.
    """
    reason = unsupported_reason(form, x_seq, state)
    if reason is not None:
        raise ValueError(f"backend='cpu' cannot run this call: {reason}")
    return run_checked(form, x_seq, state, zero_state, want_stats)


def run_checked(
    form: FusedForm, x_seq: Tensor, state: Sequence[Tensor], zero_state: bool, want_stats: bool
) -> tuple[Tensor, tuple[Tensor, ...], Tensor | None]:
    """:func:`cpu_multi_step` for a call that :func:`unsupported_reason` has accepted. No host
    synchronisation and no data-dependent branch: ``torch.compile`` traces it whole.

    bfloat16 inputs (also under CPU autocast) go to the operator as they are: the kernels read
    and write bfloat16 (x, the spikes, the final state) and compute in float32; a given initial
    state is cast to float32 before it. float16 inputs run in float32: the input and the state
    are cast up before the operator, the spikes and the final state back to float16 after it, so
    that dL/dx comes back in float16 too (the casts' own gradients)."""
    shape = x_seq.shape
    n_steps = shape[0]
    dtype = x_seq.dtype
    x2 = x_seq.reshape(n_steps, -1).contiguous()
    if dtype in _UPCAST_DTYPES:
        x2 = x2.float()
    if zero_state:  # passed as an empty [S, 0] array, which the kernels read as zero
        state0 = x2.new_empty((form.state_size, 0), dtype=compute_dtype(x2.dtype))
    else:
        state0 = torch.stack([s.reshape(-1).to(compute_dtype(x2.dtype)) for s in state])
    keep = torch.is_grad_enabled() and (x2.requires_grad or state0.requires_grad)
    args = (x2, state0, form.family, list(form.flags), list(form.params), want_stats, keep)
    if _traced(x2, state0):
        spikes, final, _, _, stats = torch.ops.ilif.fused_cpu_forward(*args)
    else:
        spikes, final, _, _, stats = _EagerFused.apply(*args)
    final_rows = tuple(r.to(dtype) for r in final.view(form.state_size, *shape[1:]).unbind(0))
    return spikes.view(shape).to(dtype), final_rows, (stats if want_stats else None)
