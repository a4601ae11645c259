"""ILIF (and LIF: ILIF with both units off) rows of the fused CPU kernels: the forward step, its
rebuild in the backward, and the adjoint steps (docs/performance.md)."""

from __future__ import annotations

import numpy as np
from numba import njit

from ilif.kernels.numba_ops.bf16 import load, store
from ilif.kernels.numba_ops.fastmath import code_zero, sigmoid, store_sigma, unpack_sigma
from ilif.kernels.numba_ops.layout import (
    CIU_GAIN,
    HALF_WIDTH,
    LAMBDA,
    MPIU_GAIN,
    ONE,
    STATS_COUNT,
    STATS_H,
    STATS_NONE,
    THRESHOLD,
    ZERO,
)
from ilif.kernels.numba_ops.llvm import _address, wide_vectors
from ilif.kernels.numba_ops.rows import row, row3
from ilif.kernels.numba_ops.surrogates import (
    _record_stats,
    _rectangle_sum,
    surrogate_row,
    surrogate_sum,
)

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
    the clamp's slope 1[I ≥ 0] packed in to ``sgm`` (:func:`store_sigma`: into the float, or
    the 16-bit code of an int16 ``sgm``), or S and the slope as
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
        xj = load(x, j)
        vj = v[j]
        tr_prev = trace[j] if ciu else zero
        dj = drive[j] if ciu else zero
        mj = memory[j] if mpiu and not rebuild else zero
        code = sgm[j] if mpiu and rebuild else code_zero(sgm)
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
            store(spk, j, s)
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
            s = load(spk, j)
            tr = trace[j] if ciu else zero
            sg = sigmoid(memory[j], one)
            v[j] = v[j] - s * sg
            store_sigma(sgm, j, sg, _flag_bits(s, tr, ciu, zero))
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
def _forward_rows(out_spikes, out_bits, out_sgm, buf, no_out, no_bits, t, lo, m):
    """The output rows of step ``t`` of a chunk: the caller's, or scratch of the same dtype where
    it wants none (an output has T rows or none: ``no_out`` = (spikes, σ), ``no_bits``); and the
    h scratch row ``buf[0]``. The chunk starts at column ``lo``."""
    spk = row(out_spikes, t, lo, m) if out_spikes.shape[0] > t else row(no_out[0], 0, 0, m)
    bits = row(out_bits, t, lo, m) if out_bits.shape[0] > t else row(no_bits, 0, 0, m)
    sgm = row(out_sgm, t, lo, m) if out_sgm.shape[0] > t else row(no_out[1], 0, 0, m)
    return spk, bits, sgm, row(buf, 0, 0, m)


@njit(inline="always", error_model="numpy")
def _ilif_forward_chunk(x, ws, out_spikes, out_bits, out_sgm, buf, no_out, no_bits, stats, c,
                        lo, m, par, ciu, mpiu, stats_mode, surrogate):
    """The forward of one ILIF chunk, all its steps: :func:`ilif_forward_row` per step, from the
    state rows ``ws`` (updated in place); with ``stats_mode`` (a constant) the per-step sums go
    to ``stats[c]``. The chunk starts at column ``lo``."""
    v, trace, memory, drive = row(ws, 0, 0, m), row(ws, 1, 0, m), row(ws, 2, 0, m), row(ws, 3, 0, m)
    for t in range(x.shape[0]):
        spk, bits, sgm, h = _forward_rows(out_spikes, out_bits, out_sgm, buf, no_out, no_bits,
                                          t, lo, m)
        n_spk, n_open = ilif_forward_row(row(x, t, lo, m), v, trace, memory, drive, bits, spk, h,
                                         sgm, par, ciu, mpiu, stats_mode)
        if stats_mode == STATS_COUNT:  # the rectangle: h was not written
            _record_stats(stats, c, t, n_spk, n_open, _rectangle_sum(n_open, par))
        elif stats_mode == STATS_H:
            _record_stats(stats, c, t, n_spk, n_open, surrogate_sum(h, n_open, surrogate, par))


@njit(cache=True, error_model="numpy")
def ilif_forward_chunk_counted(x, ws, out_spikes, out_bits, out_sgm, buf, no_out, no_bits, stats,
                               c, lo, m, par, ciu, mpiu, stats_mode, surrogate):
    """:func:`_ilif_forward_chunk` with the statistics: a function of its own, called once per
    chunk, so that the drivers, which inline the plain loops, stay small enough to compile in
    reasonable time (``benchmarks/kernel_profile.py --only compile``)."""
    wide_vectors()
    if stats_mode == STATS_H:
        _ilif_forward_chunk(x, ws, out_spikes, out_bits, out_sgm, buf, no_out, no_bits, stats,
                            c, lo, m, par, ciu, mpiu, STATS_H, surrogate)
    else:
        _ilif_forward_chunk(x, ws, out_spikes, out_bits, out_sgm, buf, no_out, no_bits, stats,
                            c, lo, m, par, ciu, mpiu, STATS_COUNT, surrogate)


