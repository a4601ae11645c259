"""Spiking neurons: functional steps, the shared stateful module, the registry and the neurons.

Equations and conventions: docs/neurons.md. A neuron is a :class:`Neuron` subclass registered
by name with :func:`register_neuron`; :func:`create_neuron` builds one by name.
"""

from ilif.neurons.base import Neuron, NeuronStats, reset_net
from ilif.neurons.modules import ALIF, CLIF, ILIF, LIF, NEURON_VARIANTS, PLIF
from ilif.neurons.mpbn import MPBN
from ilif.neurons.ops import NeuronOps
from ilif.neurons.registry import (
    create_neuron,
    import_modules,
    neuron_class,
    neuron_names,
    register_neuron,
)

__all__ = [
    "Neuron", "NeuronStats", "NeuronOps", "reset_net", "LIF", "ILIF", "CLIF", "PLIF", "ALIF",
    "MPBN", "NEURON_VARIANTS", "create_neuron", "register_neuron", "neuron_names",
    "neuron_class", "import_modules",
]
