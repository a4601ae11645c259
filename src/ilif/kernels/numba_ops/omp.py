"""The OpenMP launch bodies of the fused CPU kernels: numba ``cfunc`` bodies that
:mod:`ilif.kernels._omp` runs on torch's OpenMP threads (``GOMP_parallel``). Each rebuilds the
arrays from the addresses and shapes in an int64 ``meta`` array (:mod:`.layout`) and takes blocks
of chunks from a shared counter in ``meta[0]`` with a compare-and-swap."""

from __future__ import annotations

import functools

import numpy as np
from numba import carray, cfunc, njit, types

from ilif.kernels.numba_ops.bf16_drivers import clif_backward_bf16, clif_forward_bf16
from ilif.kernels.numba_ops.cache import numba_cache_dir
from ilif.kernels.numba_ops.drivers import clif_backward, clif_forward, ilif_backward, ilif_forward
from ilif.kernels.numba_ops.layout import COUNTER, HEADER, N_CHUNKS, N_THREADS, PER_ARRAY
from ilif.kernels.numba_ops.llvm import _compare_and_swap, _pointer


@njit(inline="always")
def block_end(c0, n_chunks, n_threads):
    """The end of the block of chunks that starts at ``c0``: a share of what is left, at least one
    chunk (OpenMP's guided schedule: few kernel calls, and a thread that the OS descheduled on a
    shared machine delays a small last block only)."""
    return min(n_chunks, c0 + max(1, (n_chunks - c0) // (2 * n_threads)))


@njit(inline="always")
def next_block(meta):
    """The next block [c0, c1) of chunks (c0 ≥ chunks when none is left)."""
    n = meta[N_CHUNKS]
    while True:
        c0 = meta[COUNTER]
        if c0 >= n:
            return n, n
        c1 = block_end(c0, n, meta[N_THREADS])
        if _compare_and_swap(meta, COUNTER, c0, c1) == c0:
            return c0, c1


@njit(inline="always")
def array_at(meta, k, ndim, dtype):
    """The ``k``-th array of ``meta`` (C-contiguous, ``ndim`` dimensions of ``dtype``)."""
    base = HEADER + PER_ARRAY * k
    ptr = _pointer(meta[base])
    if ndim == 1:
        return carray(ptr, (meta[base + 1],), dtype)
    if ndim == 2:
        return carray(ptr, (meta[base + 1], meta[base + 2]), dtype)
    return carray(ptr, (meta[base + 1], meta[base + 2], meta[base + 3]), dtype)


_N_ARRAYS = 9  # arrays per launch, forward and backward


@njit(inline="always")
def _forward_arrays(meta, f, fx, fs):
    """x, state0, spikes, uint8 spikes, σ, final state, par, cfg, stats of a forward launch; x,
    the spikes and the final state of dtype ``fx`` (uint16 for bfloat16), σ of ``fs`` (int16:
    the 16-bit code), the other floats of ``f``."""
    u8, i64, f64 = types.uint8, types.int64, types.float64
    return (array_at(meta, 0, 2, fx), array_at(meta, 1, 2, f), array_at(meta, 2, 2, fx),
            array_at(meta, 3, 2, u8), array_at(meta, 4, 2, fs), array_at(meta, 5, 2, fx),
            array_at(meta, 6, 1, f), array_at(meta, 7, 1, i64), array_at(meta, 8, 3, f64))


@njit(inline="always")
def _backward_arrays(meta, f, fx, fs):
    """x, uint8 spikes, σ, dL/dS, state0, adjoint, dL/dx, par, cfg of a backward launch; x,
    dL/dS and dL/dx of dtype ``fx``, σ of ``fs``, the other floats of ``f``."""
    u8, i64 = types.uint8, types.int64
    return (array_at(meta, 0, 2, fx), array_at(meta, 1, 2, u8), array_at(meta, 2, 2, fs),
            array_at(meta, 3, 2, fx), array_at(meta, 4, 2, f), array_at(meta, 5, 2, f),
            array_at(meta, 6, 2, fx), array_at(meta, 7, 1, f), array_at(meta, 8, 1, i64))


# One body per family and direction, each naming its driver as a global: a cached cfunc's key
# includes its closure variables, and a driver there would not pickle to the same bytes twice.
def _ilif_bodies(f, fx, fs):
    """ILIF's bodies for floats ``f``; x, the spikes, dL/dS, dL/dx and the final state of ``fx``
    (``f``, or uint16 for bfloat16), σ of ``fs`` (``f``, or the int16 16-bit code)."""

    def forward(data):
        meta = carray(data, (HEADER + PER_ARRAY * _N_ARRAYS,), types.int64)
        arrays = _forward_arrays(meta, f, fx, fs)
        while True:
            c0, c1 = next_block(meta)
            if c0 >= c1:
                return
            ilif_forward(*arrays, c0, c1)

    def backward(data):
        meta = carray(data, (HEADER + PER_ARRAY * _N_ARRAYS,), types.int64)
        arrays = _backward_arrays(meta, f, fx, fs)
        while True:
            c0, c1 = next_block(meta)
            if c0 >= c1:
                return
            ilif_backward(*arrays, c0, c1)

    return forward, backward


def _clif_bodies(f):
    def forward(data):
        meta = carray(data, (HEADER + PER_ARRAY * _N_ARRAYS,), types.int64)
        arrays = _forward_arrays(meta, f, f, f)
        while True:
            c0, c1 = next_block(meta)
            if c0 >= c1:
                return
            clif_forward(*arrays, c0, c1)

    def backward(data):
        meta = carray(data, (HEADER + PER_ARRAY * _N_ARRAYS,), types.int64)
        arrays = _backward_arrays(meta, f, f, f)
        while True:
            c0, c1 = next_block(meta)
            if c0 >= c1:
                return
            clif_backward(*arrays, c0, c1)

    return forward, backward


def _clif_bf16_bodies(f):
    fx = types.uint16

    def forward(data):
        meta = carray(data, (HEADER + PER_ARRAY * _N_ARRAYS,), types.int64)
        arrays = _forward_arrays(meta, f, fx, f)
        while True:
            c0, c1 = next_block(meta)
            if c0 >= c1:
                return
            clif_forward_bf16(*arrays, c0, c1)

    def backward(data):
        meta = carray(data, (HEADER + PER_ARRAY * _N_ARRAYS,), types.int64)
        arrays = _backward_arrays(meta, f, fx, f)
        while True:
            c0, c1 = next_block(meta)
            if c0 >= c1:
                return
            clif_backward_bf16(*arrays, c0, c1)

    return forward, backward


_BODIES = {"ilif": lambda f: _ilif_bodies(f, f, f), "clif": _clif_bodies}
# bfloat16 (its uint16 bits) in and out, float32 inside: ILIF runs its drivers of every dtype
# with σ kept as the 16-bit code, CLIF those of :mod:`.bf16_drivers`
_BF16_BODIES = {"ilif": lambda f: _ilif_bodies(f, types.uint16, types.int16),
                "clif": _clif_bf16_bodies}


@functools.cache
def omp_bodies(family: str, dtype: np.dtype) -> dict:
    """The ``cfunc`` bodies of one kernel family (``"ilif"``, ``"clif"``) and float ``dtype``:
    ``{"forward": ..., "backward": ...}``, compiled (or loaded from the guarded cache,
    :mod:`.cache`) on first use. ``uint16`` stands for bfloat16 (computed in float32)."""
    if np.dtype(dtype) == np.uint16:
        forward, backward = _BF16_BODIES[family](types.float32)
    else:
        f = types.float32 if np.dtype(dtype) == np.float32 else types.float64
        forward, backward = _BODIES[family](f)
    signature = types.void(types.voidptr)
    with numba_cache_dir():
        return {
            "forward": cfunc(signature, nopython=True, error_model="numpy", cache=True)(forward),
            "backward": cfunc(signature, nopython=True, error_model="numpy", cache=True)(backward),
        }
