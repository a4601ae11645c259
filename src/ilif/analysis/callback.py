"""The measurements riding on a training run, as a ``run_training`` callback.

During training: per-layer and per-time-step gradient norms at the neuron inputs
(:class:`~ilif.monitors.GradientMonitor`), added to every epoch's metrics
(``grad_norm``, ``layer_grad_norm``, ``layer_grad_norm_per_step``). The training loop's own
:class:`~ilif.monitors.SpikeMonitor` already adds the training firing and gradient-open
rates.

At the end: one evaluation pass of the selected checkpoint (``checkpoint_best.pt``, whose test
accuracy the run reports) over the test set with a spike monitor and the energy meter, and the
spikes of one layer for one test sample; added to the summary under ``analysis`` (the raster goes
to ``raster.json`` in the run directory).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ilif.analysis.energy import ENERGY_PRESETS, EnergyConstants, EnergyMeter
from ilif.analysis.trajectory import copy_model
from ilif.monitors import GradientMonitor, SpikeMonitor, neuron_layers
from ilif.neurons.base import reset_net

RASTER_FILE = "raster.json"
RASTER_NEURONS = 200  # neurons of the raster (the first ones of the layer)


def raster_layer(model: nn.Module) -> str:
    """The layer the raster shows: the first neuron layer (it sees the input directly)."""
    return next(iter(neuron_layers(model)))


class AnalysisCallback:
    """Gradient norms per epoch; test-set spike statistics, energy and a raster at the end.

    ``max_batches``: test batches of the final analysis pass (None: the run's
    ``limit_eval_batches``, else the whole test set).
    """

    def __init__(
        self, constants: EnergyConstants | None = None, max_batches: int | None = None
    ) -> None:
        self.constants = constants or EnergyConstants()
        self.max_batches = max_batches
        self.config: Any = None
        self.gradients: GradientMonitor | None = None

    # ------------------------------------------------------------------------- during training
    def on_train_start(self, model: nn.Module, config: Any) -> None:
        self.config = config
        self.gradients = GradientMonitor(model)

    def on_epoch_end(self, epoch: int, metrics: dict[str, Any]) -> None:
        if self.gradients is None:
            return
        summary = self.gradients.summary()
        self.gradients.reset()
        layers = summary["layers"]
        metrics["grad_norm"] = summary["grad_norm"]
        metrics["layer_grad_norm"] = {n: v["grad_norm"] for n, v in layers.items()}
        metrics["layer_grad_norm_per_step"] = {
            n: v["grad_norm_per_step"] for n, v in layers.items()
        }

    # ------------------------------------------------------------------------------ at the end
    def on_train_end(self, model: nn.Module, summary: dict[str, Any]) -> None:
        if self.gradients is not None:
            self.gradients.close()
            self.gradients = None
        from ilif.train.distributed import is_rank_zero

        if not is_rank_zero():
            return
        history = self._history(summary)
        last = history[-1] if history else {}
        analysed = self._selected_model(model, summary)
        test = self._test_pass(analysed, summary)
        summary["analysis"] = {
            "train_open_rate": last.get("open_rate"),
            "train_surrogate_mean": last.get("surrogate_mean"),
            "train_firing_rate": last.get("firing_rate"),
            "grad_norm": last.get("grad_norm"),
            "layer_grad_norm": last.get("layer_grad_norm", {}),
            "layer_grad_norm_per_step": last.get("layer_grad_norm_per_step", {}),
            **test,
        }

    def _history(self, summary: dict[str, Any]) -> list[dict[str, Any]]:
        """The epochs' metrics as written (a resumed run's earlier epochs included)."""
        from ilif.files import read_jsonl

        return read_jsonl(Path(summary["run_dir"]) / "metrics.jsonl")

    def _selected_model(self, model: nn.Module, summary: dict[str, Any]) -> nn.Module:
        """A copy of ``model`` with the weights of ``checkpoint_best.pt`` when there is one."""
        from ilif.train.checkpoint import load_model_state, read_checkpoint

        best = Path(summary["run_dir"]) / "checkpoint_best.pt"
        if not best.exists():
            return model
        copied = copy_model(model)  # the copy must not carry the training monitor along
        load_model_state(copied, read_checkpoint(best), best)
        return copied

    def _test_pass(self, model: nn.Module, summary: dict[str, Any]) -> dict[str, Any]:
        from ilif.train.data import build_data

        config = self.config
        test = build_data(config).test
        loader = torch.utils.data.DataLoader(test, batch_size=config.batch_size, shuffle=False)
        limit = self.max_batches or config.limit_eval_batches
        device = next(model.parameters()).device
        layer = raster_layer(model)
        raster: dict[str, Any] = {}
        keep: dict[str, Tensor] = {}

        def first_sample(module: nn.Module, inputs: Any, output: Tensor) -> None:
            if not raster and "spikes" not in keep:
                keep["spikes"] = output.detach()[:, 0].clone()  # [T, *] of sample 0

        handle = model.get_submodule(layer).register_forward_hook(first_sample)
        was_training = model.training
        model.eval()
        started = time.perf_counter()
        try:
            with SpikeMonitor(model) as spikes, EnergyMeter(model, self.constants) as meter:
                with torch.no_grad():
                    for index, (x, _) in enumerate(loader):
                        if limit is not None and index >= limit:
                            break
                        reset_net(model)
                        model(x.to(device))
                        if "spikes" in keep and not raster:
                            s = keep.pop("spikes").flatten(1)[:, :RASTER_NEURONS]
                            raster = {"layer": layer, "sample": 0, "spikes": s.int().tolist()}
                spike_summary, energy = spikes.summary(), meter.summary()
                presets = {name: {k: v for k, v in meter.summary(
                    self.constants if name == self.constants.name else preset).items()
                    if k != "layers"} for name, preset in ENERGY_PRESETS.items()}
        finally:
            handle.remove()
            model.train(was_training)
        if raster:
            from ilif.files import write_json

            write_json(Path(summary["run_dir"]) / RASTER_FILE, raster)
        layers = spike_summary.pop("layers")
        return {
            "test_firing_rate": spike_summary["firing_rate"],
            "test_overactive_share": spike_summary["overactive_share"],
            "test_dead_share": spike_summary["dead_share"],
            "test_open_rate": spike_summary["open_rate"],
            "test_layers": {
                name: {k: v for k, v in values.items() if not k.endswith("per_step")}
                for name, values in layers.items()
            },
            "energy": energy,
            "energy_presets": presets,
            "raster": RASTER_FILE if raster else None,
            "analysis_seconds": time.perf_counter() - started,
        }
