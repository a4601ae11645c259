"""ilif: spiking neural networks with the temporal Inhibitory Leaky Integrate-and-Fire neuron."""

from ilif import surrogate
from ilif.neurons import (
    ALIF,
    CLIF,
    ILIF,
    LIF,
    PLIF,
    Neuron,
    NeuronStats,
    create_neuron,
    reset_net,
)

__version__ = "0.1.0"

__all__ = [
    "surrogate", "Neuron", "NeuronStats", "LIF", "ILIF", "CLIF", "PLIF", "ALIF",
    "create_neuron", "reset_net", "__version__",
]
