"""The fused multi-step CPU path: one numba pass forward, one BPTT pass backward.

:class:`FusedNeuronFunction` is the autograd function. Its forward runs the whole time loop
(:func:`ilif.kernels._numba_ops.forward`) and keeps, per neuron-step, beside the input ``x``
that autograd already holds (a contiguous copy is made, and saved, only for non-contiguous
input): for ILIF with the MPIU and CLIF σ(M) resp. σ(C) with the spike packed in, written into
the buffer that the backward turns into dL/dx (4 bytes in float32, no extra allocation); for LIF
and ILIF without the MPIU the spikes as uint8 (1 byte). Its backward
(:func:`ilif.kernels._numba_ops.backward`) rebuilds the other per-step values chunk by chunk
(cheap without the exponentials, and cache-resident) and runs BPTT backwards in time.
Gradients flow to the input, to the initial state and from the final state, exactly as through
the eager loop, so calls can be chained; a second backward through a retained graph runs the
forward again for what the first one consumed.

Supported: LIF, ILIF (every flag), CLIF; every surrogate, any width; float32 and float64.
"""

from __future__ import annotations

import math
import threading
import weakref
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor

from ilif.neurons import functional as F
from ilif.neurons.base import Neuron, NeuronStats

__all__ = ["cpu_multi_step", "run_checked", "unsupported_reason", "FusedNeuronFunction"]

_SUPPORTED_DTYPES = (torch.float32, torch.float64)
_STEP_KIND = {F.lif_step: "lif", F.ilif_step: "ilif", F.clif_step: "clif"}


def _ops():
    """The numba module, imported (and its kernels compiled or loaded from cache) on first use."""
    from ilif.kernels import _numba_ops

    return _numba_ops


def unsupported_reason(neuron: Neuron, x_seq: Tensor, state: NamedTuple) -> str | None:
    """Why the fused CPU kernel cannot run this call, or None when it can."""
    kind = _STEP_KIND.get(type(neuron).step_fn)
    if kind is None or neuron.kind not in ("lif", "ilif", "clif"):
        return (
            f"no fused CPU kernel for {type(neuron).__name__} (kind {neuron.kind!r}); "
            "it exists for LIF, ILIF and CLIF"
        )
    if isinstance(neuron.decay, Tensor):
        return f"{type(neuron).__name__} has a tensor (learnable) decay"
    if x_seq.device.type != "cpu":
        return f"the input is on {x_seq.device}, the fused CPU kernel needs CPU tensors"
    if x_seq.dtype not in _SUPPORTED_DTYPES:
        return f"input dtype {x_seq.dtype} (the fused CPU kernel runs float32 and float64)"
    if torch.is_autocast_enabled("cpu"):
        return "CPU autocast is enabled (the fused CPU kernel runs float32/float64 only)"
    if any(t.dtype != x_seq.dtype or t.device != x_seq.device for t in state):
        return "the state's dtype or device differs from the input's"
    try:
        import numba  # noqa: F401
    except ImportError:  # pragma: no cover - numba is a runtime dependency
        return "numba is not installed (pip install numba)"
    return None


class _Config(NamedTuple):
    """Everything a call needs besides tensors: kernel arrays and the stats request."""

    cfg: np.ndarray  # int64[CFG_SIZE]
    par: np.ndarray  # dtype[PAR_SIZE]


