"""ilif: spiking neural networks with the temporal Inhibitory Leaky Integrate-and-Fire neuron."""

from ilif import surrogate
from ilif.neurons import (
    ALIF,
    CLIF,
    ILIF,
    LIF,
    MPBN,
    PLIF,
    Neuron,
    NeuronStats,
    create_neuron,
    neuron_names,
    register_neuron,
    reset_net,
)
from ilif.version import __version__

__all__ = [
    "surrogate", "Neuron", "NeuronStats", "LIF", "ILIF", "CLIF", "PLIF", "ALIF", "MPBN",
    "create_neuron", "register_neuron", "neuron_names", "reset_net", "__version__",
]
