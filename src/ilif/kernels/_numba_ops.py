"""Numba kernels of the fused CPU path: the forward and the BPTT backward of one neuron layer.

Layout: inputs are ``x[T, N]`` (time first, neurons flattened), states ``state[S, N]`` (one row per
state variable). The neurons are cut into chunks of :data:`CHUNK`; the drivers run a range of
chunks without the GIL (the caller splits the chunks over threads). Inside a chunk the time loop
is outermost, so that each step is a few short vectorisable loops over L1-resident rows.

Numba specialises on the dtypes only: the neuron kind, its flags, the surrogate code and γ are
runtime arguments (``cfg`` integer array, ``par`` float array), so a γ sweep never recompiles.

Floating-point contraction (FMA) is allowed only inside ``exp_neg_row``, the adjoint steps and the
statistics (whose float64 sum may also be reassociated); the forward recurrences keep the eager
rounding, operation by operation.

The backward receives the spikes of the forward (uint8) and recomputes the other per-step values
(H, U, σ(M), I; CLIF: H, C, σ(H/τ), σ(C)) chunk by chunk from ``x`` and the initial state, so the
forward keeps one byte per neuron-step for the backward.
"""

from __future__ import annotations

import numpy as np
from numba import njit, types
from numba.extending import overload

CHUNK = 1024

# cfg: integer configuration of one call
KIND, CIU, MPIU, DETACH_RESET, DETACH_INHIBITION, SURROGATE, WANT_STATS = range(7)
CFG_SIZE = 7
KIND_ILIF, KIND_CLIF = 0, 1  # LIF is ILIF with both units off (SPEC §2)

# par: float parameters, in the input dtype (so that arithmetic mirrors the eager float32 ops).
# ZERO and ONE are 0 and 1 in that dtype: numba types ``x + 1`` of a float32 x as float64, which
# would turn every loop that uses such a constant into (slower) float64 arithmetic.
LAMBDA, THRESHOLD, CIU_GAIN, MPIU_GAIN, TAU, WIDTH, HALF_WIDTH, PI_OVER_WIDTH, ZERO, ONE = range(10)
PAR_SIZE = 10

# stats[chunk, quantity, t] with the quantities below
STAT_SPIKES, STAT_OPEN, STAT_SURROGATE = range(3)

_LOG2E = 1.4426950408889634


def exp_neg_row(z, out, ibuf):
    """out[j] = e^{−z[j]} for a row, in the row's dtype, with vectorisable loops.

    Cody–Waite reduction a = −z = n·ln2 + r, |r| ≤ ln2/2, a polynomial for e^r (float32:
    Cephes' degree-7 minimax, about 1 ulp; float64: degree-13 Taylor, < 1e-17 relative), and
    2^n built as IEEE bits in the integer row ``ibuf`` (int32 for float32, int64 for float64)
    read back through a float view; a is clamped to ±87 (float32) or ±700 (float64).
    The compiled versions are chosen by dtype below; this body is the reference.
    """
    out[:] = np.exp(-z)


def _exp_neg_row_f32(z, out, ibuf):
    f = np.float32
    for j in range(z.shape[0]):
        a = min(max(-z[j], f(-87.0)), f(87.0))
        nf = np.floor(a * f(_LOG2E) + f(0.5))
        r = (a - nf * f(0.693359375)) - nf * f(-2.12194440e-4)
        p = f(1.9875691500e-4)
        p = p * r + f(1.3981999507e-3)
        p = p * r + f(8.3334519073e-3)
        p = p * r + f(4.1665795894e-2)
        p = p * r + f(1.6666665459e-1)
        p = p * r + f(5.0000001201e-1)
        out[j] = p * (r * r) + r + f(1.0)
        ibuf[j] = (np.int32(nf) + np.int32(127)) << np.int32(23)
    two_n = ibuf.view(np.float32)
    for j in range(z.shape[0]):
        out[j] = out[j] * two_n[j]


def _exp_neg_row_f64(z, out, ibuf):
    for j in range(z.shape[0]):
        a = min(max(-z[j], -700.0), 700.0)
        nf = np.floor(a * _LOG2E + 0.5)
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
        out[j] = p * r + 1.0
        ibuf[j] = (np.int64(nf) + np.int64(1023)) << np.int64(52)
    two_n = ibuf.view(np.float64)
    for j in range(z.shape[0]):
        out[j] = out[j] * two_n[j]


@overload(exp_neg_row, jit_options={"error_model": "numpy", "fastmath": {"contract"}})
def _exp_neg_row_overload(z, out, ibuf):
    if z.dtype == types.float32:
        return _exp_neg_row_f32
    return _exp_neg_row_f64


