"""Spiking neurons: functional steps, the shared stateful module, and the neuron modules."""

from ilif.neurons.base import Neuron, NeuronStats, reset_net
from ilif.neurons.modules import (
    ALIF,
    CLIF,
    ILIF,
    LIF,
    NEURON_VARIANTS,
    NEURONS,
    PLIF,
    create_neuron,
)

__all__ = [
    "Neuron", "NeuronStats", "reset_net", "LIF", "ILIF", "CLIF", "PLIF", "ALIF",
    "NEURONS", "NEURON_VARIANTS", "create_neuron",
]