def _config(neuron: Neuron, dtype: torch.dtype, want_stats: bool) -> _Config:
    ops = _ops()
    p = neuron.params()
    cfg = np.zeros(ops.CFG_SIZE, np.int64)
    par = np.zeros(ops.PAR_SIZE, np.float32 if dtype == torch.float32 else np.float64)
    cfg[ops.KIND] = ops.KIND_CLIF if neuron.kind == "clif" else ops.KIND_ILIF
    cfg[ops.DETACH_RESET] = int(p.detach_reset)
    if neuron.kind == "ilif":
        cfg[ops.CIU], cfg[ops.MPIU] = int(p.ciu), int(p.mpiu)
        cfg[ops.DETACH_INHIBITION] = int(p.detach_inhibition)
        par[ops.CIU_GAIN], par[ops.MPIU_GAIN] = p.ciu_gain, p.mpiu_gain
    if neuron.kind == "clif":
        par[ops.TAU] = p.tau
    cfg[ops.SURROGATE] = neuron.surrogate.code
    cfg[ops.WANT_STATS] = int(want_stats)
    par[ops.LAMBDA] = float(p.decay)
    par[ops.THRESHOLD] = p.v_threshold
    par[ops.WIDTH] = neuron.surrogate.width
    par[ops.HALF_WIDTH] = 0.5 * neuron.surrogate.width
    par[ops.PI_OVER_WIDTH] = math.pi / neuron.surrogate.width
    par[ops.ZERO], par[ops.ONE] = 0.0, 1.0
    return _Config(cfg, par)


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
    launch (:func:`ilif.kernels._numba_ops.block_end`).
    """
    n_threads = max(1, min(torch.get_num_threads(), n_chunks))
    if n_threads == 1:
        kernel(*args, 0, n_chunks)
        return
    block_end = _ops().block_end.py_func  # the plain Python function: a few calls per launch
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


def _launch(kind: str, n_chunks: int, *arrays: np.ndarray | Tensor) -> None:
    """Run the driver ``kind`` ("forward" or "backward") of :mod:`ilif.kernels._numba_ops` over
    ``n_chunks`` chunks on ``torch.get_num_threads()`` threads: torch's own OpenMP threads where
    possible (:mod:`ilif.kernels._omp`: they may still be spinning after the previous torch op,
    and threads of our own would share the cores with them), else :func:`_run_chunks`. The
    arrays are contiguous numpy arrays or CPU tensors (the OpenMP launch reads a tensor's address
    directly, which costs less than its numpy view)."""
    n_threads = max(1, min(torch.get_num_threads(), n_chunks))
    if n_threads > 1 and USE_TORCH_OPENMP:
        from ilif.kernels import _omp

        if _omp.runtime() is not None:
            x = arrays[0]  # its dtype picks the kernel
            dtype = np.dtype(_NUMPY_DTYPES[x.dtype]) if isinstance(x, Tensor) else x.dtype
            _omp.run(kind, n_chunks, n_threads, arrays, dtype)
            return
    _run_chunks(getattr(_ops(), kind), n_chunks,
                *(_np(a) if isinstance(a, Tensor) else a for a in arrays))


def _np(t: Tensor) -> np.ndarray:
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
        return torch.from_numpy(view)

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
_NUMPY_DTYPES = {torch.float32: np.float32, torch.float64: np.float64, torch.uint8: np.uint8}


class FusedNeuronFunction(torch.autograd.Function):
    """``(x[T, N], state0[S, N]) -> (spikes[T, N], final_state[S, N])`` with fused BPTT.

    Saved for backward: ILIF with the MPIU keeps σ(M) with the spike and the clamp's slope
    packed into its sign and top exponent bit (T·N values), in the buffer that becomes dL/dx;
    CLIF keeps σ(C) there with the spike in the sign bit; LIF and ILIF without the MPIU keep the
    uint8 spikes (with the slope in bit 1). Also ``x`` itself (held by autograd anyway) and,
    unless it is all zero, the initial state (S·N, once per call, not per step). The first
    backward reads the kept values and overwrites them; a second one through a retained graph
    runs the forward again to get them back.
    """

    @staticmethod
    def forward(ctx, x: Tensor, state0: Tensor, conf: _Config, stats_out: list,  # type: ignore[override]
                zero_state: bool):
        ops = _ops()
        n_steps, n = x.shape
        needs_grad = any(ctx.needs_input_grad[:2])
        ctx.set_materialize_grads(False)  # an unused final state gets no zero-filled gradient
        is_ilif = conf.cfg[ops.KIND] == ops.KIND_ILIF
        # ILIF with the MPIU and CLIF keep σ(M) resp. σ(C) with the spikes packed in, in the
        # buffer that the backward turns into dL/dx; LIF and ILIF without the MPIU the uint8 spikes
        packed = not is_ilif or conf.cfg[ops.MPIU] != 0
        spikes = BUFFERS.empty((n_steps, n), x.dtype)
        bits = BUFFERS.empty((n_steps if needs_grad and not packed else 0, n), torch.uint8)
        grad_buffer = BUFFERS.empty((n_steps if needs_grad and packed else 0, n), x.dtype)
        final = BUFFERS.empty((state0.shape[0], n), x.dtype)
        want_stats = bool(conf.cfg[ops.WANT_STATS])
        cfg = conf.cfg.copy()
        cfg[ops.CHUNK_LEN] = ops.chunk_len(n_steps, backward=False)
        n_chunks = -(-n // int(cfg[ops.CHUNK_LEN]))
        stats = np.zeros((n_chunks if want_stats else 0, 3, n_steps), np.float64)
        # an all-zero initial state is passed as an empty array, which the kernel does not read
        state_in = state0[:, :0] if zero_state else state0
        _launch("forward", n_chunks, x, state_in, spikes, bits, grad_buffer, final, conf.par, cfg,
                stats)
        if want_stats:
            stats_out.append(stats.sum(axis=0))
        if needs_grad:
            # an all-zero initial state (the first call after reset) is not kept
            ctx.save_for_backward(x, bits, grad_buffer, *(() if zero_state else (state0,)))
            ctx.kept_valid = True
            ctx.state_shape = (state0.shape[0], n)
            ctx.conf = conf
        return spikes, final

    @staticmethod
    def backward(ctx, grad_spikes: Tensor | None, grad_final: Tensor | None):  # type: ignore[override]
        ops = _ops()
        x, bits, grad_buffer, *kept = ctx.saved_tensors
        # without a kept state the initial state was zero: an empty array says so to the kernel
        state0 = kept[0] if kept else x.new_empty((ctx.state_shape[0], 0))
        grad_spikes = grad_spikes.contiguous() if grad_spikes is not None else torch.zeros_like(x)
        want_state_grad = ctx.needs_input_grad[1]
        if grad_final is not None:
            adj = grad_final.contiguous().clone()  # the kernel turns it into dL/d(state0)
        elif want_state_grad:
            adj = x.new_zeros(ctx.state_shape)
        else:
            adj = x.new_empty((ctx.state_shape[0], 0))  # zero, and no dL/d(state0) wanted
        n_steps, n = x.shape
        cfg = ctx.conf.cfg.copy()
        cfg[ops.CHUNK_LEN] = ops.chunk_len(n_steps, backward=True)
        packed = grad_buffer.shape[0] != 0  # ILIF with the MPIU, CLIF: σ with the spikes
        if packed and not ctx.kept_valid:
            # a second backward through a retained graph: the first one overwrote σ and the
            # spikes with dL/dx, so the forward runs again (the same operations, the same spikes)
            grad_buffer = BUFFERS.empty(tuple(x.shape), x.dtype)
            _refill_packed(x, state0, grad_buffer, ctx.conf)
        ctx.kept_valid = False  # consumed: the kept values become dL/dx, in place
        grad_x = grad_buffer if packed else BUFFERS.empty(tuple(x.shape), x.dtype)
        _launch("backward", -(-n // int(cfg[ops.CHUNK_LEN])), x, bits, grad_spikes, state0, adj,
                grad_x, ctx.conf.par, cfg)
        return grad_x, (adj if want_state_grad else None), None, None, None


def _refill_packed(x: Tensor, state0: Tensor, out: Tensor, conf: _Config) -> None:
    """Write the forward's packed σ and spikes (ILIF with the MPIU, CLIF) into ``out[T, N]``."""
    ops = _ops()
    n_steps, n = x.shape
    cfg = conf.cfg.copy()
    cfg[ops.CHUNK_LEN] = ops.chunk_len(n_steps, backward=False)
    cfg[ops.WANT_STATS] = 0
    _launch("forward", -(-n // int(cfg[ops.CHUNK_LEN])), x, state0, x.new_empty((0, n)),
            np.empty((0, n), np.uint8), out, x.new_empty((state0.shape[0], n)), conf.par, cfg,
            np.zeros((0, 3, n_steps)))


def cpu_multi_step(
    neuron: Neuron, x_seq: Tensor, state: NamedTuple, want_stats: bool
) -> tuple[Tensor, NamedTuple, NeuronStats | None]:
    """Run ``neuron`` over ``x_seq[T, *]`` from ``state`` with the fused CPU kernel.

    Returns the spikes (shape and dtype of ``x_seq``), the final state (the neuron's state
    NamedTuple, differentiable like the eager loop's) and, with ``want_stats``, the statistics
    of :class:`ilif.neurons.NeuronStats` (spike count, gradient-open count, Σ g(h) per step).
    """
    reason = unsupported_reason(neuron, x_seq, state)
    if reason is not None:
        raise ValueError(f"backend='cpu' cannot run this call: {reason}")
    return run_checked(neuron, x_seq, state, want_stats)


def run_checked(
    neuron: Neuron, x_seq: Tensor, state: NamedTuple, want_stats: bool
) -> tuple[Tensor, NamedTuple, NeuronStats | None]:
    """:func:`cpu_multi_step` for a call that :func:`unsupported_reason` has accepted."""
    shape = x_seq.shape
    n_steps = shape[0]
    x2 = x_seq.reshape(n_steps, -1)
    if not x2.is_contiguous():
        x2 = x2.contiguous()
    conf = _config(neuron, x_seq.dtype, want_stats)
    stats_out: list[Any] = []
    if neuron.state is None:
        # the zero state of a fresh or reset neuron: passed as an empty [S, 0] array, which the
        # kernels read as zero (neither stacked nor scanned)
        state0 = x2.new_empty((len(state), 0))
        zero_state = True
    else:
        state0 = torch.stack([s.reshape(-1) for s in state])
        zero_state = not any(bool(s.any()) for s in state)
    spikes, final = FusedNeuronFunction.apply(x2, state0, conf, stats_out, zero_state)
    final_state = type(state)(*final.view(final.shape[0], *shape[1:]).unbind(0))
    stats = None
    if want_stats:
        sums = torch.from_numpy(stats_out[0])
        stats = NeuronStats(
            spikes=sums[0], open=sums[1], surrogate_sum=sums[2], neurons=int(x2.shape[1])
        )
    return spikes.view(shape), final_state, stats