def int_row(x, m):
    """An uninitialised integer row of length m as wide as ``x``'s float dtype (the bit
    buffer of :func:`exp_neg_row`)."""
    return np.empty(m, np.int32 if x.dtype == np.float32 else np.int64)


@overload(int_row)
def _int_row_overload(x, m):
    if x.dtype == types.float32:
        return lambda x, m: np.empty(m, np.int32)
    return lambda x, m: np.empty(m, np.int64)


@njit(cache=True, error_model="numpy")
def sigmoid_row(z, out, ibuf, one):
    """out[j] = σ(z[j]) = 1/(1 + e^{−z[j]}), as torch computes it: e^{−z} rounded to the dtype,
    then 1/(1 + e) in the dtype (``one`` is 1 in that dtype)."""
    exp_neg_row(z, out, ibuf)
    for j in range(z.shape[0]):
        out[j] = one / (one + out[j])


@njit(cache=True, error_model="numpy")
def surrogate_row(out, h, code, par, tmp, ibuf):
    """out[j] = g(h[j]) for the surrogate ``code`` (0 rectangle, 1 triangle, 2 sigmoid, 3 atan)
    of width γ = ``par[WIDTH]`` (SPEC §3); ``tmp`` and ``ibuf`` are scratch rows."""
    n = h.shape[0]
    w = par[WIDTH]
    zero = par[ZERO]
    one = par[ONE]
    inv = one / w
    if code == 0:
        half = par[HALF_WIDTH]
        for j in range(n):
            out[j] = inv if abs(h[j]) < half else zero
    elif code == 1:
        for j in range(n):
            out[j] = max(zero, one - abs(h[j]) * inv) * inv
    elif code == 2:
        four_inv = (one + one + one + one) * inv
        for j in range(n):
            tmp[j] = four_inv * h[j]
        sigmoid_row(tmp, out, ibuf, one)
        for j in range(n):
            out[j] = four_inv * out[j] * (one - out[j])
    else:
        c = par[PI_OVER_WIDTH]
        for j in range(n):
            q = c * h[j]
            out[j] = inv / (one + q * q)


@njit(cache=True, error_model="numpy", fastmath={"reassoc", "contract"})
def accumulate_stats(stats_c, t, h, s, g, tmp, code, par, ibuf):
    """Per-step sums of one chunk: spikes, gradient-open steps (|h| < γ/2), and g(h).

    The counts are integers; the float64 sum of g may be reassociated (so that it vectorises).
    """
    surrogate_row(g, h, code, par, tmp, ibuf)
    half = par[HALF_WIDTH]
    n_spk = 0
    n_open = 0
    g_sum = 0.0
    for j in range(h.shape[0]):
        n_spk += 1 if s[j] != 0 else 0
        n_open += 1 if abs(h[j]) < half else 0
        g_sum += np.float64(g[j])
    stats_c[STAT_SPIKES, t] = n_spk
    stats_c[STAT_OPEN, t] = n_open
    stats_c[STAT_SURROGATE, t] = g_sum


# The row functions below take one 1-D C-contiguous row per quantity (``x[t, lo:hi]``,
# ``state[k, lo:hi]``, scratch rows), all distinct: numba types 2-D slices as non-contiguous and
# LLVM cannot vectorise loops over aliased rows, so both would fall back to scalar code.


# ----------------------------------------------------------------------------------- ILIF / LIF
@njit(inline="always", error_model="numpy")
def _ilif_charge_loop(x, v, trace, memory, drive, spk, h, u, tr, par, ciu, mpiu, spk_given):
    """The ILIF step up to U (and M) for one row; ``v`` receives U. Called with constant flags,
    so that every flag set gets its own branch-free loop."""
    lam = par[LAMBDA]
    th = par[THRESHOLD]
    k = par[CIU_GAIN]
    kap = par[MPIU_GAIN]
    zero = par[ZERO]
    one = par[ONE]
    for j in range(x.shape[0]):
        hm = lam * v[j] + x[j]
        if ciu:
            tr_j = k * (trace[j] + drive[j])
            trace[j] = tr_j
            if spk_given:
                tr[j] = tr_j
            hm = hm - max(tr_j, zero)
        hh = hm - th
        if spk_given:
            s = one if spk[j] != 0 else zero
        else:
            s = one if hh >= zero else zero
            spk[j] = s
        uu = hm - s * th
        h[j] = hh
        if mpiu:
            memory[j] = kap * (memory[j] + s * uu)
            if spk_given:
                u[j] = uu
        v[j] = uu
        if ciu:
            drive[j] = x[j] * s


