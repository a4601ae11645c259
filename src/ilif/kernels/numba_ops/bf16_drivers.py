"""The fused CPU drivers for bfloat16 input: ``x``, the spikes, the final state, dL/dS and dL/dx
are bfloat16 (their uint16 bits, :mod:`.bf16`); the initial state, the parameters and all
arithmetic are float32. The backward gets σ(M) as a 16-bit code (ILIF with the MPIU, 2 bytes
per neuron-step), σ(C) in float32 (CLIF, 4 bytes) or the 1-byte uint8 spikes.

ILIF runs the drivers of :mod:`.drivers` themselves: their row loops read x and dL/dS and write
the spikes and dL/dx through :func:`.bf16.load` and :func:`.bf16.store`, which widen and narrow
(round to nearest even) element by element, so that no float32 copy of a bfloat16 row is made.
CLIF widens each step's row into a float32 staging row and narrows its outputs back.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ilif.kernels.numba_ops.bf16 import narrow_row, widen_row
from ilif.kernels.numba_ops.clif_rows import clif_backward_step, clif_forward_row, clif_rebuild_row
from ilif.kernels.numba_ops.drivers import (
    _chunk,
    _store_final,
    ilif_backward,
    ilif_forward,
    prefetch_next,
)
from ilif.kernels.numba_ops.layout import (
    CHUNK_LEN,
    DETACH_RESET,
    LAMBDA,
    ONE,
    PREFETCH,
    SURROGATE,
    TAU,
    THRESHOLD,
    WANT_STATS,
    ZERO,
)
from ilif.kernels.numba_ops.llvm import wide_vectors
from ilif.kernels.numba_ops.rows import _load_rows, copy_row, prefetch_row, row, row3
from ilif.kernels.numba_ops.surrogates import accumulate_stats, surrogate_row


@njit(nogil=True, cache=True, error_model="numpy")
def clif_forward_bf16(x, state0, out_spikes, out_bits, out_sgm, out_state, par, cfg, stats, c0,
                      c1):
    """:func:`clif_forward` of :mod:`.drivers` for bfloat16 ``x``, spikes and final state."""
    wide_vectors()
    n_steps, n = x.shape
    zero0 = state0.shape[1] == 0
    ch = cfg[CHUNK_LEN]
    want_stats = cfg[WANT_STATS] != 0
    code = cfg[SURROGATE]
    ws = np.zeros((2, ch), np.float32)
    buf = np.empty((4, ch), np.float32)  # h, σ when the caller wants none, x, the spikes
    for c in range(c0, c1):
        lo, m = _chunk(c, ch, n)
        _load_rows(ws, state0, zero0, lo, m)
        h, xs, spk = row(buf, 0, 0, m), row(buf, 2, 0, m), row(buf, 3, 0, m)
        for t in range(n_steps):
            sgm = row(out_sgm, t, lo, m) if out_sgm.shape[0] > t else row(buf, 1, 0, m)
            widen_row(xs, row(x, t, lo, m))
            clif_forward_row(xs, row(ws, 0, 0, m), row(ws, 1, 0, m), spk, h, sgm, par)
            if want_stats:
                accumulate_stats(stats, c, t, h, spk, code, par)
            narrow_row(row(out_spikes, t, lo, m), spk)
        _store_final(out_state, ws, lo, m)


@njit(nogil=True, cache=True, error_model="numpy")
def clif_backward_bf16(x, bits, sgm, gout, state0, adj, gx, par, cfg, c0, c1):
    """:func:`clif_backward` of :mod:`.drivers` for bfloat16 ``x``, dL/dS and dL/dx, one staged
    row per step."""
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
    ws = np.zeros((2, ch), np.float32)
    ga = np.zeros((2, ch), np.float32)
    rec = np.empty((3, n_steps, ch), np.float32)
    stage = np.empty((4, ch), np.float32)  # h, then x, dL/dS, dL/dx of one step
    prefetch = cfg[PREFETCH] != 0
    for c in range(c0, c1):
        lo, m = _chunk(c, ch, n)
        _load_rows(ws, state0, zero0, lo, m)
        _load_rows(ga, adj, not want_adj, lo, m)
        v, cmem = row(ws, 0, 0, m), row(ws, 1, 0, m)
        hc, xs, gs, gxs = (row(stage, 0, 0, m), row(stage, 1, 0, m), row(stage, 2, 0, m),
                           row(stage, 3, 0, m))
        for t in range(n_steps):
            if prefetch:
                prefetch_row(row(gout, n_steps - 1 - t, lo, m))
            widen_row(xs, row(x, t, lo, m))
            clif_rebuild_row(xs, v, cmem, hc, row3(rec, 1, t, m), row(sgm, t, lo, m),
                             row3(rec, 2, t, m), par)
            surrogate_row(row3(rec, 0, t, m), hc, code, par)
        if prefetch:
            prefetch_next(c, c1, ch, n, x)
            prefetch_next(c, c1, ch, n, sgm)
        for t in range(n_steps - 1, -1, -1):
            widen_row(gs, row(gout, t, lo, m))
            clif_backward_step(gs, row(sgm, t, lo, m), gxs, row(ga, 0, 0, m), row(ga, 1, 0, m),
                               row3(rec, 1, t, m), row3(rec, 2, t, m), row3(rec, 0, t, m),
                               par[LAMBDA], par[THRESHOLD], par[TAU], zero, one, keep_reset)
            narrow_row(row(gx, t, lo, m), gxs)
        if want_adj:
            for kk in range(n_state):
                copy_row(row(adj, kk, lo, m), row(ga, kk, 0, m))


DRIVERS_BF16 = {
    "ilif": {"forward": ilif_forward, "backward": ilif_backward},
    "clif": {"forward": clif_forward_bf16, "backward": clif_backward_bf16},
}
