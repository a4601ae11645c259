"""Numba kernels of the fused CPU path: the forward and the BPTT backward of one neuron layer.

Layout: inputs are ``x[T, N]`` (time first, neurons flattened), states ``state[S, N]`` (one row per
state variable). The neurons are cut into chunks (``cfg[CHUNK_LEN]`` neurons each, at most
:data:`CHUNK`); the drivers run a range of chunks without the GIL (the caller splits the
chunks over threads). Inside a chunk the time loop is outermost, and each time step is one fused,
branch-free, vectorisable loop over the chunk's rows (the exponentials of σ are inlined).

Numba specialises on the dtypes only: the neuron kind, its flags, the surrogate code and γ are
runtime arguments (``cfg`` integer array, ``par`` float array), so a γ sweep never recompiles.
Inside a driver every flag set runs its own loop (the flags are compile-time constants there).

Floating-point contraction (FMA) is allowed only in the exponential's polynomial, the adjoint
steps and the statistics (whose float64 sum may also be reassociated); the forward recurrences,
and their recomputation in the backward, keep the eager rounding, operation by operation.

What the backward gets from the forward: for ILIF with the MPIU σ(M) of every step, and for CLIF
σ(C), with the spike packed into its sign bit and ILIF's clamp slope 1[I ≥ 0] into the top bit of
its exponent (:func:`pack_sigma`: exact, as 0 < σ ≤ 1), written into the buffer that the backward
then overwrites with dL/dx; for LIF and ILIF without the MPIU the spikes as uint8 (the slope in
bit 1). Per chunk the backward first rebuilds the other per-step values from ``x``, the initial
state and these (for ILIF the LIF-like recurrence without an exponential; CLIF also recomputes
σ(H/τ)) into scratch rows that stay in the cache, then runs the adjoints backwards in time.
Keeping σ saves its exponential; keeping h as well (4 more bytes per neuron-step, as commit
e47595e did) ran no faster in ``benchmarks/neurons.py``: at two threads the kernels are bound by
memory traffic as much as by arithmetic. A second backward through a retained graph finds the
kept values overwritten, so its caller runs the forward again first. The loops are vectorised
with 512-bit registers where the CPU has them (:func:`wide_vectors`).
"""

from __future__ import annotations

import functools

import numpy as np
from llvmlite import ir
from numba import carray, cfunc, njit, types
from numba.core.errors import TypingError
from numba.extending import intrinsic, overload

CHUNK = 512  # neurons per chunk (the backward's shrinks for very long T: chunk_len)

# cfg: integer configuration of one call
KIND, CIU, MPIU, DETACH_RESET, DETACH_INHIBITION, SURROGATE, WANT_STATS, CHUNK_LEN = range(8)
CFG_SIZE = 8
KIND_ILIF, KIND_CLIF = 0, 1  # LIF is ILIF with both units off (SPEC §2)
RECTANGLE, TRIANGLE, SIGMOID, ATAN = range(4)  # surrogate codes (ilif.surrogate)

# par: float parameters, in the input dtype (so that arithmetic mirrors the eager float32 ops).
# ZERO and ONE are 0 and 1 in that dtype: numba types ``x + 1`` of a float32 x as float64, which
# would turn every loop that uses such a constant into (slower) float64 arithmetic.
LAMBDA, THRESHOLD, CIU_GAIN, MPIU_GAIN, TAU, WIDTH, HALF_WIDTH, PI_OVER_WIDTH, ZERO, ONE = range(10)
PAR_SIZE = 10

# stats[chunk, quantity, t] with the quantities below
STAT_SPIKES, STAT_OPEN, STAT_SURROGATE = range(3)
# what the ILIF forward step adds for the statistics: nothing, the counts, the counts and h
STATS_NONE, STATS_COUNT, STATS_H = range(3)

_LOG2E = 1.4426950408889634
# 1.5·2^23 + 127 (float32), 1.5·2^52 + 1023 (float64): adding it rounds a·log2(e) to an integer n
# and leaves n + bias in the low mantissa bits, so that bits << 23 (52) are those of 2^n
_MAGIC_F32 = 12582912.0 + 127.0
_MAGIC_F64 = 6755399441055744.0 + 1023.0


