"""Triton kernels for the fused multi-step LIF, ILIF (every ablation flag) and CLIF on CUDA.

One program owns a block of neurons and loops over the T time steps inside (equations:
:mod:`ilif.kernels.contract`, docs/neurons.md):

- forward kernel: ``x[T, N] -> S[T, N]`` and the final state; optionally the per-step statistics
  (spike count, gradient-open count ``|h| < γ/2``, sum of ``g(h)``) by per-block sums and atomics.
- backward kernel: recomputes the forward from ``x`` and the initial state, then runs BPTT in
  reverse. Time is cut in chunks of ``CHUNK = min(T, 8)`` steps: the states at chunk starts are
  checkpointed (none when T ≤ 8), each chunk is replayed into register tiles ``[ROWS, BLOCK]``
  (ROWS the next power of two ≥ CHUNK; a neuron's column stays in one thread) and walked
  backwards. Nothing per step is kept between the passes: the autograd node saves only ``x`` and
  the initial state, and the kernels move 20 bytes per neuron-step in float32 (forward: read x,
  write S; backward: read dL/dS and x, write dL/dx).

Both unroll the steps of a chunk, so that the loads of a chunk can be in flight together; a new T
(up to 8) compiles a new variant, a new γ does not.

The surrogate shape and the flags are compile-time constants; γ and the neuron constants are
read at run time from a small parameter tensor, so a γ sweep never recompiles.

Triton is imported lazily, and the kernels are built at call time for the mode Triton is in then
(``TRITON_INTERPRET=1`` runs them on CPU tensors through Triton's interpreter).
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
from collections.abc import Sequence
from typing import Any, NamedTuple

import torch
from torch import Tensor

from ilif.kernels.contract import FusedForm

__all__ = [
    "SUPPORTED_FAMILIES",
    "KernelConfig",
    "PreparedCall",
    "kernel_config",
    "prepare",
    "run_backward",
    "run_forward",
    "triton_available",
    "triton_multi_step",
]

SUPPORTED_FAMILIES = ("ilif", "clif")
_SUPPORTED_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
_N_SURROGATES = 4  # rectangle 0, triangle 1, sigmoid 2, atan 3

FORWARD_BLOCK = 256
BACKWARD_BLOCK = 128  # one neuron per thread with 4 warps: a neuron's tile column stays in-thread
NUM_WARPS = 4
MAX_CHUNK = 8  # steps unrolled per chunk (a 16-step unrolled backward compiles for ~1 min)

tl: Any = None  # triton.language, bound on first use (the kernels' bodies resolve it globally)
libdevice: Any = None  # triton.language.extra.cuda.libdevice, bound when compiling for CUDA


@functools.lru_cache(maxsize=1)
def triton_available() -> bool:
    """Whether the ``triton`` package imports (the kernels need it; CUDA or its interpreter)."""
    try:
        import triton  # noqa: F401
        import triton.language  # noqa: F401
    except Exception:  # pragma: no cover - depends on the installation
        return False
    return True


def _interpreting() -> bool:
    """Whether Triton runs kernels through its CPU interpreter (``TRITON_INTERPRET=1``) now,
    read as ``triton.jit`` reads it (the environment, unless set through ``triton.knobs``)."""
    import triton

    knobs = getattr(triton, "knobs", None)
    if knobs is not None:
        return bool(knobs.runtime.interpret)
    return os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "on", "yes")


# ===================================================================== device functions (Triton)
# Plain functions here; `_build_kernels` wraps them with `triton.jit` in the mode of the moment and
# binds the wrapped helpers to the global names the kernels call.


def _sigmoid_raw(z):
    """σ(z) = 1 / (1 + e^(−z))."""
    return 1.0 / (1.0 + tl.exp(-z))


def _sigmoid_ieee_raw(z):
    """σ(z) = 1 / (1 + e^(−z)) with libdevice's exp and a correctly rounded division, as
    torch's CUDA sigmoid computes it (Triton's own exp and division are approximate)."""
    return libdevice.div_rn(z * 0.0 + 1.0, 1.0 + libdevice.exp(-z))


def _column_sum_raw(values, axis: tl.constexpr):
    """Σ over ``axis``: the reduction behind ``tl.sum``, named so that the interpreter sums with
    numpy (``tl.sum`` itself is a jit function bound to the mode Triton was imported in)."""
    return tl.reduce(values, axis, tl.standard._sum_combine)


def _surrogate_grad_raw(h, gamma, SHAPE: tl.constexpr):
    """g(h), unit area and peak 1/γ: rectangle, triangle, sigmoid σ(4h/γ)', atan
    (docs/neurons.md)."""
    if SHAPE == 0:
        g = tl.where(tl.abs(h) < 0.5 * gamma, 1.0 / gamma, 0.0 * h)
    elif SHAPE == 1:
        g = tl.maximum(1.0 - tl.abs(h) / gamma, 0.0 * h) / gamma
    elif SHAPE == 2:
        sg = _sigmoid(4.0 * h / gamma)
        g = (4.0 / gamma) * sg * (1.0 - sg)
    else:
        z = 3.141592653589793 * h / gamma
        g = 1.0 / (gamma * (1.0 + z * z))
    return g


def _neuron_step_raw(
    x, v, a, b, d, decay, thr, k, kappa, tau,
    KIND: tl.constexpr, MPIU: tl.constexpr, CIU: tl.constexpr,
):
    """One step. ILIF family (KIND 0; LIF when MPIU and CIU are off), state (v, I, M, D)::

        I_t = k·(I_{t−1} + D_{t−1}) ; H_t = λ·v_{t−1} + x_t − max(I_t, 0) ; S_t = Θ(H_t − θ)
        U_t = H_t − S_t·θ ; M_t = κ·(M_{t−1} + S_t·U_t) ; v_t = U_t − S_t·σ(M_t) ; D_t = x_t·S_t

    CLIF (KIND 1), state (v, C)::

        H_t = λ·v_{t−1} + x_t ; C_t = C_{t−1}·σ(H_t/τ) + S_t ; v_t = H_t − S_t·(θ + σ(C_t))

    Returns ``(H_t, S_t, v, a, b, d)`` with the new state.
    """
    hm = decay * v + x
    if KIND == 0:
        if CIU:
            a = k * (a + d)
            hm = hm - tl.maximum(a, 0.0 * a)
        s = tl.where(hm - thr >= 0.0, 1.0, 0.0 * hm)
        u = hm - s * thr
        v = u
        if MPIU:
            b = kappa * (b + s * u)
            v = u - s * _sigmoid(b)
        if CIU:
            d = x * s
    else:
        c_decayed = a * _sigmoid(hm / tau)
        s = tl.where(hm - thr >= 0.0, 1.0, 0.0 * hm)
        a = c_decayed + s
        v = hm - s * (thr + _sigmoid(a))
    return hm, s, v, a, b, d


def _neuron_backward_raw(
    g_out, gv, ga, gb, gd, hm, rec_a, rec_b, x, decay, thr, k, kappa, tau, gamma,
    KIND: tl.constexpr, MPIU: tl.constexpr, CIU: tl.constexpr,
    DETACH_RESET: tl.constexpr, DETACH_INHIBITION: tl.constexpr, CIU_GRAD: tl.constexpr,
    SHAPE: tl.constexpr,
):
    """BPTT through one step: from dL/dS_t (``g_out``) and the grads of the step's output state,
    the grads of its input state and dL/dx_t. ``hm`` = H_t; ILIF: ``rec_a`` = I_t, ``rec_b`` = M_t;
    CLIF: ``rec_a`` = C_{t−1}. ``CIU_GRAD``: gradient flows along the CIU trace and drive (CIU on,
    and either the clamp not detached or a gradient arriving at the final state). Returns
    ``(gx, gv, ga, gb, gd)``."""
    h = hm - thr
    s = tl.where(h >= 0.0, 1.0, 0.0 * h)
    surrogate = _surrogate_grad(h, gamma, SHAPE)
    g_s = g_out
    g_hm = gv
    gx = 0.0 * x
    if KIND == 0:
        u = hm - s * thr
        g_u = gv
        if MPIU:
            sig_m = _sigmoid(rec_b)
            g_s = g_s - gv * sig_m
            g_m = gb
            if not DETACH_INHIBITION:
                g_m = g_m - gv * s * sig_m * (1.0 - sig_m)
            g_s = g_s + kappa * g_m * u
            g_u = g_u + kappa * g_m * s
            gb = kappa * g_m
        g_hm = g_u
        if not DETACH_RESET:
            g_s = g_s - g_u * thr
        if CIU_GRAD:
            g_s = g_s + gd * x
            gx = gd * s
        g_hm = g_hm + g_s * surrogate
        if CIU_GRAD:
            g_i = ga
            if not DETACH_INHIBITION:
                g_i = g_i - tl.where(rec_a >= 0.0, g_hm, 0.0 * g_hm)
            ga = k * g_i
            gd = k * g_i
    else:
        sig_h = _sigmoid(hm / tau)
        c_t = rec_a * sig_h + s
        sig_c = _sigmoid(c_t)
        if not DETACH_RESET:
            g_s = g_s - gv * (thr + sig_c)
        g_c = ga - gv * s * sig_c * (1.0 - sig_c)
        g_s = g_s + g_c
        g_hm = g_hm + g_s * surrogate
        g_hm = g_hm + g_c * rec_a * sig_h * (1.0 - sig_h) / tau
        ga = g_c * sig_h
    gx = gx + g_hm
    gv = decay * g_hm
    return gx, gv, ga, gb, gd


def _load_params_raw(param_ptr):
    """The neuron's parameters: λ, θ, k, κ, τ and the surrogate width γ."""
    decay = tl.load(param_ptr)
    thr = tl.load(param_ptr + 1)
    k = tl.load(param_ptr + 2)
    kappa = tl.load(param_ptr + 3)
    tau = tl.load(param_ptr + 4)
    gamma = tl.load(param_ptr + 5)
    return decay, thr, k, kappa, tau, gamma


