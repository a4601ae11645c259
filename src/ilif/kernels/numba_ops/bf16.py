"""bfloat16 ⇄ float32 in the fused CPU kernels, on the raw uint16 bits (numba has no bfloat16).

bfloat16 is the top half of a float32: widening is exact, ``f32 = bits(u) << 16``; narrowing
rounds to nearest, ties to even, on the bits: ``u = (b + 0x7FFF + ((b >> 16) & 1)) >> 16`` for
the float32 bits ``b`` (an overflow rounds to ±inf, as it should), and every NaN becomes 0xFFFF,
as torch's ``.to(torch.bfloat16)`` on the CPU (docs/performance.md).
"""

from __future__ import annotations

import numpy as np
from numba import njit, types
from numba.extending import overload

from ilif.kernels.numba_ops.llvm import _bits_of_f32, _f32_from_bits
from ilif.kernels.numba_ops.rows import stream_row

BF16_NAN = 0xFFFF  # the bits torch's CPU conversion gives every NaN


@njit(inline="always")
def bf16_to_f32(u):
    """The float32 value of the bfloat16 bits ``u`` (uint16): exact."""
    return _f32_from_bits(np.int64(u) << 16)


@njit(inline="always")
def f32_to_bf16(f):
    """The bfloat16 bits (uint16) nearest the float32 ``f``, ties to even; NaN → 0xFFFF."""
    b = np.int64(_bits_of_f32(f)) & 0xFFFFFFFF
    rounded = (b + 0x7FFF + ((b >> 16) & 1)) >> 16
    is_nan = (b & 0x7FFFFFFF) > 0x7F800000
    return np.uint16(BF16_NAN if is_nan else rounded)


def load(a, j):
    """``a[j]`` as a compute float: the bfloat16 bits of a uint16 array widened to float32
    (:func:`bf16_to_f32`), a float as it is. Compiled only: a row loop that reads its input and
    dL/dS through it runs on bfloat16 rows directly, with no float32 copy of them."""
    raise NotImplementedError("load runs inside numba kernels only")


def store(a, j, value):
    """``a[j] = value``: into a uint16 array the bfloat16 bits nearest the float32 ``value``
    (:func:`f32_to_bf16`); into an int16 array the same bits (the ILIF backward writing
    bfloat16 dL/dx over the kept 16-bit σ code, one pointer for both); into a float array the
    value. Compiled only."""
    raise NotImplementedError("store runs inside numba kernels only")


@overload(load, inline="always")
def _load_overload(a, j):
    if a.dtype == types.uint16:
        return lambda a, j: bf16_to_f32(a[j])
    return lambda a, j: a[j]


@overload(store)  # LLVM inlines it; numba-level inlining warns on its branch
def _store_overload(a, j, value):
    if a.dtype == types.uint16:
        def impl(a, j, value):
            a[j] = f32_to_bf16(value)
        return impl
    if a.dtype == types.int16:
        def impl_bits(a, j, value):
            a[j] = np.int16(f32_to_bf16(value))  # same width: the bits as they are
        return impl_bits

    def impl_float(a, j, value):
        a[j] = value
    return impl_float


@njit(inline="always")
def widen_row(dst, src):
    """``dst[:] = float32(src[:])``: a bfloat16 row (uint16 bits) into a float32 row."""
    for j in range(dst.shape[0]):
        dst[j] = bf16_to_f32(src[j])


@njit(inline="always")
def narrow_row(dst, src):
    """``dst[:] = bfloat16(src[:])``: a float32 row into a bfloat16 row (uint16 bits), rounded
    to nearest even."""
    for j in range(dst.shape[0]):
        dst[j] = f32_to_bf16(src[j])


def store_row(dst, src):
    """``dst[:] = src[:]`` for a result that is not read again soon (the final state): float rows
    with streaming stores (:func:`stream_row`), a bfloat16 ``dst`` (uint16 bits) narrowed from
    the float32 ``src`` (:func:`narrow_row`). Compiled only."""
    raise NotImplementedError("store_row runs inside numba kernels only")


@overload(store_row, inline="always")
def _store_row_overload(dst, src):
    if dst.dtype == types.uint16:
        return lambda dst, src: narrow_row(dst, src)
    return lambda dst, src: stream_row(dst, src)


@njit(cache=True)
def to_bf16_bits(values):
    """The bfloat16 bits of a float32 array (for the tests)."""
    out = np.empty(values.shape[0], np.uint16)
    narrow_row(out, values)
    return out


@njit(cache=True)
def from_bf16_bits(bits):
    """The float32 values of bfloat16 bits (for the tests)."""
    out = np.empty(bits.shape[0], np.float32)
    widen_row(out, bits)
    return out