@njit(cache=True, error_model="numpy")
def ilif_step_row(x, v, trace, memory, drive, spk, h, u, sgm, tr, ibuf, par, ciu, mpiu,
                  spk_given):
    """One ILIF step over a row of neurons, in place on the state rows (SPEC §2)::

    I = k·(I + D) ;  H = λ·v + x − max(I, 0) ;  h = H − θ ;  S = Θ(h) ;  U = H − S·θ
    M = κ·(M + S·U) ;  v = U − S·σ(M) ;  D = x·S

    The operation order mirrors the eager float ops so that the spikes are identical. The
    spikes go to ``spk``, or, with ``spk_given`` (the backward's recomputation), come from it
    (the forward's uint8). ``h`` receives h and, with ``mpiu``, ``sgm`` σ(M); with
    ``spk_given``, ``tr`` receives I and, with ``mpiu``, ``u`` receives U.
    """
    if ciu:
        if mpiu:
            if spk_given:
                _ilif_charge_loop(x, v, trace, memory, drive, spk, h, u, tr, par, True, True, True)
            else:
                _ilif_charge_loop(x, v, trace, memory, drive, spk, h, u, tr, par, True, True,
                                  False)
        elif spk_given:
            _ilif_charge_loop(x, v, trace, memory, drive, spk, h, u, tr, par, True, False, True)
        else:
            _ilif_charge_loop(x, v, trace, memory, drive, spk, h, u, tr, par, True, False, False)
    elif mpiu:
        if spk_given:
            _ilif_charge_loop(x, v, trace, memory, drive, spk, h, u, tr, par, False, True, True)
        else:
            _ilif_charge_loop(x, v, trace, memory, drive, spk, h, u, tr, par, False, True, False)
    elif spk_given:
        _ilif_charge_loop(x, v, trace, memory, drive, spk, h, u, tr, par, False, False, True)
    else:
        _ilif_charge_loop(x, v, trace, memory, drive, spk, h, u, tr, par, False, False, False)
    if mpiu:
        one = par[ONE]
        zero = par[ZERO]
        sigmoid_row(memory, sgm, ibuf, one)
        for j in range(x.shape[0]):
            s = one if spk[j] != 0 else zero
            v[j] = v[j] - s * sgm[j]


@njit(inline="always", error_model="numpy", fastmath={"contract"})
def _ilif_adjoint_loop(xt, bt, got, gxt, gv, gi, gm, gd, ut, sgt, trt, gsur, lam, th, k, kap,
                       zero, one, keep_reset, keep_inh, ciu, mpiu):
    for j in range(xt.shape[0]):
        s = one if bt[j] != 0 else zero
        g_s = got[j]
        g_x = zero
        g_v = gv[j]
        if ciu:
            g_x += gd[j] * s
            g_s += gd[j] * xt[j]
        g_u = g_v
        if mpiu:
            sg = sgt[j]
            g_s -= g_v * sg
            g_m = gm[j] - keep_inh * g_v * s * sg * (one - sg)
            g_s += kap * g_m * ut[j]
            g_u += kap * g_m * s
            gm[j] = kap * g_m
        g_s -= keep_reset * g_u * th
        g_h = g_u + g_s * gsur[j]
        gxt[j] = g_x + g_h
        gv[j] = lam * g_h
        if ciu:
            open_clamp = one if trt[j] >= zero else zero
            g_i = gi[j] - keep_inh * g_h * open_clamp
            gi[j] = k * g_i
            gd[j] = k * g_i


@njit(cache=True, error_model="numpy", fastmath={"contract"})
def ilif_backward_step(xt, bt, got, gxt, gv, gi, gm, gd, ut, sgt, trt, gsur, lam, th, k, kap,
                       zero, one, keep_reset, keep_inh, ciu, mpiu):
    """The adjoint of :func:`ilif_step_row` for one step (dL/d state_{t−1} from dL/d state_t),
    one branch-free loop per flag set."""
    if ciu:
        if mpiu:
            _ilif_adjoint_loop(xt, bt, got, gxt, gv, gi, gm, gd, ut, sgt, trt, gsur, lam, th, k,
                               kap, zero, one, keep_reset, keep_inh, True, True)
        else:
            _ilif_adjoint_loop(xt, bt, got, gxt, gv, gi, gm, gd, ut, sgt, trt, gsur, lam, th, k,
                               kap, zero, one, keep_reset, keep_inh, True, False)
    elif mpiu:
        _ilif_adjoint_loop(xt, bt, got, gxt, gv, gi, gm, gd, ut, sgt, trt, gsur, lam, th, k,
                           kap, zero, one, keep_reset, keep_inh, False, True)
    else:
        _ilif_adjoint_loop(xt, bt, got, gxt, gv, gi, gm, gd, ut, sgt, trt, gsur, lam, th, k,
                           kap, zero, one, keep_reset, keep_inh, False, False)


