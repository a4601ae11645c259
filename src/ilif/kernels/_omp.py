"""Run the fused CPU kernels on torch's own OpenMP threads.

After each parallel torch op, OpenMP's worker threads keep spinning for a while (libgomp's
default spin-wait: about a millisecond to ten) before they sleep. A kernel that brings threads of
its own then shares the cores with them: in a network the neuron follows a BN or conv layer, and
its second thread ran at half speed for most of a call. Launched through ``GOMP_parallel`` of the
OpenMP runtime that torch has loaded, the kernel runs on those very threads instead.

The launch: ``GOMP_parallel(body, meta, n_threads, 0)`` (through ctypes, which releases the GIL)
with ``body`` a numba ``cfunc`` (:func:`ilif.kernels.numba_ops.omp.omp_bodies`) that rebuilds the
arrays from the addresses and shapes in ``meta`` (an int64 array) and takes blocks of chunks from
a shared counter in ``meta[0]`` with a compare-and-swap, each block a share of what is left
(OpenMP's guided schedule). Where torch has
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

from ilif.kernels.numba_ops import layout as ops
from ilif.kernels.numba_ops.omp import omp_bodies


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


def run(family: str, kind: str, n_chunks: int, n_threads: int, arrays: tuple[Any, ...],
        dtype: np.dtype) -> None:
    """Run the driver ``kind`` ("forward" or "backward") of the kernel ``family`` for float
    ``dtype`` over ``n_chunks``
    chunks on ``n_threads`` of torch's OpenMP threads; ``arrays`` are its array arguments in
    order (C-contiguous numpy arrays or CPU tensors)."""
    fields = [0] * ops.HEADER  # the shared chunk counter starts at 0
    fields[ops.N_CHUNKS], fields[ops.N_THREADS] = n_chunks, n_threads
    for a in arrays:
        if isinstance(a, torch.Tensor):
            contiguous, address, shape = a.is_contiguous(), a.data_ptr(), a.shape
        else:
            contiguous, address, shape = a.flags.c_contiguous, a.ctypes.data, a.shape
        if not contiguous:  # pragma: no cover - the callers pass contiguous arrays
            raise ValueError("the OpenMP launch needs C-contiguous arrays")
        fields += [address, *shape, *(0,) * (ops.PER_ARRAY - 1 - len(shape))]
    meta = np.array(fields, np.int64)
    body = omp_bodies(family, np.dtype(dtype))[kind]
    runtime()(body.address, meta.ctypes.data, n_threads, 0)
