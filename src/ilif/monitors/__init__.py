"""Monitors of a model's neurons: spike statistics and gradient norms, per layer and time step.

``SpikeMonitor`` (firing, gradient-open and surrogate statistics) and ``GradientMonitor``
(gradient norms at the neuron inputs). They hook the neurons only, so the trainer and the
analysis tools both use them. What they measure: docs/analysis.md and docs/neurons.md.
"""

from ilif.monitors.gradients import GradientMonitor, GradientStats
from ilif.monitors.spikes import LayerStats, SpikeMonitor, neuron_layers

__all__ = ["SpikeMonitor", "GradientMonitor", "LayerStats", "GradientStats", "neuron_layers"]