def _load_state_raw(ptr, offs, mask, row, N_STATE: tl.constexpr, like):
    """The up-to-four state rows (``row`` elements apart) of a ``[N_STATE, N]`` buffer; absent
    rows are zero."""
    zero = 0.0 * like
    v = tl.load(ptr + offs, mask=mask, other=0.0).to(like.dtype)
    a = zero
    b = zero
    d = zero
    if N_STATE > 1:
        a = tl.load(ptr + row + offs, mask=mask, other=0.0).to(like.dtype)
    if N_STATE > 2:
        b = tl.load(ptr + 2 * row + offs, mask=mask, other=0.0).to(like.dtype)
    if N_STATE > 3:
        d = tl.load(ptr + 3 * row + offs, mask=mask, other=0.0).to(like.dtype)
    return v, a, b, d


def _store_state_raw(ptr, offs, mask, row, v, a, b, d, N_STATE: tl.constexpr):
    tl.store(ptr + offs, v, mask=mask)
    if N_STATE > 1:
        tl.store(ptr + row + offs, a, mask=mask)
    if N_STATE > 2:
        tl.store(ptr + 2 * row + offs, b, mask=mask)
    if N_STATE > 3:
        tl.store(ptr + 3 * row + offs, d, mask=mask)


# ============================================================================= kernels (Triton)
def _forward_step_raw(
    t, x_ptr, spike_ptr, stats_ptr, offs, mask, row, T, v, a, b, d,
    decay, thr, k, kappa, tau, gamma,
    KIND: tl.constexpr, MPIU: tl.constexpr, CIU: tl.constexpr, SHAPE: tl.constexpr,
    STATS: tl.constexpr,
):
    """Step ``t`` of the forward kernel: load x_t, step, store S_t, add the step's statistics."""
    x = tl.load(x_ptr + t * row + offs, mask=mask, other=0.0).to(decay.dtype)
    hm, s, v, a, b, d = _neuron_step(x, v, a, b, d, decay, thr, k, kappa, tau, KIND, MPIU, CIU)
    tl.store(spike_ptr + t * row + offs, s.to(spike_ptr.dtype.element_ty), mask=mask)
    if STATS:
        h = (hm - thr).to(tl.float32)
        g = _surrogate_grad(h, gamma.to(tl.float32), SHAPE)
        is_open = tl.abs(h) < 0.5 * gamma.to(tl.float32)
        n_spikes = _column_sum(tl.where(mask, s, 0.0 * s).to(tl.float64), 0)
        n_open = _column_sum(tl.where(mask & is_open, 1.0, 0.0).to(tl.float64), 0)
        g_sum = _column_sum(tl.where(mask, g, 0.0 * g).to(tl.float64), 0)
        tl.atomic_add(stats_ptr + t, n_spikes)
        tl.atomic_add(stats_ptr + T + t, n_open)
        tl.atomic_add(stats_ptr + 2 * T + t, g_sum)
    return v, a, b, d


