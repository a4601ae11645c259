"""Step-0 baselines and per-epoch trajectories of a training run, as a ``run_training`` callback.

- **Step 0** (:func:`step0_baseline`): firing rate, gradient-open rate and overactive share of the
  network *before any update*, batch norm in training mode (batch statistics, as the first SGD
  step sees them) and, beside it, in evaluation mode, over the first ``images`` (≥ 512)
  validation images. It separates what the neuron's equations give an untrained network from
  what training changed (docs/analysis.md, "Trajectories").
- **Per epoch** (:class:`TrajectoryCallback`): a validation pass with a spike monitor (firing per
  layer, overactive share, open rate; ``val_spikes`` in the epoch's metrics); per SGD step, the
  share of weights whose gradient is not zero and the relative update ``‖ΔW‖ / ‖W‖`` of every
  conv/linear weight, averaged over the epoch's steps. The gradient norms per layer and time
  step come from
  :class:`~ilif.analysis.callback.AnalysisCallback`.

The callback measures on a copy of the model and restores the random-number state it touches,
so the training run is the same with or without it.
"""

from __future__ import annotations

import math
import random
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ilif.monitors import SpikeMonitor
from ilif.neurons.base import reset_net

STEP0_FILE = "step0.json"
STEP0_IMAGES = 512
WEIGHT_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


