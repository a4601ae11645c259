"""Row views (without reference counts), row copies, streaming row stores and prefetches.

The kernels' loops take one 1-D C-contiguous row per quantity (``x[t, lo:hi]``, ``state[k, lo:hi]``,
scratch rows, cut by :func:`row`), all distinct: numba types 2-D slices as non-contiguous and
LLVM cannot vectorise loops over aliased rows, so both would fall back to scalar code.
"""

from __future__ import annotations

from numba import carray, njit, types
from numba.core.errors import TypingError
from numba.extending import overload

from ilif.kernels.numba_ops.llvm import _address, _pointer, _prefetch, _store_fence, _stream_line


@njit(inline="always")
def stream_row(dst, src):
    """``dst[:] = src[:]`` (contiguous rows of one dtype), the whole 64-byte lines of ``dst``
    with streaming stores, which skip the read of each line before its write and do not evict
    cached data: for results that are not read again soon (the final state). The caller ends
    with :func:`_store_fence` before another thread reads ``dst``."""
    n = dst.shape[0]
    lanes = 64 // dst.itemsize
    head = min(n, ((64 - _address(dst) % 64) % 64) // dst.itemsize)
    for j in range(head):
        dst[j] = src[j]
    j = head
    while j + lanes <= n:
        _stream_line(dst, j, src, j)
        j += lanes
    for i in range(j, n):
        dst[i] = src[i]


@njit(cache=True)
def stream_rows(dst, src):
    """:func:`stream_row` for every row of the 2-D ``dst`` and ``src``, then the fence (for the
    tests)."""
    for k in range(dst.shape[0]):
        stream_row(dst[k], src[k])
    _store_fence()


def row(a, i, lo, m):
    """``a[i, lo:lo + m]`` of a C-contiguous 2-D array (``a[lo:lo + m]`` of a 1-D one with
    ``i`` = 0), as a view without a reference count. Compiled only.

    A slice of a numba array is a new reference to its memory (two calls into numba's runtime
    with an atomic update each, which LLVM cannot remove across the drivers' branches); a driver
    cuts about twenty rows per chunk and step, which cost as much as a step over 200 neurons
    (``benchmarks/kernel_profile.py --only row_cost``). The view is valid while ``a`` is.
    """
    raise NotImplementedError("row runs inside numba kernels only")


@overload(row, inline="always")
def _row_overload(a, i, lo, m):
    if not (isinstance(a, types.Array) and a.layout == "C"):
        raise TypingError(f"row() needs a C-contiguous array, got {a}")

    def impl(a, i, lo, m):
        width = a.shape[a.ndim - 1]
        return carray(_pointer(_address(a) + (i * width + lo) * a.itemsize), m, a.dtype)

    return impl


@njit(inline="always")
def row3(a, i, t, m):
    """``a[i, t, :m]`` of a C-contiguous 3-D array, as :func:`row`."""
    return row(a, i * a.shape[1] + t, 0, m)


# -------------------------------------------------------------------------------------- drivers
# Scratch is allocated once per call and cut per chunk into rows with :func:`row` and
# :func:`row3` (views without reference counts).


@njit(inline="always")
def copy_row(out, inp):
    """``out[:] = inp[:]`` as a loop that LLVM vectorises (a numba slice assignment does not)."""
    for j in range(out.shape[0]):
        out[j] = inp[j]


@njit(inline="always")
def _load_rows(dst, src, zero, lo, m):
    """``dst[k, :m] = src[k, lo:lo + m]`` for every row k of ``src``, or 0 when ``zero``."""
    for k in range(src.shape[0]):
        out = row(dst, k, 0, m)
        if zero:
            for j in range(m):
                out[j] = 0
        else:
            copy_row(out, row(src, k, lo, m))


@njit(inline="always")
def prefetch_row(a):
    """Ask for the cache lines of the row ``a`` ahead of their use (software prefetches into L2).

    A chunk's rows are short (512 neurons: 2 KiB of float32) and T of them, far apart, are in
    use at once, too many streams for the hardware prefetchers; asked for ahead, a row's lines
    arrive while the kernel computes on rows already in the cache (``benchmarks/kernel_profile.py
    --only prefetch``)."""
    start = _address(a)
    for offset in range(0, a.shape[0] * a.itemsize, 64):
        _prefetch(start + offset)


@njit(inline="always")
def prefetch_chunk(a, lo, m):
    """:func:`prefetch_row` of ``a[t, lo:lo + m]`` for every row t of the 2-D ``a`` (none when
    it has no rows)."""
    for t in range(a.shape[0]):
        prefetch_row(row(a, t, lo, m))
