"""Kept for old imports: the spike monitor lives in :mod:`ilif.monitors.spikes`."""

from ilif.monitors.spikes import LayerStats, SpikeMonitor, neuron_layers

__all__ = ["SpikeMonitor", "LayerStats", "neuron_layers"]
