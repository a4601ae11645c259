"""Gradient norms at the inputs of a model's neurons, per layer and per time step.

For every neuron layer ``l`` and backward pass ``b`` the hook on the layer's input current
``x = [x_1 … x_T]`` receives ``g = ∂L/∂x`` and accumulates::

    n_{l,t,b} = ‖g_t‖₂                       (over the batch and the layer's neurons)
    grad_norm_per_step[l][t] = sqrt(mean_b n_{l,t,b}²)
    grad_norm[l]             = sqrt(mean_b Σ_t n_{l,t,b}²)       (= RMS over passes of ‖g‖₂)
    grad_mean_abs[l]         = Σ_b Σ |g| / Σ_b numel(g)

so the table shows how the gradient shrinks with depth (layer by layer), with time (step by step,
backwards from T) and, across runs, with the surrogate width γ. Hooks sit on the input *tensors*
(registered in a forward pre-hook of each neuron), so they work with every backend, hold no tensor
after the backward pass, and cost nothing while the monitor is disabled or in ``torch.no_grad()``.
Single-step models (``step_mode="s"``) are handled too: each call since the neuron's last
``reset()`` is the next time step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
from torch import Tensor, nn

from ilif.monitors.spikes import _accumulate, _as_list, neuron_layers
from ilif.neurons.base import Neuron


@dataclass
class GradientStats:
    """Running sums of one layer: squared norms per step, passes, |g| sums."""

    squared_per_step: Tensor | None = None
    abs_sum: Tensor | None = None
    elements: int = 0
    passes: int = 0

    def as_dict(self) -> dict[str, Any]:
        squared = _as_list(self.squared_per_step)
        passes = max(self.passes, 1)
        if not self.passes:
            return {"grad_norm": math.nan, "grad_norm_per_step": [], "grad_mean_abs": math.nan}
        return {
            "grad_norm": math.sqrt(sum(squared) / passes),
            "grad_norm_per_step": [math.sqrt(s / passes) for s in squared],
            "grad_mean_abs": sum(_as_list(self.abs_sum)) / max(self.elements, 1),
        }


class GradientMonitor:
    """Per-layer and per-time-step norms of ∂L/∂x at every neuron's input current.

    Usage::

        with GradientMonitor(model) as grads:
            loss = criterion(model(x), y); loss.backward()
        grads.summary()["layers"]["features.2"]["grad_norm_per_step"]
    """

    def __init__(self, model: nn.Module) -> None:
        self._neurons = neuron_layers(model)
        if not self._neurons:
            raise ValueError("GradientMonitor: the model holds no ilif neuron to monitor")
        self.layers: dict[str, GradientStats] = {name: GradientStats() for name in self._neurons}
        self._steps: dict[str, int] = {}
        self._handles = [
            neuron.register_forward_pre_hook(partial(self._on_forward, name))
            for name, neuron in self._neurons.items()
        ]
        self.enabled = True

    # ------------------------------------------------------------------------------- recording
    def _on_forward(self, name: str, neuron: Neuron, inputs: tuple[Any, ...]) -> None:
        if not self.enabled or not torch.is_grad_enabled():
            return
        x = inputs[0] if inputs else None
        if not isinstance(x, Tensor) or not x.requires_grad:
            return
        if neuron.step_mode == "m":
            first_step, sequence = 0, True
        else:
            first_step = 0 if neuron.state is None else self._steps.get(name, 0) + 1
            self._steps[name] = first_step
            sequence = False
        x.register_hook(partial(self._on_gradient, name, first_step, sequence))

    def _on_gradient(self, name: str, first_step: int, sequence: bool, grad: Tensor) -> None:
        with torch.no_grad():
            g = grad.detach()
            steps = g.reshape(g.shape[0], -1) if sequence and g.dim() > 0 else g.reshape(1, -1)
            # norms in the gradient's dtype (no full-size float64 or squared copies on every
            # backward), accumulated in float64 from there on
            squared = torch.linalg.vector_norm(steps, dim=1).to(torch.float64).square()
            if first_step:
                squared = torch.cat([squared.new_zeros(first_step), squared])
            layer = self.layers[name]
            layer.squared_per_step = _accumulate(layer.squared_per_step, squared)
            abs_sum = torch.linalg.vector_norm(g.reshape(-1), 1).to(torch.float64).reshape(1)
            layer.abs_sum = _accumulate(layer.abs_sum, abs_sum)
            layer.elements += g.numel()
            if first_step == 0:
                layer.passes += 1

    # --------------------------------------------------------------------------------- reading
    def reset(self) -> None:
        """Clear the running sums."""
        for name in self.layers:
            self.layers[name] = GradientStats()

    def summary(self) -> dict[str, Any]:
        """``{"grad_norm": RMS over layers, "layers": {name: {grad_norm, grad_norm_per_step,
        grad_mean_abs}}}``; NaN for a layer no gradient reached."""
        layers = {name: stats.as_dict() for name, stats in self.layers.items()}
        norms = [v["grad_norm"] for v in layers.values() if not math.isnan(v["grad_norm"])]
        overall = math.sqrt(sum(n * n for n in norms) / len(norms)) if norms else math.nan
        return {"grad_norm": overall, "layers": layers}

    def close(self) -> None:
        """Remove the hooks from the model."""
        for handle in self._handles:
            handle.remove()
        self._handles = []
        self.enabled = False

    def __enter__(self) -> GradientMonitor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