# ------------------------------------------------------------------------------------------ CLIF
@njit(cache=True, error_model="numpy")
def clif_step_row(x, v, cmem, spk, h, sh, sc, c_prev, ibuf, par, spk_given):
    """One CLIF step over a row of neurons, in place on ``v`` and ``cmem`` (SPEC §2)::

    H = λ·v + x ;  C' = C·σ(H/τ) ;  h = H − θ ;  S = Θ(h) ;  C = C' + S ;  v = H − S·(θ + σ(C))

    ``h``, ``sh``, ``sc``, ``c_prev`` receive h, σ(H/τ), σ(C) and C before the step; with
    ``spk_given`` (the backward's recomputation) the spikes come from ``spk``.
    """
    lam = par[LAMBDA]
    th = par[THRESHOLD]
    tau = par[TAU]
    zero = par[ZERO]
    one = par[ONE]
    n = x.shape[0]
    for j in range(n):
        hm = lam * v[j] + x[j]
        v[j] = hm  # H, until the reset below
        c_prev[j] = hm / tau  # H/τ, until C is stored there below
        hh = hm - th
        h[j] = hh
        if not spk_given:
            spk[j] = one if hh >= zero else zero
    sigmoid_row(c_prev, sh, ibuf, one)
    for j in range(n):
        s = one if spk[j] != 0 else zero
        c_prev[j] = cmem[j]
        cmem[j] = cmem[j] * sh[j] + s
    sigmoid_row(cmem, sc, ibuf, one)
    for j in range(n):
        s = one if spk[j] != 0 else zero
        v[j] = v[j] - s * (th + sc[j])


@njit(cache=True, error_model="numpy", fastmath={"contract"})
def clif_backward_step(bt, got, gxt, gv, gc, sht, sct, cpt, gsur, lam, th, tau, zero, one,
                       keep_reset):
    """The adjoint of :func:`clif_step_row` for one step."""
    for j in range(bt.shape[0]):
        s = one if bt[j] != 0 else zero
        s_c = sct[j]
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


# -------------------------------------------------------------------------------------- drivers
# Scratch is allocated once per call and cut per chunk as ``a[k, :m]`` / ``a[k, t, :m]`` (an
# integer index then a slice keeps numba's contiguous row type; ``a[:, :m][k]`` would not).


@njit(nogil=True, cache=True, error_model="numpy")
def forward(x, state0, out_spikes, out_bits, out_state, par, cfg, stats, c0, c1):
    """Fused forward over the chunks [c0, c1) of ``x[T, N]`` from ``state0[S, N]`` (an empty
    ``state0[S, 0]`` stands for the all-zero state, which is then not read).

    Writes the spikes (input dtype, and uint8 into ``out_bits`` when it has T rows), the final
    state ``out_state[S, N]`` and, when ``cfg[WANT_STATS]``, per-chunk sums ``stats[chunk, 3, T]``.
    """
    n_steps, n = x.shape
    n_state = out_state.shape[0]
    zero0 = state0.shape[1] == 0
    kind = cfg[KIND]
    ciu = cfg[CIU] != 0
    mpiu = cfg[MPIU] != 0
    want_bits = out_bits.shape[0] == n_steps
    want_stats = cfg[WANT_STATS] != 0
    ws = np.zeros((4, CHUNK), x.dtype)  # working state (v, I|C, M, D); unused rows stay 0
    buf = np.empty((4, CHUNK), x.dtype)
    ibuf = int_row(x, CHUNK)
    for c in range(c0, c1):
        lo = c * CHUNK
        hi = min(n, lo + CHUNK)
        m = hi - lo
        for kk in range(n_state):
            if zero0:
                ws[kk, :m] = 0
            else:
                ws[kk, :m] = state0[kk, lo:hi]
        for t in range(n_steps):
            spk = out_spikes[t, lo:hi]
            if kind == KIND_ILIF:
                ilif_step_row(x[t, lo:hi], ws[0, :m], ws[1, :m], ws[2, :m], ws[3, :m], spk,
                              buf[0, :m], buf[1, :m], buf[2, :m], buf[3, :m], ibuf[:m], par,
                              ciu, mpiu, False)
            else:
                clif_step_row(x[t, lo:hi], ws[0, :m], ws[1, :m], spk, buf[0, :m], buf[1, :m],
                              buf[2, :m], buf[3, :m], ibuf[:m], par, False)
            if want_bits:
                bits = out_bits[t, lo:hi]
                for j in range(m):
                    bits[j] = np.uint8(spk[j] != 0)
            if want_stats:
                accumulate_stats(stats[c], t, buf[0, :m], spk, buf[1, :m], buf[2, :m],
                                 cfg[SURROGATE], par, ibuf[:m])
        for kk in range(n_state):
            out_state[kk, lo:hi] = ws[kk, :m]


