"""``ilif report RUN_DIR``: ``report.md`` and PNG figures from a sweep's ``results.json``.

Figures (``RUN_DIR/figures``): test accuracy, firing rate and gradient-open rate against the
surrogate width γ per neuron (bars per neuron where the sweep has one width); per-layer firing
rate per neuron; per-layer and per-time-step gradient norm at the neuron inputs; energy per
layer beside the ANN; a spike raster of one layer for one test sample. Tables give mean ± std
over seeds.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from ilif.analysis.sweep import RESULTS_JSON, SWEEP_FILE, as_number

REPORT_FILE = "report.md"
FIGURES = "figures"

# (column, heading, scale, digits) of the summary table
TABLE_COLUMNS = (
    ("test_acc", "test acc (%)", 100.0, 2),
    ("step0_firing_rate", "firing rate at step 0", 1.0, 4),
    ("firing_rate", "firing rate", 1.0, 4),
    ("open_rate", "gradient-open rate", 1.0, 4),
    ("grad_norm", "grad norm", 1.0, 3),
    ("synaptic_energy_pj", "synaptic energy (nJ)", 1e-3, 1),
    ("snn_energy_pj", "+ neuron updates (nJ)", 1e-3, 1),
    ("loihi_snn_energy_pj", "on Loihi (nJ)", 1e-3, 1),
    ("ann_energy_pj", "ANN energy (nJ)", 1e-3, 1),
)


class ReportError(ValueError):
    """The run directory has no sweep results to report."""


def load_results(run_dir: str | Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The cells of ``results.json`` (rows plus details) and ``sweep.json`` of ``run_dir``."""
    run_dir = Path(run_dir)
    path = run_dir / RESULTS_JSON
    if not path.is_file():
        raise ReportError(
            f"{path} not found: `ilif report` reads the results of a sweep; run "
            f"`ilif sweep --out {run_dir} ...` (or `ilif demo --out {run_dir}`) first"
        )
    try:
        cells = json.loads(path.read_text())["cells"]
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise ReportError(f"{path} is not a sweep results file: {err}") from None
    sweep_path = run_dir / SWEEP_FILE
    sweep = json.loads(sweep_path.read_text()) if sweep_path.is_file() else {}
    done = [c for c in cells if c.get("status") == "done"]
    if not done:
        raise ReportError(f"{path} holds no finished cell")
    return done, sweep


# ------------------------------------------------------------------------------------ statistics
def _value(cell: dict[str, Any], key: str) -> float:
    return as_number(cell.get(key))


def mean_std(values: Sequence[float]) -> tuple[float, float, int]:
    """Mean, sample standard deviation (0 for one value) and count of the finite values."""
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return math.nan, math.nan, 0
    std = statistics.stdev(finite) if len(finite) > 1 else 0.0
    return statistics.fmean(finite), std, len(finite)


def group_by(cells: Iterable[dict[str, Any]], key: Callable[[dict[str, Any]], Any]
             ) -> dict[Any, list[dict[str, Any]]]:
    """Cells grouped by ``key`` (the seeds of one setting together), in first-seen order."""
    groups: dict[Any, list[dict[str, Any]]] = {}
    for cell in cells:
        groups.setdefault(key(cell), []).append(cell)
    return groups


