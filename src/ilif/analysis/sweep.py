"""``ilif sweep``: a grid of training runs over neurons × surrogates × widths × seeds.

Every cell is one ``run_training`` call with the base configuration and the cell's neuron,
surrogate, width γ and seed, in its own run directory ``OUT/cells/<cell>``, with the measurements
of :class:`~ilif.analysis.callback.AnalysisCallback` riding on it. The sweep resumes: a cell whose
``summary.json`` holds the analysis is skipped, a cell with a ``checkpoint_last.pt`` continues
from it. After every cell ``OUT/results.csv`` and ``OUT/results.json`` are rewritten (atomically)
from the cells' summaries: accuracy, firing and gradient-open rates, gradient norms, energy and
time, one row per cell.
"""

from __future__ import annotations

import csv
import io
import math
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ilif.analysis.callback import AnalysisCallback
from ilif.analysis.energy import EnergyConstants
from ilif.files import write_text
from ilif.neurons import neuron_names

SWEEP_FILE = "sweep.json"
RESULTS_CSV, RESULTS_JSON = "results.csv", "results.json"

# Gradient-path variants of a neuron: extra constructor arguments and a label suffix.
VARIANTS: dict[str, dict[str, Any]] = {
    "": {},
    "detach-reset": {"detach_reset": True},
    "detach-inhibition": {"detach_inhibition": True},
}

PRESETS: dict[str, dict[str, list[Any] | Callable[[], list[Any]]]] = {
    # LIF vs ILIF over the surrogate width γ
    "width": {"neurons": ["lif", "ilif"], "widths": [0.25, 0.5, 1.0, 2.0, 4.0]},
    # LIF, LIF+MPIU, LIF+CIU, ILIF at one γ
    "ablation": {"neurons": ["lif", "ilif-mpiu", "ilif-ciu", "ilif"]},
    # the four surrogate shapes at equal width
    "surrogate": {
        "neurons": ["lif", "ilif"], "surrogates": ["rectangle", "triangle", "sigmoid", "atan"],
    },
    # the comparators: every registered neuron (variants aside), plug-ins included
    "neurons": {"neurons": lambda: neuron_names(variants=False)},
    # ILIF with its reset path, or its inhibitory paths, cut from the gradient
    "gradient-paths": {"neurons": ["ilif"], "variants": ["", "detach-reset", "detach-inhibition"]},
}

COLUMNS = (
    "cell", "neuron", "variant", "surrogate", "width", "seed", "status", "epochs",
    "test_acc", "val_acc", "max_test_acc", "train_acc",
    "firing_rate", "train_firing_rate", "open_rate", "surrogate_mean", "test_open_rate",
    "overactive_share", "dead_share",
    "grad_norm", "grad_norm_first_layer", "grad_norm_last_layer",
    "flops", "sops", "synaptic_energy_pj", "neuron_energy_pj", "memory_energy_pj",
    "snn_energy_pj", "ann_energy_pj", "energy_ratio",
    "sops_event_driven", "pool_first_macs", "spikes", "neuron_steps", "synaptic_fan_out",
    "loihi_synaptic_energy_pj", "loihi_neuron_energy_pj", "loihi_spike_energy_pj",
    "loihi_snn_energy_pj",
    "step0_firing_rate", "step0_open_rate", "step0_overactive_share",
    "sgd_steps", "seconds", "run_dir",
)
# the per-epoch metrics a cell's trajectory keeps (results.json)
TRAJECTORY_KEYS = (
    "epoch", "sgd_steps", "train_loss", "train_accuracy", "val_accuracy", "firing_rate",
    "open_rate", "grad_norm", "layer_grad_norm", "layer_grad_norm_per_step",
    "weight_grad_nonzero_share", "weight_update_ratio", "val_spikes",
)