@njit(nogil=True, cache=True, error_model="numpy")
def backward(x, bits, gout, state0, adj, gx, par, cfg, c0, c1):
    """Fused BPTT of :func:`forward`: writes ``gx[T, N]`` = dL/dx and turns ``adj[S, N]`` from
    dL/d(final state) into dL/d(initial state) in place (an empty ``adj[S, 0]`` stands for a zero
    dL/d(final state) when dL/d(initial state) is not wanted).

    Per chunk: recompute the forward (spikes from ``bits``) keeping the per-step values in chunk
    scratch, then run the adjoints backwards in time. An empty ``state0[S, 0]`` stands for the
    all-zero initial state.
    """
    n_steps, n = x.shape
    n_state = adj.shape[0]
    zero0 = state0.shape[1] == 0
    want_adj = adj.shape[1] != 0
    kind = cfg[KIND]
    ciu = cfg[CIU] != 0
    mpiu = cfg[MPIU] != 0
    lam = par[LAMBDA]
    th = par[THRESHOLD]
    zero = par[ZERO]
    one = par[ONE]
    keep_reset = zero if cfg[DETACH_RESET] else one
    keep_inh = zero if cfg[DETACH_INHIBITION] else one
    ws = np.zeros((4, CHUNK), x.dtype)  # working state of the recomputation
    ga = np.zeros((4, CHUNK), x.dtype)  # adjoints of the state
    rec = np.empty((4, n_steps, CHUNK), x.dtype)  # recomputed per-step values
    row = np.empty((2, CHUNK), x.dtype)
    ibuf = int_row(x, CHUNK)
    for c in range(c0, c1):
        lo = c * CHUNK
        hi = min(n, lo + CHUNK)
        m = hi - lo
        for kk in range(n_state):
            if zero0:
                ws[kk, :m] = 0
            else:
                ws[kk, :m] = state0[kk, lo:hi]
            if want_adj:
                ga[kk, :m] = adj[kk, lo:hi]
            else:
                ga[kk, :m] = 0
        gsur = row[0, :m]
        if kind == KIND_ILIF:
            for t in range(n_steps):
                ilif_step_row(x[t, lo:hi], ws[0, :m], ws[1, :m], ws[2, :m], ws[3, :m],
                              bits[t, lo:hi], rec[0, t, :m], rec[1, t, :m], rec[2, t, :m],
                              rec[3, t, :m], ibuf[:m], par, ciu, mpiu, True)
            for t in range(n_steps - 1, -1, -1):
                surrogate_row(gsur, rec[0, t, :m], cfg[SURROGATE], par, row[1, :m], ibuf[:m])
                ilif_backward_step(x[t, lo:hi], bits[t, lo:hi], gout[t, lo:hi], gx[t, lo:hi],
                                   ga[0, :m], ga[1, :m], ga[2, :m], ga[3, :m], rec[1, t, :m],
                                   rec[2, t, :m], rec[3, t, :m], gsur, lam, th, par[CIU_GAIN],
                                   par[MPIU_GAIN], zero, one, keep_reset, keep_inh, ciu, mpiu)
        else:
            for t in range(n_steps):
                clif_step_row(x[t, lo:hi], ws[0, :m], ws[1, :m], bits[t, lo:hi], rec[0, t, :m],
                              rec[1, t, :m], rec[2, t, :m], rec[3, t, :m], ibuf[:m], par, True)
            for t in range(n_steps - 1, -1, -1):
                surrogate_row(gsur, rec[0, t, :m], cfg[SURROGATE], par, row[1, :m], ibuf[:m])
                clif_backward_step(bits[t, lo:hi], gout[t, lo:hi], gx[t, lo:hi], ga[0, :m],
                                   ga[1, :m], rec[1, t, :m], rec[2, t, :m], rec[3, t, :m], gsur,
                                   lam, th, par[TAU], zero, one, keep_reset)
        if want_adj:
            for kk in range(n_state):
                adj[kk, lo:hi] = ga[kk, :m]