def md_table(head: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """A markdown table."""
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def fmt_mean_std(numbers: Sequence[float], digits: int) -> str:
    """``mean ± std`` (sample std) for several values, the value for one, ``–`` for none."""
    mean, std, n = mean_std(list(numbers))
    if n == 0:
        return "–"
    if n == 1:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def series_name(cell: dict[str, Any], several_surrogates: bool) -> str:
    return f"{cell['neuron']} ({cell['surrogate']})" if several_surrogates else cell["neuron"]


def group_cells(cells: list[dict[str, Any]]) -> dict[tuple[str, float], list[dict[str, Any]]]:
    """Cells by (series, width): the seeds of one setting together, in first-seen order."""
    several = len({c["surrogate"] for c in cells}) > 1
    return group_by(cells, lambda c: (series_name(c, several), float(c["width"])))


def summary_table(cells: list[dict[str, Any]]) -> str:
    """A markdown table: one row per neuron × surrogate × width, mean ± std over seeds. A column
    that no cell has (the step-0 rates of a sweep run without ``--trajectories``) is left out."""
    columns = [column for column in TABLE_COLUMNS
               if any(math.isfinite(_value(c, column[0])) for c in cells)]
    head = ["neuron", "γ", "seeds"] + [heading for _, heading, _, _ in columns]
    rows = [[series, f"{width:g}", str(len(group))]
            + [fmt_mean_std([_value(c, key) * scale for c in group], digits)
               for key, _, scale, digits in columns]
            for (series, width), group in group_cells(cells).items()]
    return md_table(head, rows)


def reference_cells(cells: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """One cell per series at the width nearest γ = 1 (the first seed): the per-layer figures."""
    chosen: dict[str, dict[str, Any]] = {}
    several = len({c["surrogate"] for c in cells}) > 1
    for cell in cells:
        name = series_name(cell, several)
        best = chosen.get(name)
        distance = abs(math.log(float(cell["width"])))
        if best is None or distance < abs(math.log(float(best["width"]))):
            chosen[name] = cell
    return chosen


# --------------------------------------------------------------------------------------- figures
def pyplot() -> Any:
    """matplotlib's pyplot on the file-only Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: Path) -> Path:
    """Lay out, write (PNG, 100 dpi, no time stamp) and close ``fig``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=100, metadata={"Software": None})
    pyplot().close(fig)
    return path


def plot_metric_vs_width(
    cells: list[dict[str, Any]], key: str, label: str, path: Path, scale: float = 1.0
) -> Path:
    """Mean ± std over seeds of ``key`` against γ, one line per series (bars for one γ)."""
    plt = pyplot()
    groups = group_cells(cells)
    widths = sorted({w for _, w in groups})
    series = list(dict.fromkeys(s for s, _ in groups))
    fig, ax = plt.subplots(figsize=(5.2, 3.6))
    if len(widths) > 1:
        for name in series:
            points = [(w, *mean_std([_value(c, key) * scale for c in groups[(name, w)]]))
                      for w in widths if (name, w) in groups]
            xs = [p[0] for p in points]
            ax.errorbar(xs, [p[1] for p in points], yerr=[p[2] for p in points], marker="o",
                        capsize=3, label=name)
        ax.set_xscale("log", base=2)
        ax.set_xticks(widths, [f"{w:g}" for w in widths])
        ax.set_xlabel("surrogate width γ")
    else:
        stats = [mean_std([_value(c, key) * scale for c in groups[(s, widths[0])]]) for s in series]
        ax.bar(range(len(series)), [m for m, _, _ in stats], yerr=[s for _, s, _ in stats],
               capsize=3, color=[f"C{i}" for i in range(len(series))])
        ax.set_xticks(range(len(series)), series, rotation=20, ha="right")
        ax.set_xlabel(f"neuron (γ = {widths[0]:g})")
    ax.set_ylabel(label)
    ax.grid(alpha=0.3)
    if len(widths) > 1:
        ax.legend()
    return save_figure(fig, path)


def plot_layers(
    reference: dict[str, dict[str, Any]], values: dict[str, list[tuple[str, float]]],
    label: str, path: Path, log: bool = False,
) -> Path:
    """Grouped bars: one group per layer, one bar per series (``log``: a log scale where the
    values span more than a factor 20)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    names = list(reference)
    layers = list(dict.fromkeys(layer for name in names for layer, _ in values.get(name, [])))
    width = 0.8 / max(len(names), 1)
    for i, name in enumerate(names):
        lookup = dict(values.get(name, []))
        xs = [j + (i - (len(names) - 1) / 2) * width for j in range(len(layers))]
        ax.bar(xs, [lookup.get(layer, math.nan) for layer in layers], width, label=name)
    ax.set_xticks(range(len(layers)), [short_layer(layer) for layer in layers], rotation=35,
                  ha="right", fontsize=8)
    finite = [v for name in names for _, v in values.get(name, []) if v > 0 and math.isfinite(v)]
    if log and finite and max(finite) / min(finite) > 20:
        ax.set_yscale("log")
    ax.set_ylabel(label)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def short_layer(layer: str) -> str:
    """A layer name without wrapper parts: ``features.1.conv_bn.module.0`` -> ``features.1.0``,
    ``features.2.neuron`` -> ``features.2``."""
    parts = [p for p in layer.split(".") if p not in ("module", "conv_bn", "layer", "neuron")]
    return ".".join(parts[-3:]) or layer


def plot_grad_per_step(reference: dict[str, dict[str, Any]], path: Path) -> Path | None:
    """‖∂L/∂x_t‖ against the time step t, one panel per neuron layer, one line per series."""
    per_step = {n: c.get("layer_grad_norm_per_step") or {} for n, c in reference.items()}
    layers = list(dict.fromkeys(layer for steps in per_step.values() for layer in steps))
    if not layers:
        return None
    plt = pyplot()
    shown = layers[:4]
    fig, axes = plt.subplots(1, len(shown), figsize=(3.2 * len(shown), 3.4), squeeze=False)
    for ax, layer in zip(axes[0], shown, strict=True):
        for name, steps in per_step.items():
            values = steps.get(layer) or []
            if values:
                ax.plot(range(1, len(values) + 1), values, marker="o", label=name)
        ax.set_title(short_layer(layer), fontsize=9)
        ax.set_xlabel("time step")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("‖∂L/∂x_t‖ (last epoch)")
    axes[0][0].legend(fontsize=8)
    return save_figure(fig, path)


def _energy_label(layer: dict[str, Any]) -> str:
    kind = "neurons" if layer.get("input") == "current" else layer.get("type", "")
    return f"{layer['name']} [{kind}]"


def plot_raster(run_dir: Path, reference: dict[str, dict[str, Any]], path: Path) -> Path | None:
    """Spikes of one layer for one test sample, one panel per series (time on x)."""
    rasters = []
    for name, cell in reference.items():
        file = cell.get("raster")
        source = Path(cell.get("run_dir") or "") / file if file else None
        if source is None or not source.is_file():
            source = run_dir / "cells" / cell["cell"] / (file or "")
        if file and source.is_file():
            rasters.append((name, json.loads(source.read_text())))
    if not rasters:
        return None
    plt = pyplot()
    fig, axes = plt.subplots(1, len(rasters), figsize=(3.2 * len(rasters), 3.6), squeeze=False)
    for ax, (name, raster) in zip(axes[0], rasters, strict=True):
        spikes = raster["spikes"]  # [T][neurons]
        steps, count = len(spikes), len(spikes[0])
        image = [[spikes[t][j] for t in range(steps)] for j in range(count)]  # [neurons][T]
        ax.imshow(image, aspect="auto", cmap="Greys", interpolation="nearest", vmin=0, vmax=1,
                  origin="lower", extent=(0.5, steps + 0.5, -0.5, count - 0.5))
        rate = sum(map(sum, spikes)) / max(steps * count, 1)
        ax.set_title(f"{name}: {short_layer(raster['layer'])}, rate {rate:.3f}", fontsize=9)
        ax.set_xlabel("time step")
        ax.set_xticks(range(1, steps + 1) if steps <= 20 else range(1, steps + 1, steps // 10))
    axes[0][0].set_ylabel("neuron")
    return save_figure(fig, path)


def make_figures(cells: list[dict[str, Any]], run_dir: Path) -> dict[str, Path]:
    """Every figure of the report, by title."""
    figures_dir = run_dir / FIGURES
    out: dict[str, Path] = {}
    for key, label, scale, file in (
        ("test_acc", "test accuracy (%)", 100.0, "accuracy_vs_width.png"),
        ("firing_rate", "firing rate (spikes / neuron / step)", 1.0, "firing_rate_vs_width.png"),
        ("open_rate", "gradient-open rate (training)", 1.0, "open_rate_vs_width.png"),
    ):
        out[label] = plot_metric_vs_width(cells, key, label, figures_dir / file, scale)
    reference = reference_cells(cells)
    firing = {n: [(layer, v["firing_rate"]) for layer, v in (c.get("layers") or {}).items()]
              for n, c in reference.items()}
    out["per-layer firing rate"] = plot_layers(
        reference, firing, "test firing rate", figures_dir / "layer_firing_rate.png")
    grads = {n: [(layer, v) for layer, v in (c.get("layer_grad_norm") or {}).items()
                 if isinstance(v, int | float) and v > 0] for n, c in reference.items()}
    if any(grads.values()):
        out["per-layer gradient norm"] = plot_layers(
            reference, grads, "‖∂L/∂x‖ at the neuron input", figures_dir / "layer_grad_norm.png",
            log=True)
    per_step = plot_grad_per_step(reference, figures_dir / "grad_norm_per_step.png")
    if per_step is not None:
        out["gradient norm per time step"] = per_step
    energy = {n: [(_energy_label(e), e["energy_pj"] / 1e3) for e in c.get("energy_layers") or []]
              for n, c in reference.items()}
    if any(energy.values()):
        first = next(iter(reference.values()))
        ann = [(_energy_label(e), e["ann_energy_pj"] / 1e3)
               for e in first.get("energy_layers") or [] if e.get("ann_energy_pj")]
        out["energy per layer"] = plot_layers(
            {**reference, "ANN": {}}, {**energy, "ANN": ann}, "energy per inference (nJ)",
            figures_dir / "layer_energy.png", log=True)
    raster = plot_raster(run_dir, reference, figures_dir / "raster.png")
    if raster is not None:
        out["spike raster"] = raster
    return out


# ---------------------------------------------------------------------------------------- report
def _setting(sweep: dict[str, Any]) -> str:
    base, grid = sweep.get("base", {}), sweep.get("grid", {})
    if not base:
        return ""
    keys = ("dataset", "model", "T", "tau", "epochs", "batch_size", "lr", "optimizer",
            "train_size", "limit_train_batches")
    setting = ", ".join(f"{k} = {base.get(k)}" for k in keys if base.get(k) is not None)
    axes = ", ".join(f"{k}: {', '.join(str(v) or 'full' for v in values)}"
                     for k, values in grid.items())
    return f"Setting: {setting}.\n\nGrid: {axes}.\n"


def _energy_note(sweep: dict[str, Any]) -> str:
    c = sweep.get("constants") or {}
    if not c:
        return ""
    encoding = "once per inference" if c.get("encoding_once") else "at every one of the T steps"
    memory = (f"state memory traffic at {c['state_access_pj']} pJ per access"
              if c.get("state_access_pj") is not None else "no state memory traffic")
    return (
        f"Energy per inference from the measured test-set rates: {c.get('mac_pj')} pJ per MAC, "
        f"{c.get('ac_pj')} pJ per accumulate (preset {c.get('name', '45nm')}); synaptic "
        "operations `SOP = r_in · T · FLOPs` for spike inputs, for spikes through average "
        "pooling the cheaper of event-driven SOPs and pool-first MACs, MACs over non-zero "
        "inputs for real-valued ones, the encoding layer "
        f"counted {encoding}; neuron-state updates counted from each neuron's equations (a "
        f"sigmoid costs {c.get('sigmoid_macs')} MACs); {memory}. The ANN is the same network "
        "run once with dense MACs. The column \"on Loihi\" prices the same counts with the "
        "loihi preset (Davies et al. 2018). See docs/analysis.md.\n"
    )


def write_report(run_dir: str | Path) -> Path:
    """Write ``report.md`` and the figures for the sweep in ``run_dir``; return the report path."""
    run_dir = Path(run_dir)
    cells, sweep = load_results(run_dir)
    figures = make_figures(cells, run_dir)
    lines = [
        "# Sweep report", "",
        _setting(sweep),
        f"{len(cells)} finished cells; every row below is the mean ± std over its seeds "
        "(sample std; one seed: the value). Test accuracy at the best validation epoch; firing "
        "rate on the test set (spikes per neuron per step); gradient-open rate (|H − θ| < γ/2) "
        "and gradient norm (at the neuron inputs, RMS over the batches) of the last training "
        "epoch. Energy per inference: synaptic operations alone (the paper's count), then with "
        "the neuron-state updates added. Per-cell numbers: [results.csv](results.csv).", "",
        summary_table(cells), "",
        _energy_note(sweep),
        "## Figures", "",
        "Per-layer figures, the gradient norm per step and the raster show, for each neuron, "
        "the run at the width nearest γ = 1 (first seed): "
        + ", ".join(f"{name} at γ = {float(cell['width']):g}"
                    for name, cell in reference_cells(cells).items()) + ".", "",
    ]
    for title, path in figures.items():
        lines += [f"### {title}", "", f"![{title}]({path.relative_to(run_dir).as_posix()})", ""]
    from ilif.files import write_text

    report = run_dir / REPORT_FILE
    write_text(report, "\n".join(lines))
    return report