def _forward_kernel_raw(
    x_ptr, state_ptr, param_ptr, spike_ptr, final_ptr, stats_ptr, N, T,
    KIND: tl.constexpr, MPIU: tl.constexpr, CIU: tl.constexpr, N_STATE: tl.constexpr,
    SHAPE: tl.constexpr, STATS: tl.constexpr, CHUNK: tl.constexpr, BLOCK: tl.constexpr,
):
    """S[t] for t = 0..T−1 of the neurons of this block; the final state; optional statistics
    ``stats[0, t]`` spikes, ``stats[1, t]`` open count, ``stats[2, t]`` Σ g(h) (float64).

    Steps run in unrolled groups of CHUNK (the loads of a group can all be in flight at once),
    then the T mod CHUNK left one by one."""
    pid = tl.program_id(0)
    offs = pid.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < N
    decay, thr, k, kappa, tau, gamma = _load_params(param_ptr)
    like = tl.full([BLOCK], 0.0, decay.dtype)
    row = N.to(tl.int64)
    v, a, b, d = _load_state(state_ptr, offs, mask, row, N_STATE, like)
    n_full = T // CHUNK
    for c in range(n_full):
        for j in tl.static_range(CHUNK):
            v, a, b, d = _forward_step(
                c * CHUNK + j, x_ptr, spike_ptr, stats_ptr, offs, mask, row, T, v, a, b, d,
                decay, thr, k, kappa, tau, gamma, KIND, MPIU, CIU, SHAPE, STATS,
            )
    for t in range(n_full * CHUNK, T):
        v, a, b, d = _forward_step(
            t, x_ptr, spike_ptr, stats_ptr, offs, mask, row, T, v, a, b, d,
            decay, thr, k, kappa, tau, gamma, KIND, MPIU, CIU, SHAPE, STATS,
        )
    _store_state(final_ptr, offs, mask, row, v, a, b, d, N_STATE)


