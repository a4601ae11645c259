"""CLIF rows of the fused CPU kernels: the forward step, its rebuild in the backward, and the
adjoint step (docs/performance.md)."""

from __future__ import annotations

import numpy as np
from numba import njit

from ilif.kernels.numba_ops.fastmath import pack_sigma, sigmoid, unpack_sigma
from ilif.kernels.numba_ops.layout import LAMBDA, ONE, TAU, THRESHOLD, ZERO
from ilif.kernels.numba_ops.llvm import wide_vectors


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
def clif_backward_step(got, sgt, gxt, gv, gc, sht, cpt, gsur, lam, th, tau, zero, one,
                       keep_reset):
    """The adjoint of :func:`_clif_step_loop` for one step from σ(C) with S packed in (``sgt``);
    ``gxt`` receives dL/dx."""
    wide_vectors()
    for j in range(gxt.shape[0]):
        s_c, spiked, _ = unpack_sigma(sgt[j])
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