def chunk_len(n_steps: int, backward: bool) -> int:
    """Neurons per chunk (``benchmarks/kernel_profile.py --only chunks``): a chunk's state rows
    and scratch stay in L1 across its time loop. The backward also keeps up to 3 recomputed rows
    per step, so its chunk shrinks for T > 128 to keep those within about 1 MiB (L2)."""
    if not backward:
        return CHUNK
    return max(256, min(CHUNK, (1 << 20) // (16 * max(1, n_steps)) // 64 * 64))


def _bitcast(from_type: types.Number, to_type: types.Number, llvm_from, llvm_to):
    """An intrinsic: the ``to_type`` with the IEEE bits of a ``from_type`` value. Integers are
    first cut (or widened) to the float's width: numba widens int32 arithmetic to int64."""

    @intrinsic
    def bitcast(typingctx, value):
        if not isinstance(value, (types.Integer, types.Float)):  # pragma: no cover
            return None

        def codegen(context, builder, signature, args):
            cast = context.cast(builder, args[0], signature.args[0], from_type)
            return builder.bitcast(cast, llvm_to)

        return to_type(value), codegen

    return bitcast


_f32_from_bits = _bitcast(types.int32, types.float32, ir.IntType(32), ir.FloatType())
_f64_from_bits = _bitcast(types.int64, types.float64, ir.IntType(64), ir.DoubleType())
_bits_of_f32 = _bitcast(types.float32, types.int32, ir.FloatType(), ir.IntType(32))
_bits_of_f64 = _bitcast(types.float64, types.int64, ir.DoubleType(), ir.IntType(64))


@intrinsic
def wide_vectors(typingctx):
    """Let LLVM vectorise the calling function with the widest registers the CPU has (512-bit
    on AVX-512 machines, where LLVM's default tuning prefers 256 bits): the kernels then issue
    half the instructions. A no-op on CPUs without wider registers."""

    def codegen(context, builder, signature, args):
        # string attributes, which llvmlite's attribute set does not list as known
        set.add(builder.function.attributes, '"prefer-vector-width"="512"')
        set.add(builder.function.attributes, '"min-legal-vector-width"="512"')
        return context.get_dummy_value()

    return types.none(), codegen


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


@njit(inline="always", error_model="numpy")
def _surrogate(hj, par, code):
    """g(h) for the surrogate ``code`` (0 rectangle, 1 triangle, 2 sigmoid, 3 atan) of width
    γ = ``par[WIDTH]`` (SPEC §3); ``code`` is a constant at every call, so the branches fold."""
    zero = par[ZERO]
    one = par[ONE]
    inv = one / par[WIDTH]
    if code == RECTANGLE:
        return inv if abs(hj) < par[HALF_WIDTH] else zero
    if code == TRIANGLE:
        return max(zero, one - abs(hj) * inv) * inv
    if code == SIGMOID:
        four_inv = (one + one + one + one) * inv
        sg = sigmoid(four_inv * hj, one)
        return four_inv * sg * (one - sg)
    q = par[PI_OVER_WIDTH] * hj
    return inv / (one + q * q)


@njit(inline="always", error_model="numpy")
def _surrogate_loop(out, h, par, code):
    for j in range(h.shape[0]):
        out[j] = _surrogate(h[j], par, code)


@njit(cache=True, error_model="numpy")
def surrogate_row(out, h, code, par):
    """out[j] = g(h[j]) for the surrogate ``code`` (:func:`_surrogate`)."""
    wide_vectors()
    if code == RECTANGLE:
        _surrogate_loop(out, h, par, RECTANGLE)
    elif code == TRIANGLE:
        _surrogate_loop(out, h, par, TRIANGLE)
    elif code == SIGMOID:
        _surrogate_loop(out, h, par, SIGMOID)
    else:
        _surrogate_loop(out, h, par, ATAN)


@njit(inline="always", error_model="numpy", fastmath={"reassoc", "contract"})
def _surrogate_sum_loop(h, par, code):
    g_sum = 0.0
    for j in range(h.shape[0]):
        g_sum += np.float64(_surrogate(h[j], par, code))
    return g_sum


@njit(inline="always", error_model="numpy")
def _rectangle_sum(n_open, par):
    """Σ g(h) of the rectangle over a row with ``n_open`` open steps: g is 1/γ on them and 0
    elsewhere, so the sum is n_open·(1/γ), exactly in float64 (it needs at most 24 + log2(n) of
    its 53 bits), without reading h."""
    return n_open * np.float64(par[ONE] / par[WIDTH])


@njit(cache=True, error_model="numpy", fastmath={"reassoc", "contract"})
def surrogate_sum(h, n_open, code, par):
    """Σ g(h) over a row in float64, reassociated (so that it vectorises); the rectangle's from
    the open count (:func:`_rectangle_sum`)."""
    wide_vectors()
    if code == RECTANGLE:
        return _rectangle_sum(n_open, par)
    if code == TRIANGLE:
        return _surrogate_sum_loop(h, par, TRIANGLE)
    if code == SIGMOID:
        return _surrogate_sum_loop(h, par, SIGMOID)
    return _surrogate_sum_loop(h, par, ATAN)


@njit(inline="always", error_model="numpy")
def _record_stats(stats, c, t, n_spk, n_open, g_sum):
    stats[c, STAT_SPIKES, t] = n_spk
    stats[c, STAT_OPEN, t] = n_open
    stats[c, STAT_SURROGATE, t] = g_sum


@njit(cache=True, error_model="numpy", fastmath={"reassoc", "contract"})
def accumulate_stats(stats, c, t, h, s, code, par):
    """Per-step sums of one chunk: spikes, gradient-open steps (|h| < γ/2, in h's dtype), and
    g(h) (:func:`surrogate_sum`). The ILIF forward counts in its step loop instead."""
    wide_vectors()
    half = par[HALF_WIDTH]
    n_spk = 0
    n_open = 0
    for j in range(h.shape[0]):
        n_spk += 1 if s[j] != 0 else 0
        n_open += 1 if abs(h[j]) < half else 0
    _record_stats(stats, c, t, n_spk, n_open, surrogate_sum(h, n_open, code, par))


# The loops below take one 1-D C-contiguous row per quantity (``x[t, lo:hi]``, ``state[k, lo:hi]``,
# scratch rows, cut by :func:`row`), all distinct: numba types 2-D slices as non-contiguous and
# LLVM cannot vectorise loops over aliased rows, so both would fall back to scalar code.


# ----------------------------------------------------------------------------------- ILIF / LIF
# The row functions are inlined into their callers (the drivers and the chunk functions), so that
# no call with a dozen array arguments is made per row and step; a caller must compile with
# error_model="numpy", as the drivers do: with Python's error model every division gets a zero
# check and the loops stop vectorising.
#
# Every row loop below reads all its inputs before it writes anything: a load that follows a
# store to an address 4 KiB apart (rows of equal length, page-aligned buffers) waits for it (4K
# aliasing); with the loads first no load follows a store of the same iteration.


@njit(inline="always", error_model="numpy")
def _ilif_step_loop(x, v, trace, memory, drive, bits, spk, h, sgm, par, ciu, mpiu, rebuild,
                    stats):
    """One ILIF step over a row of neurons, in place on the state rows (SPEC §2)::

    I = k·(I + D) ;  H = λ·v + x − max(I, 0) ;  h = H − θ ;  S = Θ(h) ;  U = H − S·θ
    M = κ·(M + S·U) ;  v = U − S·σ(M) ;  D = x·S

    The operation order mirrors the eager float ops so that the spikes are identical. The
    forward decides S and writes it to ``spk`` (dtype), and either, with ``mpiu``, σ(M) with S and
    the clamp's slope 1[I ≥ 0] packed in to ``sgm`` (:func:`pack_sigma`), or S and the slope as
    the uint8 ``bits`` (bit 0, bit 1). With ``stats`` (:data:`STATS_COUNT`, :data:`STATS_H`) it
    returns the row's spike count and gradient-open count (|h| < γ/2), else (0, 0); h goes to
    ``h`` only with :data:`STATS_H` (a surrogate sum that needs it).
    ``rebuild`` (the backward) reads S, and σ(M) with ``mpiu``, from the same place instead, and
    writes h; M itself is then not needed. The flags are compile-time constants at every call, so
    each combination gets its own branch-free loop.
    """
    lam = par[LAMBDA]
    th = par[THRESHOLD]
    k = par[CIU_GAIN]
    kap = par[MPIU_GAIN]
    zero = par[ZERO]
    one = par[ONE]
    half = par[HALF_WIDTH]
    n_spk = 0
    n_open = 0
    for j in range(x.shape[0]):
        xj = x[j]
        vj = v[j]
        tr_prev = trace[j] if ciu else zero
        dj = drive[j] if ciu else zero
        mj = memory[j] if mpiu and not rebuild else zero
        code = sgm[j] if mpiu and rebuild else zero
        bj = bits[j] if rebuild and not mpiu else np.uint8(0)
        hm = lam * vj + xj
        tr = k * (tr_prev + dj)
        if ciu:
            hm = hm - max(tr, zero)
        hh = hm - th
        if not rebuild:
            spiked = hh >= zero
        elif mpiu:
            sg_kept, spiked, _ = unpack_sigma(code)
        else:
            spiked, _ = _unpack_flags(bj)
        s = one if spiked else zero
        uu = hm - s * th
        if ciu:
            trace[j] = tr
        if rebuild or stats == STATS_H:
            h[j] = hh
        if stats != STATS_NONE:
            n_spk += 1 if spiked else 0
            n_open += 1 if abs(hh) < half else 0
        if not rebuild:
            spk[j] = s
            if not mpiu:
                bits[j] = _flag_bits(s, tr, ciu, zero)
        if rebuild and mpiu:
            v[j] = uu - s * sg_kept
        else:
            if mpiu:  # v = U − S·σ(M) follows in the loop below
                memory[j] = kap * (mj + s * uu)
            v[j] = uu
        if ciu:
            drive[j] = xj * s
    if mpiu and not rebuild:
        # σ(M) in a loop of its own: the exponential's long dependency chain vectorises and
        # overlaps better alone than inside the step's loop; S and I are read back from their
        # rows (a uint8 row passing them on cost more)
        for j in range(x.shape[0]):
            s = spk[j]
            tr = trace[j] if ciu else zero
            sg = sigmoid(memory[j], one)
            v[j] = v[j] - s * sg
            sgm[j] = pack_sigma(sg, _flag_bits(s, tr, ciu, zero))
    return n_spk, n_open


@njit(inline="always", error_model="numpy")
def _flag_bits(s, tr, ciu, zero):
    """The uint8 flags of a neuron-step: bit 0 the spike ``s`` (0 or 1), bit 1 the clamp's slope
    1[I ≥ 0] (with ``ciu``)."""
    spiked = np.uint8(1) if s != zero else np.uint8(0)
    if ciu:
        return spiked | (np.uint8(2) if tr >= zero else np.uint8(0))
    return spiked


@njit(inline="always", error_model="numpy")
def _unpack_flags(b):
    """``(S ≠ 0, slope ≠ 0)`` from the uint8 flags of :func:`_flag_bits`."""
    return (b & np.uint8(1)) != 0, (b & np.uint8(2)) != 0


@njit(inline="always", error_model="numpy")
def _ilif_step_flags(x, v, trace, memory, drive, bits, spk, h, sgm, par, ciu, mpiu, rebuild,
                     stats):
    """:func:`_ilif_step_loop` with the runtime flags ``ciu``, ``mpiu`` turned into constants."""
    if ciu:
        if mpiu:
            return _ilif_step_loop(x, v, trace, memory, drive, bits, spk, h, sgm, par, True,
                                   True, rebuild, stats)
        return _ilif_step_loop(x, v, trace, memory, drive, bits, spk, h, sgm, par, True, False,
                               rebuild, stats)
    if mpiu:
        return _ilif_step_loop(x, v, trace, memory, drive, bits, spk, h, sgm, par, False, True,
                               rebuild, stats)
    return _ilif_step_loop(x, v, trace, memory, drive, bits, spk, h, sgm, par, False, False,
                           rebuild, stats)


@njit(inline="always", error_model="numpy")
def ilif_forward_row(x, v, trace, memory, drive, bits, spk, h, sgm, par, ciu, mpiu, stats):
    """The forward ILIF step of a row (:func:`_ilif_step_loop`); returns (spike count, open
    count) with ``stats`` (a constant)."""
    wide_vectors()
    return _ilif_step_flags(x, v, trace, memory, drive, bits, spk, h, sgm, par, ciu, mpiu, False,
                            stats)


@njit(inline="always", error_model="numpy")
def _forward_rows(out_spikes, out_bits, out_sgm, buf, no_bits, t, lo, m):
    """The output rows of step ``t`` of a chunk: the caller's, or scratch where it wants none
    (an output has T rows or none); and the h scratch row."""
    spk = row(out_spikes, t, lo, m) if out_spikes.shape[0] > t else row(buf, 2, 0, m)
    bits = row(out_bits, t, lo, m) if out_bits.shape[0] > t else row(no_bits, 0, 0, m)
    sgm = row(out_sgm, t, lo, m) if out_sgm.shape[0] > t else row(buf, 1, 0, m)
    return spk, bits, sgm, row(buf, 0, 0, m)


@njit(inline="always", error_model="numpy")
def _ilif_forward_chunk(x, ws, out_spikes, out_bits, out_sgm, buf, no_bits, stats, c, lo, m, par,
                        ciu, mpiu, stats_mode, surrogate):
    """The forward of one ILIF chunk, all its steps: :func:`ilif_forward_row` per step, from the
    state rows ``ws`` (updated in place); with ``stats_mode`` (a constant) the per-step sums go
    to ``stats[c]``."""
    v, trace, memory, drive = row(ws, 0, 0, m), row(ws, 1, 0, m), row(ws, 2, 0, m), row(ws, 3, 0, m)
    for t in range(x.shape[0]):
        spk, bits, sgm, h = _forward_rows(out_spikes, out_bits, out_sgm, buf, no_bits, t, lo, m)
        n_spk, n_open = ilif_forward_row(row(x, t, lo, m), v, trace, memory, drive, bits, spk, h,
                                         sgm, par, ciu, mpiu, stats_mode)
        if stats_mode == STATS_COUNT:  # the rectangle: h was not written
            _record_stats(stats, c, t, n_spk, n_open, _rectangle_sum(n_open, par))
        elif stats_mode == STATS_H:
            _record_stats(stats, c, t, n_spk, n_open, surrogate_sum(h, n_open, surrogate, par))


@njit(cache=True, error_model="numpy")
def ilif_forward_chunk_counted(x, ws, out_spikes, out_bits, out_sgm, buf, no_bits, stats, c, lo,
                               m, par, ciu, mpiu, stats_mode, surrogate):
    """:func:`_ilif_forward_chunk` with the statistics: a function of its own, called once per
    chunk, so that the drivers, which inline the plain loops, stay small enough to compile in
    reasonable time (``benchmarks/kernel_profile.py --only compile``)."""
    wide_vectors()
    if stats_mode == STATS_H:
        _ilif_forward_chunk(x, ws, out_spikes, out_bits, out_sgm, buf, no_bits, stats, c, lo, m,
                            par, ciu, mpiu, STATS_H, surrogate)
    else:
        _ilif_forward_chunk(x, ws, out_spikes, out_bits, out_sgm, buf, no_bits, stats, c, lo, m,
                            par, ciu, mpiu, STATS_COUNT, surrogate)


@njit(inline="always", error_model="numpy")
def ilif_rebuild_row(x, v, trace, memory, drive, bits, h, sgm, par, ciu, mpiu):
    """The backward's rebuild of an ILIF step of a row (:func:`_ilif_step_loop`): h into ``h``
    from S in ``bits``, or S and σ(M) packed in ``sgm`` (``mpiu``)."""
    wide_vectors()
    _ilif_step_flags(x, v, trace, memory, drive, bits, x, h, sgm, par, ciu, mpiu, True,
                     STATS_NONE)


@njit(inline="always", error_model="numpy", fastmath={"contract"})
def _ilif_adjoint_loop(xt, bt, got, gxt, gv, gi, gm, gd, ht, gsur, lam, th, k, kap, zero, one,
                       keep_reset, keep_inh, ciu, mpiu):
    for j in range(xt.shape[0]):
        b = bt[j] if not mpiu else np.uint8(0)
        code = gxt[j] if mpiu else zero  # σ(M), S, slope packed; overwritten by dL/dx below
        g_out = got[j]
        g_v = gv[j]
        g_sur = gsur[j]
        g_d = gd[j] if ciu else zero
        x_j = xt[j] if ciu else zero
        g_i_next = gi[j] if ciu else zero
        h_j = ht[j] if mpiu else zero
        g_m_next = gm[j] if mpiu else zero
        if mpiu:
            sg, spiked, sloped = unpack_sigma(code)
        else:
            sg = zero
            spiked, sloped = _unpack_flags(b)
        s = one if spiked else zero
        g_s = g_out
        g_x = zero
        if ciu:
            g_x += g_d * s
            g_s += g_d * x_j
        g_u = g_v
        g_m = zero
        if mpiu:
            uu = (h_j + th) - s * th  # U = H − S·θ with H = h + θ
            g_s -= g_v * sg
            g_m = g_m_next - keep_inh * g_v * s * sg * (one - sg)
            g_s += kap * g_m * uu
            g_u += kap * g_m * s
        g_s -= keep_reset * g_u * th
        g_h = g_u + g_s * g_sur
        slope = one if sloped else zero
        g_i = g_i_next - keep_inh * g_h * slope
        if mpiu:
            gm[j] = kap * g_m
        gxt[j] = g_x + g_h
        gv[j] = lam * g_h
        if ciu:
            gi[j] = k * g_i
            gd[j] = k * g_i


@njit(inline="always", error_model="numpy")
def _ilif_adjoint_flags(xt, bt, got, gxt, gv, gi, gm, gd, ht, gsur, lam, th, k, kap, zero, one,
                        keep_reset, keep_inh, ciu, mpiu):
    """:func:`_ilif_adjoint_loop` with the runtime flags ``ciu``, ``mpiu`` turned into
    constants."""
    if ciu:
        if mpiu:
            _ilif_adjoint_loop(xt, bt, got, gxt, gv, gi, gm, gd, ht, gsur, lam, th, k, kap, zero,
                               one, keep_reset, keep_inh, True, True)
        else:
            _ilif_adjoint_loop(xt, bt, got, gxt, gv, gi, gm, gd, ht, gsur, lam, th, k, kap, zero,
                               one, keep_reset, keep_inh, True, False)
    elif mpiu:
        _ilif_adjoint_loop(xt, bt, got, gxt, gv, gi, gm, gd, ht, gsur, lam, th, k, kap, zero, one,
                           keep_reset, keep_inh, False, True)
    else:
        _ilif_adjoint_loop(xt, bt, got, gxt, gv, gi, gm, gd, ht, gsur, lam, th, k, kap, zero, one,
                           keep_reset, keep_inh, False, False)


@njit(cache=True, error_model="numpy", fastmath={"contract"})
def ilif_adjoint_chunk(x, bits, gout, gx, ga, rec, gsur, no_bits, lo, m, par, code, keep_reset,
                       keep_inh, ciu, mpiu):
    """The adjoint steps of one ILIF chunk backwards in time, from and into the adjoint rows
    ``ga`` (dL/d state_{t−1} from dL/d state_t): per step the step's g(h) from its rebuilt h in
    ``rec[0, t]``, then one branch-free loop per flag set (:func:`_ilif_adjoint_loop`) from h,
    g(h) and the spikes and slopes: packed with σ(M) in ``gx`` (:func:`pack_sigma`) with
    ``mpiu``, else the uint8 ``bits``. ``gx`` receives dL/dx in every case. One call per chunk,
    not per step."""
    wide_vectors()
    gv, gi, gm, gd = row(ga, 0, 0, m), row(ga, 1, 0, m), row(ga, 2, 0, m), row(ga, 3, 0, m)
    g = row(gsur, 0, 0, m)
    for t in range(x.shape[0] - 1, -1, -1):
        ht = row3(rec, 0, t, m)
        bt = row(bits, t, lo, m) if bits.shape[0] > t else row(no_bits, 0, 0, m)
        surrogate_row(g, ht, code, par)
        _ilif_adjoint_flags(row(x, t, lo, m), bt, row(gout, t, lo, m), row(gx, t, lo, m), gv, gi,
                            gm, gd, ht, g, par[LAMBDA], par[THRESHOLD], par[CIU_GAIN],
                            par[MPIU_GAIN], par[ZERO], par[ONE], keep_reset, keep_inh, ciu, mpiu)


# ------------------------------------------------------------------------------------------ CLIF
@njit(inline="always", error_model="numpy")
def _clif_step_loop(x, v, cmem, spk, h, g_sh, g_sc, g_cprev, par, rebuild):
    """One CLIF step over a row of neurons, in place on ``v`` and ``cmem`` (SPEC §2)::

    H = λ·v + x ;  C' = C·σ(H/τ) ;  h = H − θ ;  S = Θ(h) ;  C = C' + S ;  v = H − S·(θ + σ(C))

    ``h`` receives h. The forward decides S, writes it to ``spk`` and σ(C) with S packed in
    (:func:`pack_sigma`) to ``g_sc``; ``rebuild`` (the backward) reads both from ``g_sc`` and
    stores σ(H/τ) and C before the step in ``g_sh``, ``g_cprev``.
    """
    lam = par[LAMBDA]
    th = par[THRESHOLD]
    tau = par[TAU]
    zero = par[ZERO]
    one = par[ONE]
    for j in range(x.shape[0]):
        xj = x[j]
        vj = v[j]
        c_prev = cmem[j]
        code = g_sc[j] if rebuild else zero
        hm = lam * vj + xj
        sh = sigmoid(hm / tau, one)
        hh = hm - th
        if rebuild:
            sc, spiked, _ = unpack_sigma(code)
            s = one if spiked else zero
        else:
            s = one if hh >= zero else zero
        c = c_prev * sh + s
        if not rebuild:
            sc = sigmoid(c, one)
        h[j] = hh
        cmem[j] = c
        if rebuild:
            g_sh[j] = sh
            g_cprev[j] = c_prev
        else:
            spk[j] = s
            g_sc[j] = pack_sigma(sc, np.uint8(1) if hh >= zero else np.uint8(0))
        v[j] = hm - s * (th + sc)


@njit(inline="always", error_model="numpy")
def clif_forward_row(x, v, cmem, spk, h, sc, par):
    """The forward CLIF step of a row (:func:`_clif_step_loop`)."""
    wide_vectors()
    _clif_step_loop(x, v, cmem, spk, h, h, sc, h, par, False)


@njit(inline="always", error_model="numpy")
def clif_rebuild_row(x, v, cmem, h, g_sh, g_sc, g_cprev, par):
    """The backward's rebuild of a CLIF step of a row (:func:`_clif_step_loop`)."""
    wide_vectors()
    _clif_step_loop(x, v, cmem, x, h, g_sh, g_sc, g_cprev, par, True)


@njit(cache=True, error_model="numpy", fastmath={"contract"})
def clif_backward_step(got, gxt, gv, gc, sht, cpt, gsur, lam, th, tau, zero, one, keep_reset):
    """The adjoint of :func:`_clif_step_loop` for one step; ``gxt`` holds σ(C) with S packed in
    on entry and receives dL/dx."""
    wide_vectors()
    for j in range(gxt.shape[0]):
        s_c, spiked, _ = unpack_sigma(gxt[j])
        s = one if spiked else zero
        s_h = sht[j]
        g_v = gv[j]
        g_s = got[j] - keep_reset * g_v * (th + s_c)
        g_c = gc[j] - g_v * s * s_c * (one - s_c)
        g_s += g_c
        g_h = g_v + g_s * gsur[j]
        g_h += g_c * cpt[j] * s_h * (one - s_h) / tau
        gc[j] = g_c * s_h
        gxt[j] = g_h
        gv[j] = lam * g_h


# ------------------------------------------------------------------- row views, streaming stores
@intrinsic
def _pointer(typingctx, address):
    """The ``void*`` at an integer address."""

    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], ir.IntType(8).as_pointer())

    return types.voidptr(types.int64), codegen