def _backward_kernel_raw(
    x_ptr, ckpt_ptr, param_ptr, grad_out_ptr, grad_x_ptr, grad_final_ptr, grad_state_ptr,
    N, T, N_CHUNKS,
    KIND: tl.constexpr, MPIU: tl.constexpr, CIU: tl.constexpr, N_STATE: tl.constexpr,
    SHAPE: tl.constexpr, DETACH_RESET: tl.constexpr, DETACH_INHIBITION: tl.constexpr,
    CIU_GRAD: tl.constexpr, FINAL_GRAD: tl.constexpr, STATE_GRAD: tl.constexpr,
    CHUNK: tl.constexpr, ROWS: tl.constexpr, BLOCK: tl.constexpr,
):
    """dL/dx for the neurons of this block: recompute, then BPTT chunk by chunk in reverse
    (CHUNK steps a chunk, the last one possibly shorter; ROWS ≥ CHUNK, a power of two, is the
    height of the replay tiles).

    ``ckpt`` is ``[N_CHUNKS, N_STATE, N]``: slot 0 holds the initial state on entry, this kernel
    fills slot c with the state at step c·CHUNK (c ≥ 1) before the reverse walk. With
    ``FINAL_GRAD`` the walk starts from dL/d(final state) (``grad_final[N_STATE, N]``), else from
    zero; with ``STATE_GRAD`` it ends by storing dL/d(initial state) in ``grad_state``.
    """
    pid = tl.program_id(0)
    offs = pid.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < N
    decay, thr, k, kappa, tau, gamma = _load_params(param_ptr)
    like = tl.full([BLOCK], 0.0, decay.dtype)
    row = N.to(tl.int64)
    slot = N_STATE * row

    # pass 1: checkpoint the state at every chunk start (none when T <= CHUNK)
    v, a, b, d = _load_state(ckpt_ptr, offs, mask, row, N_STATE, like)
    for c in range(N_CHUNKS - 1):
        for j in tl.static_range(CHUNK):
            t = c * CHUNK + j
            x = tl.load(x_ptr + t * row + offs, mask=mask, other=0.0).to(decay.dtype)
            hm, s, v, a, b, d = _neuron_step(
                x, v, a, b, d, decay, thr, k, kappa, tau, KIND, MPIU, CIU
            )
        _store_state(ckpt_ptr + (c + 1) * slot, offs, mask, row, v, a, b, d, N_STATE)

    # pass 2: chunks in reverse; replay one into register tiles, then walk it backwards
    steps = tl.arange(0, ROWS)[:, None]
    tile = tl.full([ROWS, BLOCK], 0.0, decay.dtype)
    if FINAL_GRAD:
        gv, ga, gb, gd = _load_state(grad_final_ptr, offs, mask, row, N_STATE, like)
    else:
        gv = like
        ga = like
        gb = like
        gd = like
    for cc in range(N_CHUNKS):
        c = N_CHUNKS - 1 - cc
        v, a, b, d = _load_state(ckpt_ptr + c * slot, offs, mask, row, N_STATE, like)
        hm_tile = tile
        a_tile = tile
        b_tile = tile
        for j in tl.static_range(CHUNK):
            t = c * CHUNK + j
            # `offs < N and t < T` as one comparison (`mask & scalar` breaks the interpreter)
            in_time = offs < tl.where(t < T, row, 0)
            x = tl.load(x_ptr + t * row + offs, mask=in_time, other=0.0).to(decay.dtype)
            a_before = a
            hm, s, v, a, b, d = _neuron_step(
                x, v, a, b, d, decay, thr, k, kappa, tau, KIND, MPIU, CIU
            )
            here = steps == j
            hm_tile = tl.where(here, hm[None, :], hm_tile)
            if KIND == 0:
                if CIU_GRAD:
                    a_tile = tl.where(here, a[None, :], a_tile)
                if MPIU:
                    b_tile = tl.where(here, b[None, :], b_tile)
            else:
                a_tile = tl.where(here, a_before[None, :], a_tile)
        for jj in tl.static_range(CHUNK):
            j = CHUNK - 1 - jj
            t = c * CHUNK + j
            valid = offs < tl.where(t < T, row, 0)
            here = steps == j
            hm = _column_sum(tl.where(here, hm_tile, 0.0), axis=0)
            rec_a = _column_sum(tl.where(here, a_tile, 0.0), axis=0)
            rec_b = _column_sum(tl.where(here, b_tile, 0.0), axis=0)
            x = like  # x_t enters the gradient only through the CIU drive D_t = x_t·S_t
            if CIU_GRAD:
                x = tl.load(x_ptr + t * row + offs, mask=valid, other=0.0).to(decay.dtype)
            g_out = tl.load(grad_out_ptr + t * row + offs, mask=valid, other=0.0).to(decay.dtype)
            gx, gv_new, ga_new, gb_new, gd_new = _neuron_backward(
                g_out, gv, ga, gb, gd, hm, rec_a, rec_b, x, decay, thr, k, kappa, tau, gamma,
                KIND, MPIU, CIU, DETACH_RESET, DETACH_INHIBITION, CIU_GRAD, SHAPE,
            )
            if FINAL_GRAD:  # the padding steps past T must hand the final-state gradient on
                gv = tl.where(t < T, gv_new, gv)
                ga = tl.where(t < T, ga_new, ga)
                gb = tl.where(t < T, gb_new, gb)
                gd = tl.where(t < T, gd_new, gd)
            else:  # from zero, the padding steps keep the gradients zero
                gv = gv_new
                ga = ga_new
                gb = gb_new
                gd = gd_new
            tl.store(grad_x_ptr + t * row + offs, gx.to(grad_x_ptr.dtype.element_ty), mask=valid)
    if STATE_GRAD:
        _store_state(grad_state_ptr, offs, mask, row, gv, ga, gb, gd, N_STATE)


