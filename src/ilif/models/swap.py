"""Put another module in every neuron's place: SpikingJelly's neurons, ``nn.Identity``, ...

Every spiking layer of an ilif model is an :class:`ilif.neurons.Neuron` submodule that takes and
returns a sequence ``[T, N, ...]`` (the same shape), with BN and the other stateless layers outside
it. Any module with that signature can therefore stand in its place (docs/performance.md).
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from ilif.neurons import Neuron


def swap_neurons(model: nn.Module, make: Callable[[Neuron], nn.Module]) -> int:
    """Replace, in place, every :class:`ilif.neurons.Neuron` submodule of ``model`` by
    ``make(neuron)``; returns how many were replaced.

    ``make`` gets the neuron it replaces (to copy τ, θ, the surrogate width, ...) and returns a
    module taking and returning ``[T, N, ...]``; a module with a ``reset()`` method is reset by
    the model before each forward, like the neurons.
    """
    if isinstance(model, Neuron):
        raise TypeError("swap_neurons replaces the neurons inside a model; got a Neuron itself")
    targets = [
        (parent, name, child)
        for parent in model.modules()
        for name, child in parent.named_children()
        if isinstance(child, Neuron)
    ]
    for parent, name, child in targets:
        replacement = make(child)
        if not isinstance(replacement, nn.Module):
            raise TypeError(
                f"swap_neurons: make() must return an nn.Module, got {type(replacement).__name__} "
                f"for {name!r}"
            )
        setattr(parent, name, replacement)
    return len(targets)