def copy_model(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` without the neurons' statistics callbacks (a monitor attached to
    the original must not see the copy's passes)."""
    import copy

    from ilif.monitors import neuron_layers

    neurons = list(neuron_layers(model).values())
    callbacks = [n.stats_callback for n in neurons]
    for neuron in neurons:
        neuron.stats_callback = None
    try:
        return copy.deepcopy(model)
    finally:
        for neuron, callback in zip(neurons, callbacks, strict=True):
            neuron.stats_callback = callback


def _rates(monitor: SpikeMonitor) -> dict[str, Any]:
    summary = monitor.summary()
    return {
        "firing_rate": summary["firing_rate"],
        "open_rate": summary["open_rate"],
        "overactive_share": summary["overactive_share"],
        "dead_share": summary["dead_share"],
        "layer_firing_rate": {n: v["firing_rate"] for n, v in summary["layers"].items()},
    }


@torch.no_grad()
def spike_pass(model: nn.Module, batches: Any, images: int | None, train_mode: bool
               ) -> dict[str, Any]:
    """Rates of ``model`` over the first ``images`` samples of ``batches`` (``(x, y)`` pairs;
    None: all), in training or evaluation mode; overactive and dead shares are counted in both.
    Returns the rates and ``images``, the number of samples seen."""
    device = next(model.parameters()).device
    was_training = model.training
    model.train(train_mode)
    seen = 0
    try:
        with SpikeMonitor(model, track_neurons=True) as monitor:
            for x, _ in batches:
                if images is not None and seen >= images:
                    break
                if images is not None:
                    x = x[: images - seen]
                reset_net(model)
                model(x.to(device))
                seen += int(x.shape[0])
            out = _rates(monitor)
    finally:
        model.train(was_training)
    return {**out, "images": seen}


def step0_baseline(model: nn.Module, batches: Any, images: int = STEP0_IMAGES) -> dict[str, Any]:
    """Rates of the untrained ``model`` (a copy: its batch-norm statistics stay untouched) over
    the first ``images`` samples of ``batches``: ``bn_train`` with batch norm in training mode,
    ``bn_eval`` in evaluation mode. ``batches`` must be re-iterable (a list or a DataLoader)."""
    if images < 1:
        raise ValueError(f"images must be >= 1, got images={images!r}")
    state = (torch.get_rng_state(), random.getstate())
    try:
        copied = copy_model(model)
        return {"bn_train": spike_pass(copied, batches, images, train_mode=True),
                "bn_eval": spike_pass(copied, batches, images, train_mode=False)}
    finally:
        torch.set_rng_state(state[0])
        random.setstate(state[1])


class WeightSteps:
    """Per SGD step, for every conv/linear weight: the share of entries with a non-zero
    gradient, and ``‖W_t − W_{t−1}‖ / ‖W_{t−1}‖`` (the update of the previous step, read at the
    next backward pass). :meth:`epoch_summary` averages them over the steps since the last call."""

    def __init__(self, model: nn.Module) -> None:
        self.weights = {name: module.weight for name, module in model.named_modules()
                        if isinstance(module, WEIGHT_LAYERS)}
        self.previous: dict[str, torch.Tensor] = {}
        self.nonzero: dict[str, list[float]] = {n: [] for n in self.weights}
        self.update: dict[str, list[float]] = {n: [] for n in self.weights}
        self.steps = 0

    @torch.no_grad()
    def after_backward(self) -> None:
        self.steps += 1
        for name, weight in self.weights.items():
            grad = weight.grad
            if grad is not None:
                self.nonzero[name].append(float(torch.count_nonzero(grad)) / grad.numel())
            before = self.previous.get(name)
            if before is not None:
                norm = float(before.norm())
                if norm > 0:
                    self.update[name].append(float((weight.detach() - before).norm()) / norm)
            self.previous[name] = weight.detach().clone()

    def epoch_summary(self) -> dict[str, Any]:
        def mean(values: list[float]) -> float:
            return sum(values) / len(values) if values else math.nan

        out = {
            "steps": self.steps,
            "weight_grad_nonzero_share": {n: mean(v) for n, v in self.nonzero.items()},
            "weight_update_ratio": {n: mean(v) for n, v in self.update.items()},
        }
        self.nonzero = {n: [] for n in self.weights}
        self.update = {n: [] for n in self.weights}
        self.steps = 0
        return out


class TrajectoryCallback:
    """Step-0 baseline at the start (``step0.json`` in the run directory; a resumed run keeps
    the one written at its start) and per-epoch validation rates and weight-update statistics
    (added to the epoch's metrics, so to ``metrics.jsonl``).

    ``step0_images``: samples of the baseline (≥ 512 for the study); ``val_batches``: batches of
    the per-epoch validation pass (None: the whole validation split, or the test set where the
    run has no validation split).
    """

    def __init__(self, step0_images: int = STEP0_IMAGES, val_batches: int | None = None) -> None:
        self.step0_images = step0_images
        self.val_batches = val_batches
        self.model: nn.Module | None = None
        self.loader: Any = None
        self.weights: WeightSteps | None = None

    def _loader(self, config: Any) -> Any:
        from ilif.train.data import build_data

        state = (torch.get_rng_state(), random.getstate())
        try:
            data = build_data(config)
        finally:
            torch.set_rng_state(state[0])
            random.setstate(state[1])
        split = data.val if data.val is not None else data.test
        return torch.utils.data.DataLoader(split, batch_size=config.batch_size, shuffle=False)

    def on_train_start(self, model: nn.Module, config: Any) -> None:
        from ilif.files import write_json

        self.model = model
        self.loader = self._loader(config)
        self.weights = WeightSteps(model)
        path = Path(config.out) / STEP0_FILE
        fresh = not getattr(config, "resume", None)
        from ilif.train.distributed import is_rank_zero

        if fresh and is_rank_zero() and not path.exists():
            write_json(path, step0_baseline(model, self.loader, self.step0_images))

    def on_after_backward(self, model: nn.Module, batch_idx: int) -> None:
        if self.weights is not None:
            self.weights.after_backward()

    def on_epoch_end(self, epoch: int, metrics: dict[str, Any]) -> None:
        if self.model is None or self.weights is None:
            return
        weights = self.weights.epoch_summary()
        metrics["sgd_steps"] = epoch * weights.pop("steps")  # epochs of equal length
        metrics.update(weights)
        limit = None if self.val_batches is None else self.val_batches * self.loader.batch_size
        metrics["val_spikes"] = spike_pass(copy_model(self.model), self.loader, limit,
                                           train_mode=False)

    def on_train_end(self, model: nn.Module, summary: dict[str, Any]) -> None:
        self.model = self.loader = self.weights = None