@dataclass(frozen=True)
class Cell:
    """One training run of the grid."""

    neuron: str
    surrogate: str
    width: float
    seed: int
    variant: str = ""

    @property
    def label(self) -> str:
        """The neuron with its gradient-path variant, e.g. ``ilif+detach-reset``."""
        return f"{self.neuron}+{self.variant}" if self.variant else self.neuron

    @property
    def name(self) -> str:
        """The run directory name, e.g. ``ilif_rectangle_w0.5_s1``."""
        return f"{self.label}_{self.surrogate}_w{self.width:g}_s{self.seed}"

    def neuron_kwargs(self) -> dict[str, Any]:
        return dict(VARIANTS[self.variant])


@dataclass
class Grid:
    """The axes of a sweep (every combination is a cell)."""

    neurons: list[str]
    surrogates: list[str]
    widths: list[float]
    seeds: list[int]
    variants: list[str] = field(default_factory=lambda: [""])

    def cells(self) -> list[Cell]:
        """Every combination; unknown names are an error listing the valid ones."""
        from ilif.surrogate import SURROGATES

        for label, names, valid in (("neuron", self.neurons, neuron_names()),
                                    ("surrogate", self.surrogates, SURROGATES)):
            for name in names:
                if name not in valid:
                    raise ValueError(f"unknown {label} {name!r}; valid: {', '.join(valid)}")
        for width in self.widths:
            if not (math.isfinite(width) and width > 0):
                raise ValueError(f"surrogate widths must be > 0, got {width!r}")
        for variant in self.variants:
            if variant not in VARIANTS:
                valid = ", ".join(v or "full" for v in VARIANTS)
                raise ValueError(f"unknown variant {variant!r}; valid variants: {valid}")
        return [
            Cell(neuron, surrogate, float(width), int(seed), variant)
            for neuron in self.neurons
            for variant in self.variants
            for surrogate in self.surrogates
            for width in self.widths
            for seed in self.seeds
        ]


def make_grid(
    base: Any,
    preset: str | None = None,
    neurons: Sequence[str] | None = None,
    surrogates: Sequence[str] | None = None,
    widths: Sequence[float] | None = None,
    seeds: Sequence[int] | None = None,
    variants: Sequence[str] | None = None,
) -> Grid:
    """The grid of a preset (if any), each axis replaced where given, else the base config's."""
    values: dict[str, list[Any]] = {}
    if preset is not None:
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; valid presets: {', '.join(PRESETS)}")
        values.update({k: list(v() if callable(v) else v) for k, v in PRESETS[preset].items()})
    given = {"neurons": neurons, "surrogates": surrogates, "widths": widths, "seeds": seeds,
             "variants": variants}
    values.update({k: list(v) for k, v in given.items() if v})
    return Grid(
        neurons=values.get("neurons", [base.neuron]),
        surrogates=values.get("surrogates", [base.surrogate]),
        widths=[float(w) for w in values.get("widths", [base.width])],
        seeds=[int(s) for s in values.get("seeds", [base.seed])],
        variants=values.get("variants", [""]),
    )


# ------------------------------------------------------------------------------------- results
def as_number(value: Any) -> float:
    """``value`` as a float, NaN when it is not a number (missing, None, text)."""
    return float(value) if isinstance(value, int | float) else math.nan


