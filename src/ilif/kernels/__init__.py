"""Fused multi-step kernels (CPU and Triton) behind the neurons' ``backend`` argument.

``backend="auto"``: the fused CPU kernel (:mod:`ilif.kernels.cpu`) for CPU float32/float64
LIF, ILIF and CLIF; the Triton kernels (:mod:`ilif.kernels.triton_kernels`) for CUDA tensors when
Triton is installed; otherwise None, and the neuron runs its eager loop. ``"cpu"`` and
``"triton"`` force a kernel and raise a ValueError (or an ImportError naming the missing package)
saying why when it cannot run.
"""

from __future__ import annotations

from typing import NamedTuple

from torch import Tensor

__all__ = ["fused_multi_step", "triton_module"]


def triton_module():
    """:mod:`ilif.kernels.triton_kernels`, or None when Triton is missing (or broken)."""
    from ilif.kernels import triton_kernels  # imports Triton lazily itself

    return triton_kernels if triton_kernels.triton_available() else None


def _run_triton(neuron, x_seq: Tensor, state: NamedTuple, want_stats: bool, explicit: bool):
    module = triton_module()
    if module is None:
        if explicit:
            raise ImportError(
                "backend='triton' needs Triton: install it with `pip install 'ilif[triton]'` "
                "(on a CUDA machine), or use backend='auto' / 'cpu' / 'torch'"
            )
        return None
    result = module.triton_multi_step(neuron, x_seq, state, want_stats)
    if result is None and explicit:
        raise ValueError(
            f"backend='triton' has no kernel for {type(neuron).__name__} with input "
            f"dtype={x_seq.dtype} on device={x_seq.device}; use backend='auto' or 'torch'"
        )
    return result


def fused_multi_step(neuron, x_seq: Tensor, state: NamedTuple, want_stats: bool, backend: str):
    """Run ``neuron`` over ``x_seq`` with a fused kernel, or return None where none applies.

    Returns ``(spikes, final_state, stats)``; ``stats`` is a :class:`ilif.neurons.NeuronStats`
    when ``want_stats``. ``backend="auto"`` returns None when no kernel fits (the caller then runs
    the eager loop); an explicit ``"cpu"``/``"triton"`` that cannot run raises instead.
    """
    if backend == "triton":
        return _run_triton(neuron, x_seq, state, want_stats, explicit=True)
    if backend == "cpu":
        from ilif.kernels.cpu import cpu_multi_step

        return cpu_multi_step(neuron, x_seq, state, want_stats)
    if backend != "auto":
        raise ValueError(
            f"backend must be 'auto', 'torch', 'cpu' or 'triton', got backend={backend!r}"
        )
    if x_seq.is_cuda:
        return _run_triton(neuron, x_seq, state, want_stats, explicit=False)
    if x_seq.device.type != "cpu":
        return None
    from ilif.kernels.cpu import run_checked, unsupported_reason

    if unsupported_reason(neuron, x_seq, state) is not None:
        return None
    return run_checked(neuron, x_seq, state, want_stats)
