"""Per-layer spike statistics of a model's neurons, read from every backend.

Each neuron reports, per forward call, per time step: spike count, gradient-open count
(|h| < γ/2, docs/neurons.md) and the sum of the surrogate derivative g(h) (the eager loop computes
them from ``h``, the fused kernels count them as they go). The monitor accumulates::

    firing_rate      = Σ spikes / (neurons · T · samples)     (spikes per neuron per step)
    open_rate        = Σ open   / (neurons · T · samples)     (gradient-open neuron-steps)
    surrogate_mean   = Σ g(h)   / (neurons · T · samples)
    overactive_share = share of a sample's neurons that fire at more than half of its T steps
    dead_share       = share of neurons that never fire over the whole monitored pass
                       (these two on evaluation passes, by default; see ``track_neurons``)

Running sums stay on the neuron's device as small tensors (one value per time step, plus one
"ever fired" flag per neuron), so recording never waits for the device; :meth:`SpikeMonitor.summary`
reads them once. No activation outlives the forward pass that produced it. While the monitor is
disabled (``monitor.enabled = False``) or closed, the neurons carry no callback and compute no
statistics at all.

Overactivation and per-time-step rates need the multi-step mode (``step_mode="m"``, one call per
sequence); a single-step call counts as one step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from ilif.neurons.base import Neuron, NeuronStats


def _accumulate(total: Tensor | None, values: Tensor) -> Tensor:
    """``total + values`` for per-step sums, padding the shorter one with zeros (T may vary)."""
    values = values.detach().to(torch.float64)
    if total is None:
        return values.clone()
    if total.device != values.device:
        values = values.to(total.device)
    if total.numel() < values.numel():
        total = torch.cat([total, total.new_zeros(values.numel() - total.numel())])
    total[: values.numel()] += values
    return total


def _as_list(values: Tensor | None) -> list[float]:
    return [] if values is None else [float(v) for v in values.cpu().tolist()]


@dataclass
class LayerStats:
    """Running sums of one neuron layer (per-step tensors on the layer's device)."""

    spikes: Tensor | None = None
    open: Tensor | None = None
    surrogate_sum: Tensor | None = None
    neuron_steps: list[int] = field(default_factory=list)  # per time step
    neurons: int = 0  # per sample
    steps: int = 0
    overactive: Tensor | None = None  # overactive (sample, neuron) pairs
    neuron_samples: int = 0  # (sample, neuron) pairs seen
    ever_fired: Tensor | None = None

    def record(self, stats: NeuronStats, spikes: Tensor) -> None:
        steps = int(stats.spikes.numel())
        self.spikes = _accumulate(self.spikes, stats.spikes)
        self.open = _accumulate(self.open, stats.open)
        self.surrogate_sum = _accumulate(self.surrogate_sum, stats.surrogate_sum)
        if len(self.neuron_steps) < steps:
            self.neuron_steps += [0] * (steps - len(self.neuron_steps))
        for t in range(steps):
            self.neuron_steps[t] += int(stats.neurons)
        self.neurons = spikes[0, 0].numel() if spikes.dim() > 2 else spikes[0].numel()
        self.steps = max(self.steps, steps)

    def record_neurons(self, spikes: Tensor) -> None:
        """Per-neuron flags from the spike tensor ``[T, N, *]`` (or ``[T, *]``) of one call: one
        pass over the spikes (the count per neuron), the rest on the T-times smaller counts."""
        steps = spikes.shape[0]
        with torch.no_grad():
            counts = spikes.detach().sum(dim=0)  # spikes per neuron over the sequence
            samples = counts.shape[0] if counts.dim() > 1 else 1
            flat = counts.reshape(samples, -1)
            fired = flat.amax(dim=0) > 0
            if self.ever_fired is None or self.ever_fired.shape != fired.shape:
                self.ever_fired = fired
            else:
                self.ever_fired |= fired
            if steps > 1:
                over = torch.count_nonzero(flat > steps / 2).reshape(1)
                self.overactive = _accumulate(self.overactive, over)
                self.neuron_samples += flat.numel()

    def as_dict(self) -> dict[str, Any]:
        total = float(max(sum(self.neuron_steps), 1))
        spikes, opened = _as_list(self.spikes), _as_list(self.open)
        per_step = [s / max(c, 1) for s, c in zip(spikes, self.neuron_steps, strict=False)]
        dead = (
            1.0 - float(self.ever_fired.to(torch.float64).mean())
            if self.ever_fired is not None
            else math.nan
        )
        overactive = (
            float(self.overactive.sum()) / self.neuron_samples if self.neuron_samples else math.nan
        )
        return {
            "firing_rate": sum(spikes) / total,
            "open_rate": sum(opened) / total,
            "surrogate_mean": sum(_as_list(self.surrogate_sum)) / total,
            "neurons": self.neurons,
            "neuron_steps": sum(self.neuron_steps),
            "overactive_share": overactive,
            "dead_share": dead,
            "firing_rate_per_step": per_step,
            "open_rate_per_step": [
                s / max(c, 1) for s, c in zip(opened, self.neuron_steps, strict=False)
            ],
        }


def _skip_disabled(callback: Any, name: str) -> Any:
    """The first callback down a chain of monitors that is not a disabled SpikeMonitor."""
    owner = getattr(callback, "__self__", None)
    while isinstance(owner, SpikeMonitor) and not owner.enabled:
        callback = owner._previous.pop(name, None)
        owner = getattr(callback, "__self__", None)
    return callback


def neuron_layers(model: nn.Module) -> dict[str, Neuron]:
    """The model's neurons by qualified module name (in registration order)."""
    layers = {
        name or type(module).__name__: module
        for name, module in model.named_modules()
        if isinstance(module, Neuron)
    }
    return layers


class SpikeMonitor:
    """Accumulate firing, gradient-open and surrogate statistics for every neuron of a model.

    Usage::

        with SpikeMonitor(model) as mon:
            model(x)
        mon.summary()["layers"]["features.2"]["firing_rate"]

    ``track_neurons`` keeps one "ever fired" flag per neuron (for ``dead_share``) and counts
    overactive neurons, which costs one more pass over the spikes: ``None`` (default) on
    evaluation passes only (neurons in eval mode, where these two are defined; in training mode
    they read NaN and the monitor adds nothing to the kernels' own counting), ``True`` always,
    ``False`` never.
    """

    def __init__(self, model: nn.Module, track_neurons: bool | None = None) -> None:
        self.track_neurons = track_neurons
        self._neurons = neuron_layers(model)
        if not self._neurons:
            raise ValueError("SpikeMonitor: the model holds no ilif neuron to monitor")
        self._names = {id(module): name for name, module in self._neurons.items()}
        self.layers: dict[str, LayerStats] = {name: LayerStats() for name in self._neurons}
        self._previous: dict[str, Any] = {}
        self._enabled = False
        self.enabled = True

    # ---------------------------------------------------------------------------- on and off
    @property
    def enabled(self) -> bool:
        """Whether the neurons report to this monitor. Off: no callback, no statistics work."""
        return self._enabled

    @enabled.setter
    def enabled(self, value: bool) -> None:
        value = bool(value)
        if value == self._enabled:
            return
        if value and not self._neurons:
            raise RuntimeError("SpikeMonitor: closed monitors cannot be enabled again")
        for name, neuron in self._neurons.items():
            if value and name not in self._previous:
                self._previous[name] = neuron.stats_callback
                neuron.stats_callback = self._record
            elif not value and neuron.stats_callback == self._record:
                neuron.stats_callback = _skip_disabled(self._previous.pop(name, None), name)
            # else: a monitor attached later calls this one and passes each call on to it
        self._enabled = value

    # ------------------------------------------------------------------------------- recording
    def _record(self, neuron: Neuron, stats: NeuronStats, spikes: Tensor) -> None:
        name = self._names.get(id(neuron))
        if name is None:  # a copy of a monitored neuron (copy.deepcopy copies its callback)
            return
        if self._enabled:
            layer = self.layers[name]
            layer.record(stats, spikes)
            track = self.track_neurons
            if track or (track is None and not neuron.training):
                layer.record_neurons(spikes)
        chained = self._previous.get(name)
        if chained is not None:
            chained(neuron, stats, spikes)

    # --------------------------------------------------------------------------------- reading
    def reset(self) -> None:
        """Clear every running sum (e.g. at the start of an epoch or an evaluation pass)."""
        for name in self.layers:
            self.layers[name] = LayerStats()

    def summary(self) -> dict[str, Any]:
        """Per-layer and whole-network statistics (rates weighted by neuron-steps)."""
        layers = {name: layer.as_dict() for name, layer in self.layers.items()}
        steps = {name: float(layer["neuron_steps"]) for name, layer in layers.items()}
        denominator = max(sum(steps.values()), 1.0)

        def weighted(key: str, weights: dict[str, float]) -> float:
            pairs = [
                (layers[n][key], w) for n, w in weights.items() if not math.isnan(layers[n][key])
            ]
            total = sum(w for _, w in pairs)
            return sum(v * w for v, w in pairs) / total if total else math.nan

        neurons = {name: float(layer["neurons"]) for name, layer in layers.items()}
        return {
            "firing_rate": sum(layers[n]["firing_rate"] * w for n, w in steps.items())
            / denominator,
            "open_rate": sum(layers[n]["open_rate"] * w for n, w in steps.items()) / denominator,
            "surrogate_mean": sum(layers[n]["surrogate_mean"] * w for n, w in steps.items())
            / denominator,
            "overactive_share": weighted("overactive_share", neurons),
            "dead_share": weighted("dead_share", neurons),
            "layers": layers,
        }

    def close(self) -> None:
        """Detach from the model: its neurons stop computing statistics."""
        self.enabled = False
        self._neurons = {}

    def __enter__(self) -> SpikeMonitor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