def result_row(cell: Cell, summary: dict[str, Any], status: str = "done") -> dict[str, Any]:
    """One flat results row (the columns of :data:`COLUMNS`) from a cell's summary."""
    analysis = summary.get("analysis") or {}
    energy = analysis.get("energy") or {}
    grads = [v for v in (analysis.get("layer_grad_norm") or {}).values() if v is not None]
    test_acc = summary.get("test_accuracy_at_best")
    if test_acc is None:
        test_acc = summary.get("final_test_accuracy")
    firing = analysis.get("test_firing_rate", summary.get("test_firing_rate"))
    row = {
        "cell": cell.name, "neuron": cell.label, "variant": cell.variant,
        "surrogate": cell.surrogate, "width": cell.width, "seed": cell.seed, "status": status,
        "epochs": summary.get("epochs"),
        "test_acc": as_number(test_acc),
        "val_acc": as_number(summary.get("best_val_accuracy")),
        "max_test_acc": as_number(summary.get("paper_protocol_max_test_accuracy")),
        "train_acc": as_number(summary.get("final_train_accuracy")),
        "firing_rate": as_number(firing),
        "train_firing_rate": as_number(analysis.get("train_firing_rate",
                                                    summary.get("firing_rate"))),
        "open_rate": as_number(analysis.get("train_open_rate")),
        "surrogate_mean": as_number(analysis.get("train_surrogate_mean")),
        "test_open_rate": as_number(analysis.get("test_open_rate")),
        "overactive_share": as_number(analysis.get("test_overactive_share")),
        "dead_share": as_number(analysis.get("test_dead_share")),
        "grad_norm": as_number(analysis.get("grad_norm")),
        "grad_norm_first_layer": as_number(grads[0]) if grads else math.nan,
        "grad_norm_last_layer": as_number(grads[-1]) if grads else math.nan,
        "seconds": as_number(summary.get("wall_time_s")),
        "run_dir": summary.get("run_dir", ""),
    }
    for key in ("flops", "sops", "synaptic_energy_pj", "neuron_energy_pj", "memory_energy_pj",
                "snn_energy_pj", "ann_energy_pj", "energy_ratio", "sops_event_driven",
                "pool_first_macs", "spikes", "neuron_steps", "synaptic_fan_out"):
        row[key] = as_number(energy.get(key))
    loihi = (analysis.get("energy_presets") or {}).get("loihi") or {}
    for key in ("synaptic_energy_pj", "neuron_energy_pj", "spike_energy_pj", "snn_energy_pj"):
        row[f"loihi_{key}"] = as_number(loihi.get(key))
    step0 = (summary.get("step0") or {}).get("bn_train") or {}
    for key in ("firing_rate", "open_rate", "overactive_share"):
        row[f"step0_{key}"] = as_number(step0.get(key))
    history = summary.get("history") or []
    row["sgd_steps"] = as_number(history[-1].get("sgd_steps")) if history else math.nan
    return row


def result_details(summary: dict[str, Any]) -> dict[str, Any]:
    """The per-layer measurements of a cell (for results.json and the report)."""
    analysis = summary.get("analysis") or {}
    return {
        "layers": analysis.get("test_layers", {}),
        "layer_grad_norm": analysis.get("layer_grad_norm", {}),
        "layer_grad_norm_per_step": analysis.get("layer_grad_norm_per_step", {}),
        "energy_layers": (analysis.get("energy") or {}).get("layers", []),
        "raster": analysis.get("raster"),
        "step0": summary.get("step0"),
        "trajectory": [{k: epoch[k] for k in TRAJECTORY_KEYS if k in epoch}
                       for epoch in summary.get("history") or []],
    }


def write_results(out: Path, rows: list[dict[str, Any]], details: dict[str, Any]) -> None:
    """``results.csv`` (flat rows) and ``results.json`` (rows plus per-layer details)."""
    from ilif.files import write_json, write_text

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(COLUMNS), extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if isinstance(v, float) and math.isnan(v) else v)
                         for k, v in row.items()})
    write_text(out / RESULTS_CSV, buffer.getvalue())
    write_json(out / RESULTS_JSON, {
        "columns": list(COLUMNS),
        "cells": [{**row, **details.get(row["cell"], {})} for row in rows],
    })


# ----------------------------------------------------------------------------------- the sweep
def _read_summary(run_dir: Path) -> dict[str, Any] | None:
    """The cell's ``summary.json`` with its step-0 baseline (``step0.json``) and its epochs
    (``metrics.jsonl``) under ``step0`` and ``history``, where present."""
    import json

    from ilif.analysis.trajectory import STEP0_FILE
    from ilif.files import read_jsonl

    path = run_dir / "summary.json"
    if not path.exists():
        return None
    try:
        summary = json.loads(path.read_text())
        step0 = run_dir / STEP0_FILE
        if step0.exists():
            summary["step0"] = json.loads(step0.read_text())
    except json.JSONDecodeError:
        return None  # an unreadable summary: the cell runs again (from its checkpoint)
    metrics = run_dir / "metrics.jsonl"
    if metrics.exists():
        summary["history"] = read_jsonl(metrics)
    return summary


