"""The study's data: the finished cells of every part, read from the sweeps' ``results.json``
or from the small per-run summaries committed beside the page (``docs/results-data``).

:func:`export` turns the sweeps' results into those summaries (one JSON file per part and seed,
sorted keys, fixed float precision), so that ``python -m ilif.study --write-only`` rebuilds
docs/results.md from a clean clone, byte for byte.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ilif.study.plan import PARTS

DATA = Path("docs/results-data")

# the flat numbers of a cell kept in its summary (the sweep's columns)
ROW_KEYS = (
    "cell", "neuron", "variant", "surrogate", "width", "seed", "status", "epochs", "sgd_steps",
    "test_acc", "val_acc", "train_acc", "firing_rate", "overactive_share", "dead_share",
    "open_rate", "grad_norm", "grad_norm_first_layer", "grad_norm_last_layer",
    "step0_firing_rate", "step0_open_rate", "step0_overactive_share",
    "flops", "sops", "sops_event_driven", "pool_first_macs", "spikes", "neuron_steps",
    "synaptic_fan_out", "synaptic_energy_pj", "neuron_energy_pj", "snn_energy_pj",
    "ann_energy_pj", "loihi_synaptic_energy_pj", "loihi_neuron_energy_pj",
    "loihi_spike_energy_pj", "loihi_snn_energy_pj", "seconds",
)
# the per-epoch numbers kept (val_spikes flattened to val_*)
EPOCH_KEYS = ("epoch", "sgd_steps", "train_accuracy", "val_accuracy", "grad_norm",
              "layer_grad_norm", "layer_grad_norm_per_step", "weight_grad_nonzero_share",
              "weight_update_ratio")
SPIKE_KEYS = ("firing_rate", "open_rate", "overactive_share", "layer_firing_rate")


def label(neuron: str) -> str:
    """The display name of a neuron of the registry (``ilif+detach-reset`` → ``ILIF+detach-reset``);
    an unknown name is an error listing the registered ones."""
    from ilif.neurons import neuron_names

    names = list(neuron_names())
    base, _, variant = neuron.partition("+")
    if base not in names:
        raise ValueError(f"unknown neuron {base!r}; registered neurons: {', '.join(names)}")
    return base.upper() + (f"+{variant}" if variant else "")


def _round(value: Any) -> Any:
    """Floats to 6 significant digits (NaN and infinities to None), recursively."""
    if isinstance(value, float):
        return float(f"{value:.6g}") if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _round(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_round(v) for v in value]
    return value


def summarise(cell: dict[str, Any]) -> dict[str, Any]:
    """The small summary of one cell of a sweep's ``results.json``."""
    out: dict[str, Any] = {k: cell.get(k) for k in ROW_KEYS if k in cell}
    out["layer_firing_rate"] = {name: layer.get("firing_rate")
                                for name, layer in (cell.get("layers") or {}).items()}
    step0 = cell.get("step0") or {}
    out["step0"] = {mode: {k: (step0.get(mode) or {}).get(k) for k in (*SPIKE_KEYS, "images")}
                    for mode in ("bn_train", "bn_eval") if step0.get(mode)}
    trajectory = []
    for epoch in cell.get("trajectory") or []:
        row = {k: epoch[k] for k in EPOCH_KEYS if k in epoch}
        spikes = epoch.get("val_spikes") or {}
        row.update({f"val_{k}": spikes[k] for k in SPIKE_KEYS if k in spikes})
        trajectory.append(row)
    out["trajectory"] = trajectory
    if trajectory and "val_firing_rate" in trajectory[-1]:
        out["val_firing_rate"] = trajectory[-1]["val_firing_rate"]
    return _round(out)


def export(root: str | Path, data: str | Path = DATA) -> list[Path]:
    """Write ``data/<part>/s<seed>.json`` (finished and failed cells, summarised) for every
    sweep under ``root``; return the files written."""
    from ilif.files import write_text

    written = []
    for name in PARTS:
        for path in sorted((Path(root) / name).glob("s*/results.json")):
            cells = json.loads(path.read_text())["cells"]
            rows = [summarise(c) if c.get("status") == "done" else
                    {"cell": c.get("cell"), "status": c.get("status")} for c in cells]
            target = Path(data) / name / f"{path.parent.name}.json"
            write_text(target, json.dumps({"cells": rows}, sort_keys=True, indent=1) + "\n")
            written.append(target)
    return written


def best_epoch(cell: dict[str, Any]) -> int | None:
    """The epoch whose checkpoint the run's test accuracy and final analysis (energy) use: the
    first with the highest validation accuracy (the trainer keeps a checkpoint only on a strict
    improvement); None without a trajectory."""
    accuracies = [(number(e, "val_accuracy"), int(e["epoch"]))
                  for e in cell.get("trajectory") or []]
    accuracies = [(a, e) for a, e in accuracies if math.isfinite(a)]
    if not accuracies:
        return None
    best = max(a for a, _ in accuracies)
    return min(e for a, e in accuracies if a == best)


@dataclass
class Results:
    """The finished cells of every part of the study, and the failed ones."""

    cells: dict[str, list[dict[str, Any]]]
    failed: dict[str, list[str]]

    def part(self, name: str) -> list[dict[str, Any]]:
        return self.cells.get(name, [])

    def select(self, parts: Iterable[str], neurons: Sequence[str] | None = None,
               width: float | None = None) -> list[dict[str, Any]]:
        """The cells of ``parts`` with the given neuron(s) and width."""
        return [cell for name in parts for cell in self.part(name)
                if (neurons is None or cell["neuron"] in neurons)
                and (width is None or math.isclose(float(cell["width"]), width))]

    @property
    def runs(self) -> int:
        return sum(len(v) for v in self.cells.values())


def load(data: str | Path = DATA) -> Results:
    """The summaries under ``data`` (written by :func:`export`)."""
    cells: dict[str, list[dict[str, Any]]] = {}
    failed: dict[str, list[str]] = {}
    for name in PARTS:
        for path in sorted((Path(data) / name).glob("s*.json"), key=lambda p: int(p.stem[1:])):
            try:
                rows = json.loads(path.read_text())["cells"]
            except (json.JSONDecodeError, KeyError, TypeError) as err:
                raise ValueError(f"{path} is not a study summary file: {err}") from None
            for row in rows:
                if row.get("status") == "done":
                    cells.setdefault(name, []).append(row)
                else:
                    failed.setdefault(name, []).append(str(row.get("cell")))
    return Results(cells, failed)


def number(cell: dict[str, Any], key: str) -> float:
    """``cell[key]`` as a float (NaN where missing or not a number)."""
    value = cell.get(key)
    return float(value) if isinstance(value, int | float) else math.nan