_HELPERS = {
    "_forward_step": _forward_step_raw,
    "_sigmoid": _sigmoid_raw,
    "_column_sum": _column_sum_raw,
    "_surrogate_grad": _surrogate_grad_raw,
    "_neuron_step": _neuron_step_raw,
    "_neuron_backward": _neuron_backward_raw,
    "_load_params": _load_params_raw,
    "_load_state": _load_state_raw,
    "_store_state": _store_state_raw,
}
_KERNELS: dict[bool, tuple[Any, Any, dict[str, Any]]] = {}
# the kernels call the helpers by these global names; `_build_kernels` binds them
_sigmoid: Any = None
_column_sum: Any = None
_surrogate_grad: Any = None
_neuron_step: Any = None
_neuron_backward: Any = None
_load_params: Any = None
_load_state: Any = None
_store_state: Any = None
_forward_step: Any = None


def _compiling_for_cuda() -> bool:
    """Whether Triton's active driver targets an NVIDIA GPU (not AMD's, nor none)."""
    import triton

    try:
        return triton.runtime.driver.active.get_current_target().backend == "cuda"
    except Exception:  # no GPU driver: nothing will be launched anyway
        return False


def _build_kernels() -> tuple[Any, Any]:
    """The (forward, backward) kernels for Triton's current mode (compiled or interpreted)."""
    global tl
    import triton
    import triton.language as language

    tl = language
    interpret = _interpreting()
    if interpret not in _KERNELS:
        raw = dict(_HELPERS)
        if not interpret and _compiling_for_cuda():
            global libdevice
            from triton.language.extra.cuda import libdevice as cuda_libdevice

            libdevice = cuda_libdevice
            raw["_sigmoid"] = _sigmoid_ieee_raw
        # interpreted kernels are plain Python over patched `tl`: they call the helpers directly
        # (an interpreted call re-patches the language on every call, which is slow)
        wrap = (lambda fn: fn) if interpret else triton.jit
        helpers = {name: wrap(fn) for name, fn in raw.items()}
        forward = triton.jit(_forward_kernel_raw, do_not_specialize=["N", "T"])
        backward = triton.jit(_backward_kernel_raw, do_not_specialize=["N", "T", "N_CHUNKS"])
        _KERNELS[interpret] = (forward, backward, helpers)
    forward, backward, helpers = _KERNELS[interpret]
    if _neuron_step is not helpers["_neuron_step"]:
        globals().update(helpers)
    return forward, backward


