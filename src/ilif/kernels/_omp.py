"""Run the fused CPU kernels on torch's own OpenMP threads.

After each parallel torch op, OpenMP's worker threads keep spinning for a while (libgomp's
default spin-wait: about a millisecond to ten) before they sleep. A kernel that brings threads of
its own then shares the cores with them: in a network the neuron follows a BN or conv layer, and
its second thread ran at half speed for most of a call. Launched through ``GOMP_parallel`` of the
OpenMP runtime that torch has loaded, the kernel runs on those very threads instead.

The launch: ``GOMP_parallel(body, meta, n_threads, 0)`` (through ctypes, which releases the GIL)
with ``body`` a numba ``cfunc`` that rebuilds the arrays from the addresses and shapes in
``meta`` (an int64 array) and takes blocks of chunks from a shared counter in ``meta[0]`` with a
compare-and-swap, each block a share of what is left (OpenMP's guided schedule). Where torch has
no GNU-compatible OpenMP runtime (macOS, other builds) :func:`runtime` is None and the caller
uses its own threads.
"""

from __future__ import annotations

import ctypes
import functools
import os
from typing import Any

import numpy as np
import torch
from llvmlite import ir
from numba import carray, cfunc, njit, types
from numba.extending import intrinsic

from ilif.kernels import _numba_ops as ops

# meta[0]: the next chunk (shared counter); meta[1]: chunks; meta[2]: threads; then per array
# its address and (up to 3) dimensions
COUNTER, N_CHUNKS, N_THREADS, HEADER = 0, 1, 2, 3
PER_ARRAY = 4


@intrinsic
def _pointer(typingctx, address):
    """The ``void*`` at an integer address."""

    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], ir.IntType(8).as_pointer())

    return types.voidptr(types.int64), codegen


@intrinsic
def _compare_and_swap(typingctx, array, index, expected, new):
    """Atomically: if ``array[index]`` (int64) equals ``expected``, store ``new``; returns the
    value found."""
    if not (isinstance(array, types.Array) and array.dtype == types.int64):
        return None

    def codegen(context, builder, signature, args):
        arr = context.make_array(signature.args[0])(context, builder, value=args[0])
        ptr = builder.gep(arr.data, [args[1]])
        pair = builder.cmpxchg(ptr, args[2], args[3], "seq_cst", "seq_cst")
        return builder.extract_value(pair, 0)

    return types.int64(array, types.int64, types.int64, types.int64), codegen


@njit(inline="always")
def _next_block(meta):
    """The next block [c0, c1) of chunks (c0 ≥ chunks when none is left)."""
    n = meta[N_CHUNKS]
    while True:
        c0 = meta[COUNTER]
        if c0 >= n:
            return n, n
        c1 = min(n, c0 + max(1, (n - c0) // (2 * meta[N_THREADS])))
        if _compare_and_swap(meta, COUNTER, c0, c1) == c0:
            return c0, c1


@njit(inline="always")
def _array(meta, k, ndim, dtype):
    base = HEADER + PER_ARRAY * k
    ptr = _pointer(meta[base])
    if ndim == 1:
        return carray(ptr, (meta[base + 1],), dtype)
    if ndim == 2:
        return carray(ptr, (meta[base + 1], meta[base + 2]), dtype)
    return carray(ptr, (meta[base + 1], meta[base + 2], meta[base + 3]), dtype)


@functools.cache
def _bodies(dtype: np.dtype) -> dict[str, Any]:
    """The ``cfunc`` bodies of the forward and backward drivers for one float dtype (compiled,
    or loaded from numba's cache, on first use)."""
    f = types.float32 if dtype == np.float32 else types.float64
    u8, i64, f64 = types.uint8, types.int64, types.float64

    @cfunc(types.void(types.voidptr), nopython=True, error_model="numpy", cache=True)
    def forward(data):
        meta = carray(data, (HEADER + PER_ARRAY * 9,), i64)
        x, state0, spikes = _array(meta, 0, 2, f), _array(meta, 1, 2, f), _array(meta, 2, 2, f)
        bits, sgm, final = _array(meta, 3, 2, u8), _array(meta, 4, 2, f), _array(meta, 5, 2, f)
        par, cfg, stats = _array(meta, 6, 1, f), _array(meta, 7, 1, i64), _array(meta, 8, 3, f64)
        while True:
            c0, c1 = _next_block(meta)
            if c0 >= c1:
                return
            ops.forward(x, state0, spikes, bits, sgm, final, par, cfg, stats, c0, c1)

    @cfunc(types.void(types.voidptr), nopython=True, error_model="numpy", cache=True)
    def backward(data):
        meta = carray(data, (HEADER + PER_ARRAY * 8,), i64)
        x, bits, gout = _array(meta, 0, 2, f), _array(meta, 1, 2, u8), _array(meta, 2, 2, f)
        state0, adj, gx = _array(meta, 3, 2, f), _array(meta, 4, 2, f), _array(meta, 5, 2, f)
        par, cfg = _array(meta, 6, 1, f), _array(meta, 7, 1, i64)
        while True:
            c0, c1 = _next_block(meta)
            if c0 >= c1:
                return
            ops.backward(x, bits, gout, state0, adj, gx, par, cfg, c0, c1)

    return {"forward": forward, "backward": backward}


def _find_libgomp() -> str | None:
    """The path of the GNU OpenMP runtime torch uses: its wheel's copy, else one that is loaded."""
    bundled = os.path.join(os.path.dirname(torch.__file__), "lib", "libgomp.so.1")
    if os.path.exists(bundled):
        return bundled
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                path = line.split()[-1]
                if "libgomp" in os.path.basename(path) or "libiomp5" in os.path.basename(path):
                    return path
    except OSError:
        pass
    return None


@functools.cache
def runtime() -> Any:
    """``GOMP_parallel`` of torch's OpenMP runtime (a ctypes function), or None."""
    if "OpenMP" not in torch.__config__.parallel_info():
        return None
    path = _find_libgomp()
    if path is None:
        return None
    try:
        fn = ctypes.CDLL(path).GOMP_parallel
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint, ctypes.c_uint]
    fn.restype = None
    return fn


def run(kind: str, n_chunks: int, n_threads: int, arrays: tuple[np.ndarray, ...]) -> None:
    """Run the driver ``kind`` ("forward" or "backward") over ``n_chunks`` chunks on
    ``n_threads`` of torch's OpenMP threads; ``arrays`` are its array arguments in order."""
    meta = np.zeros(HEADER + PER_ARRAY * len(arrays), np.int64)
    meta[N_CHUNKS], meta[N_THREADS] = n_chunks, n_threads
    for k, a in enumerate(arrays):
        if not a.flags.c_contiguous:  # pragma: no cover - the callers pass contiguous arrays
            raise ValueError("the OpenMP launch needs C-contiguous arrays")
        base = HEADER + PER_ARRAY * k
        meta[base] = a.ctypes.data
        meta[base + 1:base + 1 + a.ndim] = a.shape
    body = _bodies(arrays[0].dtype)[kind]
    runtime()(body.address, meta.ctypes.data, n_threads, 0)
