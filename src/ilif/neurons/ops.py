"""Per-step operation counts of a neuron, for the energy model (docs/neurons.md, "Energy")."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class NeuronOps:
    """Operations of one neuron for one step: ``dense_*`` every step, ``spike_*`` per spike.

    Multiplies count as MACs, adds and compares as accumulates (ACs), a sigmoid separately (the
    energy model prices it in MACs); ``state_values`` is the number of values kept per neuron.
    At firing rate r a neuron-step costs ``dense_mac + r·spike_mac`` MACs, and so on.
    """

    dense_mac: float
    dense_ac: float
    dense_sigmoid: float = 0.0
    spike_mac: float = 0.0
    spike_ac: float = 0.0
    spike_sigmoid: float = 0.0
    state_values: int = 1

    def per_step(self, rate: float) -> tuple[float, float, float]:
        """(MACs, ACs, sigmoids) per neuron per step at firing rate ``rate``."""
        return (
            self.dense_mac + rate * self.spike_mac,
            self.dense_ac + rate * self.spike_ac,
            self.dense_sigmoid + rate * self.spike_sigmoid,
        )