# =================================================================================== host side
class KernelConfig(NamedTuple):
    """The compile-time choices of one neuron: its family, flags, state size, surrogate shape."""

    kind: int  # 0: ILIF family (LIF when mpiu and ciu are off), 1: CLIF
    mpiu: bool
    ciu: bool
    detach_reset: bool
    detach_inhibition: bool
    shape: int  # the surrogate's code
    n_state: int  # fields of the neuron's state tuple


class PreparedCall(NamedTuple):
    """The kernels' operands: ``x[T, N]`` contiguous, ``state[n_state, N]`` and
    ``params = [λ, θ, k, κ, τ, γ]`` in the compute dtype, and the config."""

    x2d: Tensor
    state2d: Tensor
    params: Tensor
    config: KernelConfig


@functools.lru_cache(maxsize=64)
def _param_tensor(values: tuple[float, ...], dtype: torch.dtype, device: torch.device) -> Tensor:
    """``[λ, θ, k, κ, τ, γ]`` on the device, cached so that a call does not copy it again."""
    return torch.tensor(values, dtype=dtype, device=device)


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _next_power_of_two(value: int) -> int:
    return 1 << max(0, (value - 1).bit_length())


def _check_block(block: int | None) -> None:
    if block is not None and (block < 1 or block & (block - 1)):
        raise ValueError(f"block must be a power of two, got block={block!r}")


def _check_chunk(chunk: int | None) -> None:
    if chunk is not None and (not isinstance(chunk, int) or chunk < 1):
        raise ValueError(f"chunk must be a positive number of steps, got chunk={chunk!r}")


# No contraction of λ·v + x into an fma: the eager reference rounds the product, and identical
# spikes need identical rounding.
_LAUNCH_OPTIONS: dict[str, Any] = {"num_warps": NUM_WARPS, "enable_fp_fusion": False}


def _on_device_of(t: Tensor):
    """Launch on ``t``'s GPU (Triton launches on the current device)."""
    return torch.cuda.device(t.device) if t.is_cuda else contextlib.nullcontext()


def kernel_config(form: FusedForm) -> tuple[KernelConfig, tuple[float, ...]] | None:
    """The kernel config and ``(λ, θ, k, κ, τ, γ)`` of a fused form, or None if unsupported."""
    if form.family not in SUPPORTED_FAMILIES:
        return None
    ciu, mpiu, detach_reset, detach_inhibition, shape = form.flags
    if not 0 <= shape < _N_SURROGATES:
        return None
    kind = 0 if form.family == "ilif" else 1
    config = KernelConfig(kind, bool(mpiu), bool(ciu), bool(detach_reset),
                          bool(detach_inhibition), shape, form.state_size)
    return config, tuple(float(v) for v in form.params)  # λ, θ, k, κ, τ, γ: the same order