@intrinsic
def _address(typingctx, array):
    """The address of ``array``'s first element."""

    def codegen(context, builder, signature, args):
        arr = context.make_array(signature.args[0])(context, builder, value=args[0])
        return builder.ptrtoint(arr.data, ir.IntType(64))

    return types.int64(array), codegen


@intrinsic
def _stream_line(typingctx, dst, j, src, k):
    """``dst[j:j + L] = src[k:k + L]`` for the L elements of one 64-byte line, with a streaming
    (non-temporal) store: ``dst[j]`` must be 64-byte aligned."""
    if not (isinstance(dst, types.Array) and isinstance(src, types.Array)
            and dst.dtype == src.dtype):  # pragma: no cover
        return None

    def codegen(context, builder, signature, args):
        elem = context.get_data_type(signature.args[0].dtype)
        line = ir.VectorType(elem, 64 // context.get_abi_sizeof(elem))
        out = context.make_array(signature.args[0])(context, builder, value=args[0])
        inp = context.make_array(signature.args[2])(context, builder, value=args[2])
        value = builder.load(builder.bitcast(builder.gep(inp.data, [args[3]]), line.as_pointer()),
                             align=context.get_abi_sizeof(elem))
        store = builder.store(value, builder.bitcast(builder.gep(out.data, [args[1]]),
                                                     line.as_pointer()), align=64)
        store.set_metadata("nontemporal",
                           builder.module.add_metadata([ir.Constant(ir.IntType(32), 1)]))
        return context.get_dummy_value()

    return types.none(dst, types.intp, src, types.intp), codegen


@intrinsic
def _store_fence(typingctx):
    """A full memory fence: the streaming stores before it are visible to every thread after
    it (they are weakly ordered)."""

    def codegen(context, builder, signature, args):
        builder.fence("seq_cst")
        return context.get_dummy_value()

    return types.none(), codegen


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


@njit(nogil=True, cache=True, error_model="numpy")
def forward(x, state0, out_spikes, out_bits, out_sgm, out_state, par, cfg, stats, c0, c1):
    """Fused forward over the chunks [c0, c1) of ``x[T, N]`` from ``state0[S, N]`` (an empty
    ``state0[S, 0]`` stands for the all-zero state, which is then not read).

    Writes, each output only when it has T rows: the spikes (input dtype) into ``out_spikes``,
    the uint8 spikes into ``out_bits``, and into ``out_sgm`` (the buffer that the backward turns
    into dL/dx) ILIF's σ(M) with the spikes packed in (:func:`pack_sigma`) or CLIF's σ(C); then
    the final state ``out_state[S, N]`` and, when ``cfg[WANT_STATS]``, per-chunk sums
    ``stats[chunk, 3, T]``.
    """
    wide_vectors()
    n_steps, n = x.shape
    n_state = out_state.shape[0]
    zero0 = state0.shape[1] == 0
    kind = cfg[KIND]
    ciu = cfg[CIU] != 0
    mpiu = cfg[MPIU] != 0
    ch = cfg[CHUNK_LEN]
    want_stats = cfg[WANT_STATS] != 0
    code = cfg[SURROGATE]
    # the rectangle's Σ g(h) follows from the open count; the other surrogates need h
    stats_mode = STATS_NONE if not want_stats else STATS_COUNT if code == RECTANGLE else STATS_H
    ws = np.zeros((4, ch), x.dtype)  # working state (v, I|C, M, D); unused rows stay 0
    buf = np.empty((3, ch), x.dtype)  # h, σ and the spikes when the caller wants none
    no_bits = np.empty(ch, np.uint8)  # the uint8 spikes when the caller wants none
    for c in range(c0, c1):
        lo = c * ch
        hi = min(n, lo + ch)
        m = hi - lo
        _load_rows(ws, state0, zero0, lo, m)
        if kind == KIND_ILIF and stats_mode == STATS_NONE:
            _ilif_forward_chunk(x, ws, out_spikes, out_bits, out_sgm, buf, no_bits, stats, c, lo,
                                m, par, ciu, mpiu, STATS_NONE, code)
        elif kind == KIND_ILIF:
            ilif_forward_chunk_counted(x, ws, out_spikes, out_bits, out_sgm, buf, no_bits, stats,
                                       c, lo, m, par, ciu, mpiu, stats_mode, code)
        else:
            for t in range(n_steps):
                spk, _, sgm, h = _forward_rows(out_spikes, out_bits, out_sgm, buf, no_bits, t,
                                                  lo, m)
                clif_forward_row(row(x, t, lo, m), row(ws, 0, 0, m), row(ws, 1, 0, m), spk, h,
                                 sgm, par)
                if want_stats:
                    accumulate_stats(stats, c, t, h, spk, code, par)
        for kk in range(n_state):  # not read again in this call
            stream_row(row(out_state, kk, lo, m), row(ws, kk, 0, m))
    _store_fence()


@njit(nogil=True, cache=True, error_model="numpy")
def backward(x, bits, gout, state0, adj, gx, par, cfg, c0, c1):
    """Fused BPTT of :func:`forward`: writes ``gx[T, N]`` = dL/dx and turns ``adj[S, N]`` from
    dL/d(final state) into dL/d(initial state) in place (an empty ``adj[S, 0]`` stands for a zero
    dL/d(final state) when dL/d(initial state) is not wanted).

    Per chunk, the forward is first rebuilt from ``x``, the initial state (an empty
    ``state0[S, 0]`` stands for the all-zero state) and what the forward kept into chunk scratch
    (which stays in the cache); then the adjoints run backwards in time. ILIF with the MPIU and
    CLIF read their σ(M) resp. σ(C) with the spikes packed in from ``gx`` (the forward's
    ``out_sgm``): the rebuild has no exponential of the MPIU left. LIF and ILIF without the MPIU
    read the uint8 ``bits``.
    """
    wide_vectors()
    n_steps, n = x.shape
    n_state = adj.shape[0]
    zero0 = state0.shape[1] == 0
    want_adj = adj.shape[1] != 0
    kind = cfg[KIND]
    ciu = cfg[CIU] != 0
    mpiu = cfg[MPIU] != 0
    code = cfg[SURROGATE]
    ch = cfg[CHUNK_LEN]
    lam = par[LAMBDA]
    th = par[THRESHOLD]
    zero = par[ZERO]
    one = par[ONE]
    keep_reset = zero if cfg[DETACH_RESET] else one
    keep_inh = zero if cfg[DETACH_INHIBITION] else one
    ws = np.zeros((4, ch), x.dtype)  # working state of the recomputation
    ga = np.zeros((4, ch), x.dtype)  # adjoints of the state
    # recomputed per-step values: ILIF h; CLIF g(h), σ(H/τ) and C before the step
    rec = np.empty((1 if kind == KIND_ILIF else 3, n_steps, ch), x.dtype)
    h = np.empty(ch, x.dtype)
    gsur = np.empty(ch, x.dtype)
    has_bits = bits.shape[0] == n_steps
    no_bits = np.zeros(ch, np.uint8)  # ILIF with the MPIU: the spikes are packed in gx
    for c in range(c0, c1):
        lo = c * ch
        hi = min(n, lo + ch)
        m = hi - lo
        _load_rows(ws, state0, zero0, lo, m)
        _load_rows(ga, adj, not want_adj, lo, m)
        v, trace, memory, drive = (row(ws, 0, 0, m), row(ws, 1, 0, m), row(ws, 2, 0, m),
                                   row(ws, 3, 0, m))  # CLIF: v and C
        if kind == KIND_ILIF:
            for t in range(n_steps):
                bt = row(bits, t, lo, m) if has_bits else row(no_bits, 0, 0, m)
                ilif_rebuild_row(row(x, t, lo, m), v, trace, memory, drive, bt,
                                 row3(rec, 0, t, m), row(gx, t, lo, m), par, ciu, mpiu)
            ilif_adjoint_chunk(x, bits, gout, gx, ga, rec, gsur, no_bits, lo, m, par, code,
                               keep_reset, keep_inh, ciu, mpiu)
        else:
            hc = row(h, 0, 0, m)
            for t in range(n_steps):
                clif_rebuild_row(row(x, t, lo, m), v, trace, hc, row3(rec, 1, t, m),
                                 row(gx, t, lo, m), row3(rec, 2, t, m), par)
                surrogate_row(row3(rec, 0, t, m), hc, code, par)
            for t in range(n_steps - 1, -1, -1):
                clif_backward_step(row(gout, t, lo, m), row(gx, t, lo, m), row(ga, 0, 0, m),
                                   row(ga, 1, 0, m), row3(rec, 1, t, m), row3(rec, 2, t, m),
                                   row3(rec, 0, t, m), lam, th, par[TAU], zero, one, keep_reset)
        if want_adj:
            for kk in range(n_state):
                copy_row(row(adj, kk, lo, m), row(ga, kk, 0, m))


# ------------------------------------------------------------------------ OpenMP launch bodies
# meta[0]: the next chunk (shared counter); meta[1]: chunks; meta[2]: threads; then per array
# its address and (up to 3) dimensions
COUNTER, N_CHUNKS, N_THREADS, HEADER = 0, 1, 2, 3
PER_ARRAY = 4


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


@functools.cache
def omp_bodies(dtype: np.dtype) -> dict:
    """The ``cfunc`` bodies that :mod:`ilif.kernels._omp` launches on torch's OpenMP threads:
    the forward and backward drivers for one float dtype, compiled (or loaded from numba's cache)
    on first use. They are defined in this file because numba invalidates a cached function only
    when its own file changes, not when a function it calls does."""
    f = types.float32 if dtype == np.float32 else types.float64
    u8, i64, f64 = types.uint8, types.int64, types.float64

    @cfunc(types.void(types.voidptr), nopython=True, error_model="numpy", cache=True)
    def forward_body(data):
        meta = carray(data, (HEADER + PER_ARRAY * 9,), i64)
        x, state0 = array_at(meta, 0, 2, f), array_at(meta, 1, 2, f)
        spikes, bits = array_at(meta, 2, 2, f), array_at(meta, 3, 2, u8)
        sgm, final = array_at(meta, 4, 2, f), array_at(meta, 5, 2, f)
        par, cfg = array_at(meta, 6, 1, f), array_at(meta, 7, 1, i64)
        stats = array_at(meta, 8, 3, f64)
        while True:
            c0, c1 = next_block(meta)
            if c0 >= c1:
                return
            forward(x, state0, spikes, bits, sgm, final, par, cfg, stats, c0, c1)

    @cfunc(types.void(types.voidptr), nopython=True, error_model="numpy", cache=True)
    def backward_body(data):
        meta = carray(data, (HEADER + PER_ARRAY * 8,), i64)
        x, bits, gout = array_at(meta, 0, 2, f), array_at(meta, 1, 2, u8), array_at(meta, 2, 2, f)
        state0, adj = array_at(meta, 3, 2, f), array_at(meta, 4, 2, f)
        gx = array_at(meta, 5, 2, f)
        par, cfg = array_at(meta, 6, 1, f), array_at(meta, 7, 1, i64)
        while True:
            c0, c1 = next_block(meta)
            if c0 >= c1:
                return
            backward(x, bits, gout, state0, adj, gx, par, cfg, c0, c1)

    return {"forward": forward_body, "backward": backward_body}