@njit(inline="always", error_model="numpy")
def ilif_rebuild_row(x, v, trace, memory, drive, bits, h, sgm, par, ciu, mpiu):
    """The backward's rebuild of an ILIF step of a row (:func:`_ilif_step_loop`): h into ``h``
    from S in ``bits``, or S and σ(M) packed in ``sgm`` (``mpiu``)."""
    wide_vectors()
    _ilif_step_flags(x, v, trace, memory, drive, bits, x, h, sgm, par, ciu, mpiu, True,
                     STATS_NONE)


@njit(inline="always", error_model="numpy", fastmath={"contract"})
def _ilif_adjoint_loop(xt, bt, sgt, got, gxt, gv, gi, gm, gd, ht, gsur, lam, th, k, kap, zero,
                       one, keep_reset, keep_inh, ciu, mpiu):
    for j in range(xt.shape[0]):
        b = bt[j] if not mpiu else np.uint8(0)
        code = sgt[j] if mpiu else code_zero(sgt)  # σ(M), S and the slope packed
        g_out = load(got, j)
        g_v = gv[j]
        g_sur = gsur[j]
        g_d = gd[j] if ciu else zero
        x_j = load(xt, j) if ciu else zero
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
        store(gxt, j, g_x + g_h)
        gv[j] = lam * g_h
        if ciu:
            gi[j] = k * g_i
            gd[j] = k * g_i


@njit(inline="always", error_model="numpy")
def _ilif_adjoint_flags(xt, bt, sgt, got, gxt, gv, gi, gm, gd, ht, gsur, lam, th, k, kap, zero,
                        one, keep_reset, keep_inh, ciu, mpiu):
    """:func:`_ilif_adjoint_loop` with the runtime flags ``ciu``, ``mpiu`` turned into
    constants."""
    if ciu:
        if mpiu:
            _ilif_adjoint_loop(xt, bt, sgt, got, gxt, gv, gi, gm, gd, ht, gsur, lam, th, k, kap,
                               zero, one, keep_reset, keep_inh, True, True)
        else:
            _ilif_adjoint_loop(xt, bt, sgt, got, gxt, gv, gi, gm, gd, ht, gsur, lam, th, k, kap,
                               zero, one, keep_reset, keep_inh, True, False)
    elif mpiu:
        _ilif_adjoint_loop(xt, bt, sgt, got, gxt, gv, gi, gm, gd, ht, gsur, lam, th, k, kap, zero,
                           one, keep_reset, keep_inh, False, True)
    else:
        _ilif_adjoint_loop(xt, bt, sgt, got, gxt, gv, gi, gm, gd, ht, gsur, lam, th, k, kap, zero,
                           one, keep_reset, keep_inh, False, False)


@njit(cache=True, error_model="numpy", fastmath={"contract"})
def ilif_adjoint_chunk(x, bits, sgm, gout, gx, ga, rec, gsur, no_bits, lo, m, par, code,
                       keep_reset, keep_inh, ciu, mpiu):
    """The adjoint steps of one ILIF chunk backwards in time, from and into the adjoint rows
    ``ga`` (dL/d state_{t−1} from dL/d state_t): per step the step's g(h) from its rebuilt h in
    ``rec[0, t]``, then one branch-free loop per flag set (:func:`_ilif_adjoint_loop`) from h,
    g(h) and the spikes and slopes: packed with σ(M) in ``sgm`` (:func:`store_sigma`) with
    ``mpiu``, else the uint8 ``bits``. ``gx`` receives dL/dx. One call per chunk, not per
    step. The chunk starts at column ``lo`` (bfloat16 rows of ``x``, ``gout`` and ``gx`` are
    read and written through :func:`load` and :func:`store`).
    ``gx`` may be ``sgm``'s memory (dL/dx in place of σ; for bfloat16 over the 16-bit code,
    written as bfloat16 bits through :func:`store` into the int16 row): the step's loop then
    gets σ's row as its dL/dx row, the same pointer, which it reads at each j before it writes
    there (LLVM vectorises that; two pointers to overlapping rows would take its scalar
    loop)."""
    wide_vectors()
    gv, gi, gm, gd = row(ga, 0, 0, m), row(ga, 1, 0, m), row(ga, 2, 0, m), row(ga, 3, 0, m)
    g = row(gsur, 0, 0, m)
    in_place = mpiu and _address(gx) == _address(sgm)
    for t in range(x.shape[0] - 1, -1, -1):
        ht = row3(rec, 0, t, m)
        bt = row(bits, t, lo, m) if bits.shape[0] > t else row(no_bits, 0, 0, m)
        sgt = row(sgm, t, lo, m)
        surrogate_row(g, ht, code, par)
        if in_place:  # the σ row itself receives dL/dx: one pointer, read before written
            _ilif_adjoint_flags(row(x, t, lo, m), bt, sgt, row(gout, t, lo, m), sgt, gv, gi,
                                gm, gd, ht, g, par[LAMBDA], par[THRESHOLD], par[CIU_GAIN],
                                par[MPIU_GAIN], par[ZERO], par[ONE], keep_reset, keep_inh, ciu,
                                mpiu)
        else:
            _ilif_adjoint_flags(row(x, t, lo, m), bt, sgt, row(gout, t, lo, m),
                                row(gx, t, lo, m), gv, gi, gm, gd, ht, g, par[LAMBDA],
                                par[THRESHOLD], par[CIU_GAIN], par[MPIU_GAIN], par[ZERO],
                                par[ONE], keep_reset, keep_inh, ciu, mpiu)
