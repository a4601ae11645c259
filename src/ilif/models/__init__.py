"""Spiking models: ``create_model(name, neuron=..., ...)`` and ``list_models()``."""

from ilif.models.base import SpikingModel
from ilif.models.layers import TemporalDropout, TimeDistributed, neuron_factory
from ilif.models.registry import MODELS, create_model, list_models
from ilif.models.swap import swap_neurons

__all__ = [
    "SpikingModel", "TimeDistributed", "TemporalDropout", "neuron_factory", "MODELS",
    "create_model", "list_models", "swap_neurons",
]
