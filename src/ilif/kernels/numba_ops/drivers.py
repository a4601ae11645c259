"""The drivers of the fused CPU kernels: the forward and the BPTT backward of one neuron layer,
one pair per kernel family (ILIF, which includes LIF, and CLIF), over a range of chunks.

Inside a chunk the time loop is outermost, and each time step is one fused, branch-free,
vectorisable loop over the chunk's rows; every ILIF flag set runs its own loop (the flags are
compile-time constants there). Scratch is allocated once per call and cut per chunk into rows
with :func:`row` and :func:`row3` (views without reference counts).

What the backward gets from the forward (``sgm``, docs/performance.md): for ILIF with the MPIU
σ(M) of every step, and for CLIF σ(C), with the spike packed into its sign bit and ILIF's clamp
slope 1[I ≥ 0] into the top bit of its exponent (:func:`pack_sigma`: exact, as 0 < σ ≤ 1;
for bfloat16 input ILIF keeps the 16-bit code of :func:`store_sigma` instead); for
LIF and ILIF without the MPIU the spikes as uint8 (the slope in bit 1). Per chunk the backward
first rebuilds the other per-step values from ``x``, the initial state and these into scratch
rows that stay in the cache, then runs the adjoints backwards in time. The ILIF backward may be
given ``sgm`` itself as the dL/dx buffer (:func:`ilif_adjoint_chunk` writes a step's dL/dx
there once the step has read its σ); otherwise ``sgm`` is only read, and a second backward
through a retained graph reads it again.

With ``cfg[PREFETCH]`` the backward asks for memory ahead of its use (:func:`prefetch_row`):
during a chunk's rebuild for that chunk's dL/dS, which its adjoints read next, and before the
adjoints for the next chunk's x and what the forward kept, which its rebuild reads (the
forward, one stream in and two out, gained nothing from prefetches).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ilif.kernels.numba_ops.bf16 import store_row
from ilif.kernels.numba_ops.clif_rows import clif_backward_step, clif_forward_row, clif_rebuild_row
from ilif.kernels.numba_ops.ilif_rows import (
    _forward_rows,
    _ilif_forward_chunk,
    ilif_adjoint_chunk,
    ilif_forward_chunk_counted,
    ilif_rebuild_row,
)
from ilif.kernels.numba_ops.layout import (
    CHUNK_LEN,
    CIU,
    DETACH_INHIBITION,
    DETACH_RESET,
    LAMBDA,
    MPIU,
    ONE,
    PREFETCH,
    RECTANGLE,
    STATS_COUNT,
    STATS_H,
    STATS_NONE,
    SURROGATE,
    TAU,
    THRESHOLD,
    WANT_STATS,
    ZERO,
)
from ilif.kernels.numba_ops.llvm import _store_fence, wide_vectors
from ilif.kernels.numba_ops.rows import (
    _load_rows,
    copy_row,
    prefetch_chunk,
    prefetch_row,
    row,
    row3,
)
from ilif.kernels.numba_ops.surrogates import accumulate_stats, surrogate_row


@njit(inline="always")
def _chunk(c, ch, n):
    """``(lo, m)``: the first neuron and the size of chunk ``c``."""
    lo = c * ch
    return lo, min(n, lo + ch) - lo


@njit(inline="always")
def prefetch_next(c, c1, ch, n, a):
    """With more chunks in this block after ``c``, prefetch the next chunk's rows of ``a``
    (:func:`prefetch_chunk`; none when ``a`` has no rows)."""
    if c + 1 < c1:
        lo, m = _chunk(c + 1, ch, n)
        prefetch_chunk(a, lo, m)


@njit(inline="always")
def _store_final(out_state, ws, lo, m):
    for kk in range(out_state.shape[0]):  # not read again in this call
        store_row(row(out_state, kk, lo, m), row(ws, kk, 0, m))


@njit(nogil=True, cache=True, error_model="numpy")
def ilif_forward(x, state0, out_spikes, out_bits, out_sgm, out_state, par, cfg, stats, c0, c1):
    """Fused ILIF (and LIF) forward over the chunks [c0, c1) of ``x[T, N]`` from ``state0[S, N]``
    (an empty ``state0[S, 0]`` stands for the all-zero state, which is then not read). The
    arithmetic is in ``par``'s dtype; ``x``, the spikes and the final state may be bfloat16
    (uint16 bits, read and written through :func:`load` and :func:`store`).

    Writes, each output only when it has T rows: the spikes (input dtype) into ``out_spikes``,
    the uint8 spikes into ``out_bits``, and into ``out_sgm`` σ(M) with the spikes packed in
    (:func:`store_sigma`); then the final state ``out_state[S, N]`` and, when ``cfg[WANT_STATS]``,
    per-chunk sums ``stats[chunk, 3, T]``.
    """
    wide_vectors()
    n = x.shape[1]
    zero0 = state0.shape[1] == 0
    ciu = cfg[CIU] != 0
    mpiu = cfg[MPIU] != 0
    ch = cfg[CHUNK_LEN]
    code = cfg[SURROGATE]
    # the rectangle's Σ g(h) follows from the open count; the other surrogates need h
    stats_mode = (STATS_NONE if cfg[WANT_STATS] == 0 else STATS_COUNT if code == RECTANGLE
                  else STATS_H)
    ws = np.zeros((4, ch), par.dtype)  # working state (v, I, M, D); unused rows stay 0
    buf = np.empty((1, ch), par.dtype)  # h
    # the spikes and σ when the caller wants none
    no_out = (np.empty((1, ch), out_spikes.dtype), np.empty((1, ch), out_sgm.dtype))
    no_bits = np.empty(ch, np.uint8)  # the uint8 spikes when the caller wants none
    for c in range(c0, c1):
        lo, m = _chunk(c, ch, n)
        _load_rows(ws, state0, zero0, lo, m)
        if stats_mode == STATS_NONE:
            _ilif_forward_chunk(x, ws, out_spikes, out_bits, out_sgm, buf, no_out, no_bits,
                                stats, c, lo, m, par, ciu, mpiu, STATS_NONE, code)
        else:
            ilif_forward_chunk_counted(x, ws, out_spikes, out_bits, out_sgm, buf, no_out,
                                       no_bits, stats, c, lo, m, par, ciu, mpiu, stats_mode,
                                       code)
        _store_final(out_state, ws, lo, m)
    _store_fence()


@njit(nogil=True, cache=True, error_model="numpy")
def clif_forward(x, state0, out_spikes, out_bits, out_sgm, out_state, par, cfg, stats, c0, c1):
    """Fused CLIF forward, as :func:`ilif_forward`; ``out_sgm`` receives σ(C) with the spikes
    packed in, ``out_bits`` is not written."""
    wide_vectors()
    n_steps, n = x.shape
    zero0 = state0.shape[1] == 0
    ch = cfg[CHUNK_LEN]
    want_stats = cfg[WANT_STATS] != 0
    code = cfg[SURROGATE]
    ws = np.zeros((2, ch), x.dtype)  # working state (v, C)
    buf = np.empty((1, ch), x.dtype)
    no_out = (np.empty((1, ch), x.dtype), np.empty((1, ch), x.dtype))
    no_bits = np.empty(ch, np.uint8)
    for c in range(c0, c1):
        lo, m = _chunk(c, ch, n)
        _load_rows(ws, state0, zero0, lo, m)
        for t in range(n_steps):
            spk, _, sgm, h = _forward_rows(out_spikes, out_bits, out_sgm, buf, no_out, no_bits,
                                           t, lo, m)
            clif_forward_row(row(x, t, lo, m), row(ws, 0, 0, m), row(ws, 1, 0, m), spk, h, sgm,
                             par)
            if want_stats:
                accumulate_stats(stats, c, t, h, spk, code, par)
        _store_final(out_state, ws, lo, m)
    _store_fence()


@njit(nogil=True, cache=True, error_model="numpy")
def ilif_backward(x, bits, sgm, gout, state0, adj, gx, par, cfg, c0, c1):
    """Fused BPTT of :func:`ilif_forward`: writes ``gx[T, N]`` = dL/dx and turns ``adj[S, N]``
    from dL/d(final state) into dL/d(initial state) in place (an empty ``adj[S, 0]`` stands for
    a zero dL/d(final state) when dL/d(initial state) is not wanted).

    Per chunk, the forward is first rebuilt from ``x``, the initial state (an empty
    ``state0[S, 0]`` stands for the all-zero state) and what the forward kept: with the MPIU
    σ(M) with the spikes packed in (``sgm[T, N]``), so that the rebuild has no exponential left;
    else the uint8 ``bits[T, N]``. Then the adjoints run backwards in time. ``x``, dL/dS
    ``gout`` and ``gx`` may be bfloat16 (uint16 bits), as in :func:`ilif_forward`.
    """
    wide_vectors()
    n_steps, n = x.shape
    n_state = adj.shape[0]
    zero0 = state0.shape[1] == 0
    want_adj = adj.shape[1] != 0
    ciu = cfg[CIU] != 0
    mpiu = cfg[MPIU] != 0
    code = cfg[SURROGATE]
    ch = cfg[CHUNK_LEN]
    one = par[ONE]
    keep_reset = par[ZERO] if cfg[DETACH_RESET] else one
    keep_inh = par[ZERO] if cfg[DETACH_INHIBITION] else one
    ws = np.zeros((4, ch), par.dtype)  # working state of the recomputation
    ga = np.zeros((4, ch), par.dtype)  # adjoints of the state
    rec = np.empty((1, n_steps, ch), par.dtype)  # the recomputed h per step
    gsur = np.empty((1, ch), par.dtype)  # g(h)
    has_bits = bits.shape[0] == n_steps
    no_bits = np.zeros(ch, np.uint8)  # with the MPIU the spikes are packed in sgm
    prefetch = cfg[PREFETCH] != 0
    for c in range(c0, c1):
        lo, m = _chunk(c, ch, n)
        _load_rows(ws, state0, zero0, lo, m)
        _load_rows(ga, adj, not want_adj, lo, m)
        v, trace, memory, drive = (row(ws, 0, 0, m), row(ws, 1, 0, m), row(ws, 2, 0, m),
                                   row(ws, 3, 0, m))
        for t in range(n_steps):
            if prefetch:  # dL/dS, in the order the adjoints read it
                prefetch_row(row(gout, n_steps - 1 - t, lo, m))
            bt = row(bits, t, lo, m) if has_bits else row(no_bits, 0, 0, m)
            ilif_rebuild_row(row(x, t, lo, m), v, trace, memory, drive, bt, row3(rec, 0, t, m),
                             row(sgm, t, lo, m), par, ciu, mpiu)  # without the MPIU: not read
        if prefetch:  # what the next chunk's rebuild reads, while the adjoints compute
            prefetch_next(c, c1, ch, n, x)
            prefetch_next(c, c1, ch, n, sgm)
            prefetch_next(c, c1, ch, n, bits)
        ilif_adjoint_chunk(x, bits, sgm, gout, gx, ga, rec, gsur, no_bits, lo, m, par,
                           code, keep_reset, keep_inh, ciu, mpiu)
        if want_adj:
            for kk in range(n_state):
                copy_row(row(adj, kk, lo, m), row(ga, kk, 0, m))


@njit(nogil=True, cache=True, error_model="numpy")
def clif_backward(x, bits, sgm, gout, state0, adj, gx, par, cfg, c0, c1):
    """Fused BPTT of :func:`clif_forward`, as :func:`ilif_backward`, from σ(C) with the spikes
    packed in (``sgm[T, N]``); the rebuild also recomputes σ(H/τ) and C before each step."""
    wide_vectors()
    n_steps, n = x.shape
    n_state = adj.shape[0]
    zero0 = state0.shape[1] == 0
    want_adj = adj.shape[1] != 0
    code = cfg[SURROGATE]
    ch = cfg[CHUNK_LEN]
    zero = par[ZERO]
    one = par[ONE]
    keep_reset = zero if cfg[DETACH_RESET] else one
    ws = np.zeros((2, ch), x.dtype)
    ga = np.zeros((2, ch), x.dtype)
    rec = np.empty((3, n_steps, ch), x.dtype)  # g(h), σ(H/τ) and C before the step
    h = np.empty(ch, x.dtype)
    prefetch = cfg[PREFETCH] != 0
    for c in range(c0, c1):
        lo, m = _chunk(c, ch, n)
        _load_rows(ws, state0, zero0, lo, m)
        _load_rows(ga, adj, not want_adj, lo, m)
        v, cmem, hc = row(ws, 0, 0, m), row(ws, 1, 0, m), row(h, 0, 0, m)
        for t in range(n_steps):
            if prefetch:
                prefetch_row(row(gout, n_steps - 1 - t, lo, m))
            clif_rebuild_row(row(x, t, lo, m), v, cmem, hc, row3(rec, 1, t, m),
                             row(sgm, t, lo, m), row3(rec, 2, t, m), par)
            surrogate_row(row3(rec, 0, t, m), hc, code, par)
        if prefetch:
            prefetch_next(c, c1, ch, n, x)
            prefetch_next(c, c1, ch, n, sgm)
        for t in range(n_steps - 1, -1, -1):
            clif_backward_step(row(gout, t, lo, m), row(sgm, t, lo, m), row(gx, t, lo, m),
                               row(ga, 0, 0, m), row(ga, 1, 0, m), row3(rec, 1, t, m),
                               row3(rec, 2, t, m), row3(rec, 0, t, m), par[LAMBDA],
                               par[THRESHOLD], par[TAU], zero, one, keep_reset)
        if want_adj:
            for kk in range(n_state):
                copy_row(row(adj, kk, lo, m), row(ga, kk, 0, m))


DRIVERS = {
    "ilif": {"forward": ilif_forward, "backward": ilif_backward},
    "clif": {"forward": clif_forward, "backward": clif_backward},
}
