"""Measurements of spiking networks: firing and gradient-open rates, gradient norms, energy.

``SpikeMonitor`` (firing, gradient-open and surrogate statistics per layer), ``GradientMonitor``
(gradient norms at the neuron inputs per layer and time step; both from :mod:`ilif.monitors`),
``EnergyMeter`` /
``measure_energy`` (operation counts and energy per inference beside the ANN). The training
callback, sweeps, reports and the demo live in :mod:`ilif.analysis.callback`,
:mod:`ilif.analysis.sweep`, :mod:`ilif.analysis.report` and :mod:`ilif.analysis.demo`.
"""

from ilif.analysis.energy import EnergyConstants, EnergyMeter, NeuronOps, measure_energy, neuron_ops
from ilif.monitors import GradientMonitor, SpikeMonitor

__all__ = [
    "SpikeMonitor", "GradientMonitor", "EnergyMeter", "EnergyConstants", "NeuronOps",
    "measure_energy", "neuron_ops",
]
