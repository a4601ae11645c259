"""Surrogate gradients g(h) and the per-step statistics (spikes, open count, Σ g(h)) of the fused
CPU kernels (docs/performance.md)."""

from __future__ import annotations

import numpy as np
from numba import njit

from ilif.kernels.numba_ops.fastmath import sigmoid
from ilif.kernels.numba_ops.layout import (
    ATAN,
    HALF_WIDTH,
    ONE,
    PI_OVER_WIDTH,
    RECTANGLE,
    SIGMOID,
    STAT_OPEN,
    STAT_SPIKES,
    STAT_SURROGATE,
    TRIANGLE,
    WIDTH,
    ZERO,
)
from ilif.kernels.numba_ops.llvm import wide_vectors


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

