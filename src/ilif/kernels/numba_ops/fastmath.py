"""Fast math of the fused CPU kernels: e^{−z} as straight-line code, σ, and σ with the spike and
the clamp's slope packed into its spare bits (in the float itself, or in a 16-bit code)."""

from __future__ import annotations

import numpy as np
from numba import njit, types
from numba.extending import overload

from ilif.kernels.numba_ops.llvm import _bits_of_f32, _bits_of_f64, _f32_from_bits, _f64_from_bits

_LOG2E = 1.4426950408889634
# 1.5·2^23 + 127 (float32), 1.5·2^52 + 1023 (float64): adding it rounds a·log2(e) to an integer n
# and leaves n + bias in the low mantissa bits, so that bits << 23 (52) are those of 2^n
_MAGIC_F32 = 12582912.0 + 127.0
_MAGIC_F64 = 6755399441055744.0 + 1023.0



def exp_neg(z):
    """e^{−z} in z's dtype, as straight-line code (LLVM inlines it, and a loop calling it
    vectorises). Its polynomial may use FMA.

    Cody–Waite reduction a = −z = n·ln2 + r, |r| ≤ ln2/2, a polynomial for e^r (float32:
    Cephes' degree-7 minimax, about 1 ulp; float64: degree-13 Taylor, < 1e-17 relative), times
    2^n built from its IEEE bits (n rounded by adding a magic constant, no float-to-integer
    conversion); a is clamped to ±87 (float32) or ±700 (float64). The compiled
    versions are chosen by dtype below; this body is the reference.
    """
    return np.exp(-z)


def _exp_neg_f32(z):
    f = np.float32
    a = min(max(-z, f(-87.0)), f(87.0))
    kf = a * f(_LOG2E) + f(_MAGIC_F32)  # the rounding to an integer n happens in this add
    nf = kf - f(_MAGIC_F32)
    r = (a - nf * f(0.693359375)) - nf * f(-2.12194440e-4)
    p = f(1.9875691500e-4)
    p = p * r + f(1.3981999507e-3)
    p = p * r + f(8.3334519073e-3)
    p = p * r + f(4.1665795894e-2)
    p = p * r + f(1.6666665459e-1)
    p = p * r + f(5.0000001201e-1)
    e = p * (r * r) + r + f(1.0)
    return e * _f32_from_bits(_bits_of_f32(kf) << 23)


def _exp_neg_f64(z):
    a = min(max(-z, -700.0), 700.0)
    kf = a * _LOG2E + _MAGIC_F64  # the rounding to an integer n happens in this add
    nf = kf - _MAGIC_F64
    r = (a - nf * 6.93147180369123816490e-01) - nf * 1.90821492927058770002e-10
    p = 1.0 / 6227020800.0
    p = p * r + 1.0 / 479001600.0
    p = p * r + 1.0 / 39916800.0
    p = p * r + 1.0 / 3628800.0
    p = p * r + 1.0 / 362880.0
    p = p * r + 1.0 / 40320.0
    p = p * r + 1.0 / 5040.0
    p = p * r + 1.0 / 720.0
    p = p * r + 1.0 / 120.0
    p = p * r + 1.0 / 24.0
    p = p * r + 1.0 / 6.0
    p = p * r + 0.5
    p = p * r + 1.0
    e = p * r + 1.0
    return e * _f64_from_bits(_bits_of_f64(kf) << 52)


@overload(exp_neg, jit_options={"error_model": "numpy", "fastmath": {"contract"}})
def _exp_neg_overload(z):
    if z == types.float32:
        return _exp_neg_f32
    if z == types.float64:
        return _exp_neg_f64
    return None


@njit(inline="always", error_model="numpy")
def sigmoid(z, one):
    """σ(z) = 1/(1 + e^{−z}), as torch computes it: e^{−z} rounded to the dtype, then
    1/(1 + e) in the dtype (``one`` is 1 in that dtype)."""
    return one / (one + exp_neg(z))