def prepare(form: FusedForm, x_seq: Tensor, state: Sequence[Tensor]) -> PreparedCall | None:
    """The kernels' operands for ``form`` on ``x_seq[T, *]`` from the state rows ``state``, or
    None where the kernels do not apply (see :func:`triton_multi_step`). The state keeps its
    autograd graph."""
    if not triton_available():
        return None
    found = kernel_config(form)
    if found is None or x_seq.dim() < 1 or x_seq.dtype not in _SUPPORTED_DTYPES:
        return None
    if len(state) != form.state_size:
        return None
    if x_seq.device.type != "cuda" and not _interpreting():
        return None
    steps, n = x_seq.shape[0], math.prod(x_seq.shape[1:])
    if steps == 0 or n == 0:
        return None
    config, values = found
    dtype = _compute_dtype(x_seq.dtype)
    x2d = x_seq.reshape(steps, n).contiguous()
    state2d = torch.stack([t.reshape(n).to(dtype) for t in state])
    return PreparedCall(x2d, state2d, _param_tensor(values, dtype, x_seq.device), config)


def run_forward(
    call: PreparedCall, want_stats: bool, block: int | None = None, chunk: int | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """Launch the forward kernel: ``(spikes[T, N], final_state[n_state, N], stats)``, stats a
    float64 ``[3·T]`` (spikes, open count, Σ g(h) per step) when ``want_stats``."""
    forward_kernel, _ = _build_kernels()
    x2d, state2d, params, config = call
    steps, n = x2d.shape
    block = block or FORWARD_BLOCK
    chunk = min(chunk or MAX_CHUNK, steps)
    spikes = torch.empty_like(x2d)
    final = torch.empty_like(state2d)
    stats = torch.zeros(3 * steps if want_stats else 1, dtype=torch.float64, device=x2d.device)
    with _on_device_of(x2d):
        forward_kernel[(_cdiv(n, block),)](
            x2d, state2d, params, spikes, final, stats, n, steps,
            KIND=config.kind, MPIU=config.mpiu, CIU=config.ciu, N_STATE=config.n_state,
            SHAPE=config.shape, STATS=bool(want_stats), CHUNK=chunk, BLOCK=block,
            **_LAUNCH_OPTIONS,
        )
    return spikes, final, stats


def run_backward(
    call: PreparedCall,
    grad_spikes: Tensor,
    grad_final: Tensor | None = None,
    want_state_grad: bool = False,
    block: int | None = None,
    chunk: int | None = None,
) -> tuple[Tensor, Tensor | None]:
    """Launch the backward kernel: ``(dL/dx [T, N], dL/d(initial state) [n_state, N] or None)``
    from dL/dS ``[T, N]`` and, if given, dL/d(final state) ``[n_state, N]``."""
    _, backward_kernel = _build_kernels()
    x2d, state2d, params, config = call
    steps, n = x2d.shape
    block = block or BACKWARD_BLOCK
    chunk = min(chunk or MAX_CHUNK, steps)
    n_chunks = _cdiv(steps, chunk)
    if n_chunks == 1:
        ckpt = state2d  # read only: no checkpoint is written for a single chunk
    else:
        ckpt = torch.empty((n_chunks, *state2d.shape), dtype=state2d.dtype, device=x2d.device)
        ckpt[0].copy_(state2d)
    grad_x = torch.empty_like(x2d)
    grad_state = torch.empty_like(state2d) if want_state_grad else None
    final_grad = grad_final is not None
    with _on_device_of(x2d):
        backward_kernel[(_cdiv(n, block),)](
            x2d, ckpt, params, grad_spikes.contiguous(), grad_x,
            grad_final.to(state2d.dtype).contiguous() if final_grad else ckpt,
            grad_state if want_state_grad else ckpt,
            n, steps, n_chunks,
            KIND=config.kind, MPIU=config.mpiu, CIU=config.ciu, N_STATE=config.n_state,
            SHAPE=config.shape, DETACH_RESET=config.detach_reset,
            DETACH_INHIBITION=config.detach_inhibition,
            CIU_GRAD=config.ciu and (final_grad or not config.detach_inhibition),
            FINAL_GRAD=final_grad, STATE_GRAD=bool(want_state_grad), CHUNK=chunk,
            ROWS=_next_power_of_two(chunk), BLOCK=block, **_LAUNCH_OPTIONS,
        )
    return grad_x, grad_state


# The kernels as PyTorch operators (opaque to torch.compile and torch.export, like the CPU ones):
# the config travels as its integers, the launch options as optional ints.
@torch.library.custom_op("ilif::triton_forward", mutates_args=())
def triton_forward(x2d: Tensor, state2d: Tensor, params: Tensor, config: list[int],
                   want_stats: bool, block: int | None,
                   chunk: int | None) -> tuple[Tensor, Tensor, Tensor]:
    """:func:`run_forward` as an operator: ``(spikes[T, N], final_state[n_state, N], stats)``."""
    call = PreparedCall(x2d, state2d, params, KernelConfig(*config))
    return run_forward(call, want_stats, block, chunk)


@triton_forward.register_fake
def _(x2d, state2d, params, config, want_stats, block, chunk):
    return (x2d.new_empty(x2d.shape), state2d.new_empty(state2d.shape),
            x2d.new_empty((3 * x2d.shape[0] if want_stats else 1,), dtype=torch.float64))


@torch.library.custom_op("ilif::triton_backward", mutates_args=())
def triton_backward(x2d: Tensor, state2d: Tensor, params: Tensor, config: list[int],
                    grad_spikes: Tensor, grad_final: Tensor | None, want_state_grad: bool,
                    block: int | None, chunk: int | None) -> tuple[Tensor, Tensor]:
    """:func:`run_backward` as an operator: ``(dL/dx, dL/d(initial state))``, the latter
    ``[n_state, 0]`` when not wanted."""
    call = PreparedCall(x2d, state2d, params, KernelConfig(*config))
    grad_x, grad_state = run_backward(call, grad_spikes, grad_final, want_state_grad, block,
                                      chunk)
    return grad_x, (grad_state if grad_state is not None else state2d.new_empty((len(state2d), 0)))


@triton_backward.register_fake
def _(x2d, state2d, params, config, grad_spikes, grad_final, want_state_grad, block, chunk):
    n_state = state2d.shape[0]
    return (x2d.new_empty(x2d.shape),
            state2d.new_empty((n_state, state2d.shape[1] if want_state_grad else 0)))


def _triton_setup(ctx, inputs, output) -> None:
    x2d, state2d, params, config, _want_stats, block, chunk = inputs
    ctx.mark_non_differentiable(output[2])
    ctx.set_materialize_grads(False)  # an unused final state sends None: no work for it
    ctx.save_for_backward(x2d, state2d, params)
    ctx.options = (config, block, chunk)


def _triton_backward(ctx, grad_spikes, grad_final, _grad_stats):
    x2d, state2d, params = ctx.saved_tensors
    config, block, chunk = ctx.options
    if grad_spikes is None:
        grad_spikes = torch.zeros_like(x2d)
    want_state_grad = ctx.needs_input_grad[1]
    grad_x, grad_state = torch.ops.ilif.triton_backward(
        x2d, state2d, params, config, grad_spikes, grad_final, want_state_grad, block, chunk)
    return grad_x, (grad_state if want_state_grad else None), None, None, None, None, None


triton_forward.register_autograd(_triton_backward, setup_context=_triton_setup)


def triton_multi_step(
    form: FusedForm,
    x_seq: Tensor,
    state: Sequence[Tensor],
    want_stats: bool,
    *,
    block: int | None = None,
    chunk: int | None = None,
) -> tuple[Tensor, tuple[Tensor, ...], Tensor | None] | None:
    """Run the neuron described by ``form`` over ``x_seq[T, *]`` from the state rows ``state``
    with the Triton kernels.

    Returns ``(spikes, final_state_rows, stats)`` (``stats`` the float64 ``[3, T]`` spike count,
    gradient-open count and Σ g(h) per step when ``want_stats``, else None), or None where the
    kernels do not apply: Triton missing, another family or surrogate, an unsupported dtype, a
    tensor off CUDA (unless Triton interprets), or an empty input. Gradients flow as in the eager
    loop: to ``x_seq``, to an initial state that requires them, and back from a later use of the
    final state. ``block`` (a power of two) and ``chunk`` (steps unrolled together) override the
    defaults.
    """
    _check_block(block)
    _check_chunk(chunk)
    call = prepare(form, x_seq, state)
    if call is None:
        return None
    spikes, final, stats = torch.ops.ilif.triton_forward(
        call.x2d, call.state2d, call.params, [int(v) for v in call.config], bool(want_stats),
        block, chunk)
    step_shape = x_seq.shape[1:]
    final_rows = tuple(
        final[i].view(step_shape).to(state[i].dtype) for i in range(call.config.n_state)
    )
    sums = stats.view(3, x_seq.shape[0]) if want_stats else None
    return spikes.view(x_seq.shape), final_rows, sums
