"""Fused multi-step kernels (CPU and Triton) behind the neurons' ``backend`` argument.

A neuron describes itself as a :class:`FusedForm` (``Neuron.fused_form()``); the kernels take
that and tensors only (docs/performance.md). ``backend="auto"``: the fused CPU kernel
(:mod:`ilif.kernels.cpu`) for CPU float32/float64 inputs; the Triton kernels
(:mod:`ilif.kernels.triton_kernels`) for CUDA tensors when Triton is installed; otherwise None,
and the neuron runs its eager loop. ``"cpu"`` and ``"triton"`` force a kernel and raise a
ValueError (or an ImportError naming the missing package) saying why when it cannot run.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

from ilif.kernels import cpu as _cpu
from ilif.kernels.contract import FusedForm

__all__ = ["FusedForm", "FusedResult", "fused_multi_step", "triton_module"]

# (spikes, final state rows, float64 statistics [3, T] or None)
FusedResult = tuple[Tensor, tuple[Tensor, ...], "Tensor | None"]


def triton_module():
    """:mod:`ilif.kernels.triton_kernels`, or None when Triton is missing (or broken)."""
    from ilif.kernels import triton_kernels  # imports Triton lazily itself

    return triton_kernels if triton_kernels.triton_available() else None


def _run_triton(form: FusedForm, x_seq: Tensor, state: Sequence[Tensor], want_stats: bool,
                explicit: bool) -> FusedResult | None:
    module = triton_module()
    if module is None:
        if explicit:
            raise ImportError(
                "backend='triton' needs Triton: install it with `pip install 'ilif[triton]'` "
                "(on a CUDA machine), or use backend='auto' / 'cpu' / 'torch'"
            )
        return None
    result = module.triton_multi_step(form, x_seq, state, want_stats)
    if result is None and explicit:
        raise ValueError(
            f"backend='triton' has no kernel for the {form.family!r} family with input "
            f"dtype={x_seq.dtype} on device={x_seq.device}; use backend='auto' or 'torch'"
        )
    return result


def fused_multi_step(form: FusedForm, x_seq: Tensor, state: Sequence[Tensor], zero_state: bool,
                     want_stats: bool, backend: str) -> FusedResult | None:
    """Run the neuron described by ``form`` over ``x_seq`` from ``state`` (its rows;
    ``zero_state``: the all-zero state of a fresh neuron) with a fused kernel, or return None
    where none applies.

    Returns ``(spikes, final_state_rows, stats)``; ``stats`` is a float64 ``[3, T]`` tensor
    (spike count, gradient-open count, Σ g(h) per step) when ``want_stats``, else None.
    ``backend="auto"`` returns None when no kernel fits (the caller then runs the eager loop); an
    explicit ``"cpu"``/``"triton"`` that cannot run raises instead.
    """
    if backend == "triton":
        return _run_triton(form, x_seq, state, want_stats, explicit=True)
    if backend == "cpu":
        return _cpu.cpu_multi_step(form, x_seq, state, zero_state, want_stats)
    if backend != "auto":
        raise ValueError(
            f"backend must be 'auto', 'torch', 'cpu' or 'triton', got backend={backend!r}"
        )
    if x_seq.is_cuda:
        return _run_triton(form, x_seq, state, want_stats, explicit=False)
    if x_seq.device.type != "cpu":
        return None
    if _cpu.unsupported_reason(form, x_seq, state) is not None:
        return None
    return _cpu.run_checked(form, x_seq, state, zero_state, want_stats)
