"""Fused multi-step kernels (CPU and Triton) behind the neurons' ``backend`` argument."""

from __future__ import annotations

from typing import NamedTuple

from torch import Tensor


def fused_multi_step(neuron, x_seq: Tensor, state: NamedTuple, want_stats: bool, backend: str):
    """Run ``neuron`` over ``x_seq`` with a fused kernel, or return None where none applies.

    Returns ``(spikes, final_state, stats)``; ``stats`` is a :class:`ilif.neurons.NeuronStats`
    when ``want_stats``. ``backend="auto"`` returns None when no kernel fits (the caller then runs
    the eager loop); an explicit ``"cpu"``/``"triton"`` that cannot run raises instead.
    """
    if backend in ("cpu", "triton"):
        raise RuntimeError(f"backend={backend!r} is not available for {type(neuron).__name__}")
    return None