def pack_sigma(sg, b):
    """σ (0 < σ ≤ 1) with the uint8 ``b``'s bit 0 (the spike S) in the sign bit and its bit 1 (the
    clamp's slope) in the exponent's top bit, which is 0 for every value ≤ 1: σ, S and the slope
    in one value, exactly (:func:`unpack_sigma`). Compiled only (one version per dtype below)."""
    raise NotImplementedError("pack_sigma runs inside numba kernels only")


def unpack_sigma(code):
    """``(σ, S ≠ 0, slope ≠ 0)`` from a value of :func:`pack_sigma`. Compiled only."""
    raise NotImplementedError("unpack_sigma runs inside numba kernels only")


def _sigma_packing(int_type, bits_of, from_bits, width: int):
    """The compiled :func:`pack_sigma` and :func:`unpack_sigma` for a float of ``width`` bits."""
    top = width - 1  # the sign bit
    slope_bit = 1 << (width - 2)  # the exponent's top bit
    sigma_bits = slope_bit - 1

    def pack(sg, b):
        wide = int_type(b)
        return from_bits(bits_of(sg) | ((wide & 1) << top) | ((wide & 2) << (top - 2)))

    def unpack(code):
        bits = bits_of(code)
        return from_bits(bits & sigma_bits), bits < 0, (bits & slope_bit) != 0

    return pack, unpack


_PACKING = {
    types.float32: _sigma_packing(np.int32, _bits_of_f32, _f32_from_bits, 32),
    types.float64: _sigma_packing(np.int64, _bits_of_f64, _f64_from_bits, 64),
}


@overload(pack_sigma, jit_options={"error_model": "numpy"})
def _pack_sigma_overload(sg, b):
    return _PACKING[sg][0] if sg in _PACKING else None


@overload(unpack_sigma, jit_options={"error_model": "numpy"})
def _unpack_sigma_overload(code):
    return _PACKING[code][1] if code in _PACKING else None


# σ in 16 bits (kept for the backward of bfloat16 input): the int16 code holds round(σ·SCALE) in
# bits 0–13, the slope in bit 14 and the spike in bit 15 (the sign bit)
SIGMA16_SCALE = 16383.0


@njit(inline="always")
def _pack_sigma16(sg, b):
    wide = np.int32(b)
    q = np.int32(sg * np.float32(SIGMA16_SCALE) + np.float32(0.5))
    return np.int16(q | ((wide & 2) << 13) | ((wide & 1) << 15))


def _unpack_sigma16(code):
    bits = np.int32(code)
    sg = np.float32(bits & 0x3FFF) * np.float32(1.0 / SIGMA16_SCALE)
    return sg, bits < 0, (bits & 0x4000) != 0


_PACKING[types.int16] = (_pack_sigma16, _unpack_sigma16)


def store_sigma(a, j, sg, b):
    """``a[j]`` = σ ``sg`` with the uint8 flags ``b`` packed in: :func:`pack_sigma` into a float
    array; into an int16 array the 16-bit code (σ rounded to a multiple of 1/16383, within
    3.1e-5; the slope in bit 14, the spike in the sign bit), which :func:`unpack_sigma` reads
    as float32. Compiled only."""
    raise NotImplementedError("store_sigma runs inside numba kernels only")


def code_zero(a):
    """A zero of ``a``'s dtype (for a packed σ that is not read). Compiled only."""
    raise NotImplementedError("code_zero runs inside numba kernels only")


@overload(store_sigma, jit_options={"error_model": "numpy"})
def _store_sigma_overload(a, j, sg, b):
    if a.dtype == types.int16:
        def impl16(a, j, sg, b):
            a[j] = _pack_sigma16(sg, b)
        return impl16

    def impl(a, j, sg, b):
        a[j] = pack_sigma(sg, b)
    return impl


@overload(code_zero, inline="always")
def _code_zero_overload(a):
    if a.dtype == types.int16:
        return lambda a: np.int16(0)
    if a.dtype == types.float32:
        return lambda a: np.float32(0)
    return lambda a: np.float64(0)
