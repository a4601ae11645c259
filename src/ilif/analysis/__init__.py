"""Measurements of spiking networks: firing and gradient-open rates, gradient norms, energy.

``SpikeMonitor`` (firing, gradient-open and surrogate statistics per layer), ``GradientMonitor``
(gradient norms at the neuron inputs per layer and time step; both from :mod:`ilif.monitors`),
``EnergyMeter`` / ``measure_energy`` (operation counts and energy per inference beside the ANN,
under the presets of ``ENERGY_PRESETS``). The training callbacks (:mod:`ilif.analysis.callback`;
step-0 baselines and trajectories in :mod:`ilif.analysis.trajectory`), sweeps, reports and the
demo live in :mod:`ilif.analysis.callback`, :mod:`ilif.analysis.trajectory`,
:mod:`ilif.analysis.sweep`, :mod:`ilif.analysis.report` and :mod:`ilif.analysis.demo`.
"""

from ilif.analysis.energy import (
    ENERGY_PRESETS,
    EnergyConstants,
    EnergyMeter,
    NeuronOps,
    break_even_rate,
    energy_preset,
    measure_energy,
    neuron_ops,
)
from ilif.monitors import GradientMonitor, SpikeMonitor

__all__ = [
    "SpikeMonitor", "GradientMonitor", "EnergyMeter", "EnergyConstants", "NeuronOps",
    "measure_energy", "neuron_ops", "ENERGY_PRESETS", "energy_preset", "break_even_rate",
]