def run_sweep(
    base: Any,
    grid: Grid,
    out: str | Path,
    constants: EnergyConstants | None = None,
    analysis_batches: int | None = None,
    say: Callable[[str], None] = print,
    trajectories: bool = False,
) -> list[dict[str, Any]]:
    """Run every cell of ``grid`` (skipping finished ones) and write the results files.

    ``base``: a :class:`ilif.train.TrainConfig`; each cell replaces neuron, surrogate, width,
    seed, out and resume (and adds its variant's ``neuron_kwargs``). Returns the rows.
    A cell that fails is recorded (status ``failed: …``) and the sweep goes on.
    ``trajectories``: also measure the step-0 baseline and the per-epoch trajectories
    (:class:`~ilif.analysis.trajectory.TrajectoryCallback`).
    """
    from ilif.files import write_json
    from ilif.train import run_training

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cells = grid.cells()
    write_json(out / SWEEP_FILE, {"grid": asdict(grid), "base": base.to_dict(),
                                  "constants": asdict(constants or EnergyConstants()),
                                  "cells": [c.name for c in cells]})
    rows: list[dict[str, Any]] = []
    details: dict[str, Any] = {}
    started = time.perf_counter()
    for index, cell in enumerate(cells, 1):
        run_dir = out / "cells" / cell.name
        head = f"[{index}/{len(cells)}] {cell.name}"
        summary = _read_summary(run_dir)
        status = "done"
        if summary is not None and "analysis" in summary:
            say(f"{head}: finished before, skipped")
        else:
            last = run_dir / "checkpoint_last.pt"
            config = base.replace(
                neuron=cell.neuron, surrogate=cell.surrogate, width=cell.width, seed=cell.seed,
                out=str(run_dir), resume=str(last) if last.exists() else None,
                neuron_kwargs={**base.neuron_kwargs, **cell.neuron_kwargs()},
            )
            say(f"{head}: " + ("resuming from checkpoint_last.pt" if last.exists() else "training"))
            try:
                callbacks: list[Any] = [AnalysisCallback(constants, analysis_batches)]
                if trajectories:
                    from ilif.analysis.trajectory import TrajectoryCallback

                    callbacks.append(TrajectoryCallback())
                summary = _read_summary(run_dir) if run_training(config, callbacks) else None
                summary = summary or {"run_dir": str(run_dir)}
            except Exception as err:  # a failed cell is recorded; the grid goes on
                message = str(err).splitlines()[0] if str(err) else ""
                status = f"failed: {type(err).__name__}: {message}"
                say(f"{head}: {status}")
                write_text(run_dir / "error.txt", traceback.format_exc())
                summary = {"run_dir": str(run_dir)}
        row = result_row(cell, summary, status)
        rows.append(row)
        details[cell.name] = result_details(summary)
        write_results(out, rows, details)
        if status == "done":
            say(f"{head}: test acc {row['test_acc']:.4f}  firing rate {row['firing_rate']:.4f}  "
                f"open rate {row['open_rate']:.4f}  energy {row['snn_energy_pj'] / 1e3:.1f} nJ  "
                f"({row['seconds']:.0f} s)")
    say(f"sweep: {len(cells)} cells in {time.perf_counter() - started:.0f} s; results in "
        f"{out / RESULTS_CSV}")
    return rows


def parse_list(
    text: str | None, kind: Callable[[str], Any] = str, name: str = "list"
) -> list[Any] | None:
    """``"a,b,c"`` -> ``[kind(a), kind(b), kind(c)]`` (None for None or empty); a value that
    does not convert is an error naming ``name``."""
    if not text:
        return None
    values = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        try:
            values.append(kind(part))
        except ValueError:
            raise ValueError(
                f"{name}: {part!r} is not a valid {getattr(kind, '__name__', 'value')}"
                f" (expected a comma-separated list, e.g. {name} 0.5,1,2)"
            ) from None
    return values


def failed(rows: Iterable[dict[str, Any]]) -> list[str]:
    return [row["cell"] for row in rows if str(row["status"]).startswith("failed")]
