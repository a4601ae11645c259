"""``docs/results.md`` and its figures, generated from the study's ``results.json`` files.

Every number of the document comes from the results files (or the training configs they were
run with); the sentences that compare results are generated from the comparisons themselves
(:mod:`ilif.study.stats`), so rerunning the study rewrites them to match its numbers.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ilif.analysis.report import plot_layers, plot_metric_vs_width, short_layer
from ilif.study.plan import DEFAULT_ROOT, PAPER_WIDTH, PARTS, Part
from ilif.study.stats import Comparison, compare, fmt_mean_std, spearman, values

DOC = Path("docs/results.md")
FIGURES = Path("docs/figures/results")

# The paper's CIFAR-10 numbers (SPEC §5): ResNet-18, T = 6, 200 epochs on a GPU.
PAPER_ACCURACY = {"ilif": 95.49, "clif": 95.41, "lif": 94.51}

# Full-scale reproduction: the paper's four configs and the GPU time they are expected to take.
# These are estimates, not measurements (no GPU run was made), from the work per epoch: a CIFAR
# ResNet-18 costs about 0.56 GFLOPs per image and step, so T = 6 and forward + backward make
# about 10 GFLOPs per image, 0.5 PFLOP per epoch of 50,000 images; with the element-wise neuron
# updates (memory bound) a spiking epoch takes of the order of 1–2 minutes on one modern
# data-centre GPU. The event sets are smaller (9,000 and 1,176 training samples).
FULL_SCALE = (
    ("cifar10-resnet18", "CIFAR-10, spiking ResNet-18, T = 6, 200 epochs", "4–8 h"),
    ("cifar100-resnet18", "CIFAR-100, spiking ResNet-18, T = 6, 200 epochs", "4–8 h"),
    ("cifar10-dvs-vgg11", "CIFAR10-DVS, spiking VGG-11-BN, T = 10, 48×48, 200 epochs", "1–3 h"),
    ("dvs-gesture-vgg11", "DVS128 Gesture, spiking VGG-11-BN, T = 20, 128×128, 200 epochs",
     "2–4 h"),
)

NEURON_NAMES = {
    "lif": "LIF", "ilif": "ILIF", "ilif-mpiu": "LIF+MPIU", "ilif-ciu": "LIF+CIU",
    "plif": "PLIF", "alif": "ALIF", "clif": "CLIF",
}


def label(neuron: str) -> str:
    return NEURON_NAMES.get(neuron, neuron)


# ----------------------------------------------------------------------------------- the data
@dataclass
class Results:
    """The finished cells of every part of the study, and what is missing."""

    cells: dict[str, list[dict[str, Any]]]
    failed: dict[str, list[str]]

    def part(self, name: str) -> list[dict[str, Any]]:
        return self.cells.get(name, [])

    def select(self, parts: Iterable[str], neurons: Sequence[str] | None = None,
               width: float | None = None, surrogate: str | None = None) -> list[dict[str, Any]]:
        """The cells of ``parts`` with the given neuron(s), width and surrogate."""
        out = []
        for name in parts:
            for cell in self.part(name):
                if neurons is not None and cell["neuron"] not in neurons:
                    continue
                if width is not None and not math.isclose(float(cell["width"]), width):
                    continue
                if surrogate is not None and cell["surrogate"] != surrogate:
                    continue
                out.append(cell)
        return out


def collect(root: str | Path = DEFAULT_ROOT) -> Results:
    """Read ``root/<part>/s<seed>/results.json`` of every part (finished cells only)."""
    root = Path(root)
    cells: dict[str, list[dict[str, Any]]] = {}
    failed: dict[str, list[str]] = {}
    for name in PARTS:
        for path in sorted((root / name).glob("s*/results.json")):
            try:
                rows = json.loads(path.read_text())["cells"]
            except (json.JSONDecodeError, KeyError, TypeError) as err:
                raise ValueError(f"{path} is not a sweep results file: {err}") from None
            for row in rows:
                if row.get("status") == "done":
                    cells.setdefault(name, []).append(row)
                elif str(row.get("status", "")).startswith("failed"):
                    failed.setdefault(name, []).append(row["cell"])
    return Results(cells, failed)


def by_series(cells: Iterable[dict[str, Any]], key: Callable[[dict[str, Any]], Any]
              ) -> dict[Any, list[dict[str, Any]]]:
    """Cells grouped by ``key`` (seeds of one setting together), in first-seen order."""
    groups: dict[Any, list[dict[str, Any]]] = {}
    for cell in cells:
        groups.setdefault(key(cell), []).append(cell)
    return groups


# ------------------------------------------------------------------------------------- markdown
def md_table(head: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


# (results column, heading, scale, digits)
Column = tuple[str, str, float, int]
ACC: Column = ("test_acc", "test acc (%)", 100.0, 2)
FIRING: Column = ("firing_rate", "firing rate", 1.0, 4)
OVERACTIVE: Column = ("overactive_share", "overactive share", 1.0, 4)
OPEN: Column = ("open_rate", "gradient-open rate", 1.0, 4)
SURR_MEAN: Column = ("surrogate_mean", "mean surrogate derivative", 1.0, 4)
GRAD_FIRST: Column = ("grad_norm_first_layer", "‖g‖ first layer", 1.0, 5)
GRAD_LAST: Column = ("grad_norm_last_layer", "‖g‖ last layer", 1.0, 5)
ENERGY: Column = ("snn_energy_pj", "energy (nJ)", 1e-3, 1)
SECONDS: Column = ("seconds", "time per run (s)", 1.0, 0)


def stats_row(cells: list[dict[str, Any]], columns: Sequence[Column]) -> list[str]:
    return [str(len(cells))] + [fmt_mean_std(values(cells, key, scale), digits)
                                for key, _, scale, digits in columns]


def series_table(groups: dict[Any, list[dict[str, Any]]], names: Sequence[str],
                 columns: Sequence[Column], name_of: Callable[[Any], Sequence[str]],
                 extra: Callable[[Any], Sequence[str]] | None = None,
                 extra_head: Sequence[str] = ()) -> str:
    head = [*names, "seeds", *(heading for _, heading, _, _ in columns), *extra_head]
    rows = [[*name_of(key), *stats_row(group, columns), *(extra(key) if extra else ())]
            for key, group in groups.items()]
    return md_table(head, rows)


def sentence_compare(what: str, a: str, b: str, comp: Comparison, unit: str, digits: int,
                     higher: str = "higher", lower: str = "lower") -> str:
    """``what of A is m_a vs m_b for B: <verdict>`` as one generated sentence."""
    if not comp.known:
        return f"{what}: {a} or {b} not measured yet."
    noise = f", 2·SE = {2 * comp.se:.{digits}f}{unit}" if comp.noise_estimated else ""
    return (f"{what}: {a} {comp.mean_a:.{digits}f}{unit} vs {b} {comp.mean_b:.{digits}f}{unit} "
            f"(Δ = {comp.diff:+.{digits}f}{unit}{noise}): {a} {comp.verdict(higher, lower)}.")


def agreement(comp: Comparison, expected: int) -> str:
    """Whether a comparison agrees with a claim that the difference has sign ``expected``."""
    if not comp.known or math.isnan(comp.diff):
        return "not measured yet"
    matches = (comp.diff > 0) == (expected > 0) and comp.diff != 0
    if not comp.noise_estimated:
        return ("points the paper's way" if matches else "points against it") + \
            " (one seed: noise not estimated)"
    if comp.beyond_noise:
        return "**agrees**" if matches else "**disagrees** (beyond seed noise)"
    return "within seed noise (" + ("the paper's direction" if matches else
                                    "against the paper's direction") + ", no conclusion)"


def paper_lines(claims: Sequence[tuple[str, Comparison, int]]) -> list[str]:
    """``- <claim>: <agreement>`` for each (claim, comparison, expected sign)."""
    return [f"- {claim}: {agreement(comp, sign)}." for claim, comp, sign in claims]


# -------------------------------------------------------------------------------------- figures
class Figures:
    """Writes the figures into ``folder`` and links them relative to the document."""

    def __init__(self, folder: Path, doc: Path) -> None:
        self.folder, self.doc = folder, doc
        self.written: list[Path] = []

    def link(self, path: Path, title: str) -> str:
        relative = Path(_relpath(path, self.doc.parent))
        return f"![{title}]({relative.as_posix()})"

    def add(self, path: Path | None, title: str) -> str:
        if path is None:
            return ""
        self.written.append(path)
        return self.link(path, title)

    def metric_vs_width(self, cells: list[dict[str, Any]], column: Column, file: str,
                        ylabel: str | None = None) -> str:
        key, heading, scale, _ = column
        order = list(NEURON_NAMES)  # series in a fixed order: LIF first, then its variants
        cells = sorted(cells, key=lambda c: (order.index(c["neuron"]) if c["neuron"] in order
                                             else len(order), c["surrogate"], c["width"]))
        path = plot_metric_vs_width(cells, key, ylabel or heading, self.folder / file, scale)
        return self.add(path, heading)

    def layers(self, series: dict[str, list[tuple[str, float]]], ylabel: str, file: str,
               log: bool = False) -> str:
        if not any(series.values()):
            return ""
        reference = {name: {} for name in series}
        path = plot_layers(reference, series, ylabel, self.folder / file, log=log)
        return self.add(path, ylabel)


def _relpath(path: Path, start: Path) -> str:
    import os

    return os.path.relpath(path.resolve(), start.resolve())


def layer_means(cells: list[dict[str, Any]], field: str, inner: str | None = None
                ) -> list[tuple[str, float]]:
    """Per-layer mean over ``cells`` of ``cell[field][layer]`` (or ``…[layer][inner]``)."""
    sums: dict[str, list[float]] = {}
    for cell in cells:
        for layer, value in (cell.get(field) or {}).items():
            number = value.get(inner) if inner and isinstance(value, dict) else value
            if isinstance(number, int | float) and math.isfinite(float(number)):
                sums.setdefault(layer, []).append(float(number))
    return [(layer, sum(v) / len(v)) for layer, v in sums.items()]


def plot_energy(groups: dict[str, list[dict[str, Any]]], path: Path) -> Path | None:
    """Stacked bars per neuron: synaptic energy and neuron-update energy (nJ, mean over seeds)."""
    if not groups:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(groups)
    synaptic = [_mean(values(groups[n], "synaptic_energy_pj", 1e-3)) for n in names]
    neuron = [_mean(values(groups[n], "neuron_energy_pj", 1e-3)) for n in names]
    fig, ax = plt.subplots(figsize=(5.6, 3.6))
    xs = range(len(names))
    ax.bar(xs, synaptic, label="synaptic operations (the paper's count)", color="C0")
    ax.bar(xs, neuron, bottom=synaptic, label="neuron-state updates", color="C3")
    ann = _mean([v for n in names for v in values(groups[n], "ann_energy_pj", 1e-3)])
    if math.isfinite(ann):  # a line at the ANN's level would flatten the bars: said in the title
        ax.set_title(f"the same network as an ANN: {ann:,.0f} nJ", fontsize=9)
    ax.set_xticks(list(xs), [label(n) for n in names], rotation=20, ha="right")
    ax.set_ylabel("energy per inference (nJ)")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _mean(numbers: Sequence[float]) -> float:
    return sum(numbers) / len(numbers) if numbers else math.nan


# --------------------------------------------------------------------------------- the settings
def read_config(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        return {}
    return yaml.safe_load(path.read_text()) or {}


def describe_setting(part: Part, results: Results,
                     cells: list[dict[str, Any]] | None = None) -> str:
    """One generated paragraph: model, data, T, τ, epochs, batches, seeds, runs, time, config.
    ``cells``: the runs the table shows (default: the part's)."""
    config = read_config(part.config)
    cells = results.part(part.name) if cells is None else cells
    seeds = sorted({int(c["seed"]) for c in cells})
    if not config:
        return f"Config {part.config} not found."
    batch = int(config.get("batch_size", 64))
    train_batches = config.get("limit_train_batches")
    eval_batches = config.get("limit_eval_batches")
    per_epoch = (f"{train_batches} batches of {batch} ({int(train_batches) * batch:,} images, "
                 "a fresh random draw each epoch)" if train_batches else
                 f"the whole training split in batches of {batch}")
    has_val = float(config.get("val_split", 0.1)) > 0
    parts = "the validation split and of the test set" if has_val else "the test set"
    evaluation = (f"the first {int(eval_batches) * batch:,} images of {parts}" if eval_batches
                  else "the whole " + ("validation split and test set" if has_val else "test set"))
    selection = ("the test accuracy is read at the epoch of best validation accuracy" if has_val
                 else "no validation split: the epoch of best test accuracy is reported (an "
                 "optimistic pick)")
    seconds = values(cells, "seconds")
    timing = (f"; {_mean(seconds):.0f} s per run on average on one CPU thread of the shared "
              "2-core machine" if seconds else "")
    seeds_all = ",".join(map(str, part.seeds))
    command = " ".join(["ilif", *part.command(DEFAULT_ROOT, 0)[3:]]).replace(
        "--seeds 0", "--seeds S").replace(f"{part.name}/s0", f"{part.name}/sS")
    return (
        f"Command: `{command}` for each seed S in {seeds_all} (all of it: `make results`). "
        f"Setting: `{config.get('dataset')}` with model `{config.get('model')}`, "
        f"T = {config.get('T')}, τ = {config.get('tau')} for every neuron, "
        f"{config.get('epochs')} epochs of {per_epoch}, SGD lr {config.get('lr')} (cosine), "
        f"validation share {config.get('val_split')}; every epoch evaluates {evaluation}; "
        f"{selection}. Config "
        f"[`{part.config}`](../{part.config}). Seeds present: "
        f"{', '.join(map(str, seeds)) or 'none yet'} ({len(cells)} finished runs{timing})."
    )


def commands(part: Part, root: Path) -> str:
    lines = [" ".join(["ilif", *part.command(root, seed)[3:]]) for seed in part.seeds]
    return "```\n" + "\n".join(lines) + "\n```"


def not_run(part: str) -> str:
    return (f"*Not run yet: no finished cell of the `{part}` sweep in the results. "
            "`make results` runs it (it resumes where it stopped).*")


# ------------------------------------------------------------------------------------- sections
def section_width(results: Results, figs: Figures, part_name: str, prefix: str, title: str,
                  columns: Sequence[Column]) -> list[str]:
    part = PARTS[part_name]
    cells = results.part(part_name)
    out = [title, "", describe_setting(part, results), ""]
    if not cells:
        return out + [not_run(part_name), ""]
    groups = by_series(sorted(cells, key=lambda c: (c["neuron"] != "lif", c["width"])),
                       lambda c: (c["neuron"], float(c["width"])))
    out += [series_table(groups, ["neuron", "γ"], columns,
                         lambda k: [label(k[0]), f"{k[1]:g}"]), ""]
    out += ["Findings (generated from the table; a difference is *beyond seed noise* when it "
            "exceeds twice its standard error over seeds):", ""]
    out += [f"- {line}" for line in width_findings(groups)] + [""]
    reading = width_reading(groups, paper_context=read_config(part.config).get("dataset")
                            == "cifar10")
    if reading:
        out += ["Reading (sentences chosen by the generator from the comparisons above):", ""]
        out += [f"- {line}" for line in reading] + [""]
    claims = width_claims(groups)
    if claims:
        out += ["Against the paper's claims (SPEC §1), at this scale:", ""]
        out += paper_lines(claims) + [""]
    out += [figs.metric_vs_width(cells, ACC, f"{prefix}_accuracy_vs_width.png"),
            figs.metric_vs_width(cells, FIRING, f"{prefix}_firing_vs_width.png",
                                 "test firing rate (spikes / neuron / step)"),
            figs.metric_vs_width(cells, OPEN, f"{prefix}_open_rate_vs_width.png",
                                 "gradient-open rate (last training epoch)"), ""]
    return out


def width_findings(groups: dict[tuple[str, float], list[dict[str, Any]]]) -> list[str]:
    """Generated answers to item 1's questions, from the (neuron, γ) groups."""
    lines: list[str] = []
    widths = sorted({w for _, w in groups})
    if len(widths) < 2:
        return ["Only one width measured so far."]
    low, high = widths[0], widths[-1]

    def cells(neuron: str, width: float) -> list[dict[str, Any]]:
        return groups.get((neuron, width), [])

    for neuron in ("lif", "ilif"):
        present = [w for w in widths if cells(neuron, w)]
        if len(present) < 2:
            continue
        means = [_mean(values(cells(neuron, w), "firing_rate")) for w in present]
        rho = spearman(present, means)
        comp = compare(values(cells(neuron, present[-1]), "firing_rate"),
                       values(cells(neuron, present[0]), "firing_rate"))
        trend = ("rises with γ" if comp.diff > 0 else "falls with γ") if comp.known else "—"
        rank = f"rank correlation with γ {rho:+.2f}; " if math.isfinite(rho) else ""
        lines.append(
            f"{label(neuron)}'s test firing rate {trend}: {comp.mean_b:.4f} at γ = {present[0]:g} "
            f"→ {comp.mean_a:.4f} at γ = {present[-1]:g} ({rank}the change is "
            f"{comp.verdict('an increase', 'a decrease')})."
        )
    below, beyond, shared = 0, 0, 0
    for w in widths:
        if cells("lif", w) and cells("ilif", w):
            shared += 1
            comp = compare(values(cells("ilif", w), "firing_rate"),
                           values(cells("lif", w), "firing_rate"))
            below += comp.diff < 0
            beyond += comp.diff < 0 and comp.beyond_noise
    if shared:
        ratios = [(w, _mean(values(cells("ilif", w), "firing_rate"))
                   / _mean(values(cells("lif", w), "firing_rate")))
                  for w in widths if cells("lif", w) and cells("ilif", w)]
        lines.append(f"ILIF fires less than LIF at {below} of {shared} widths (beyond seed noise "
                     f"at {beyond} of them); ILIF/LIF firing-rate ratio "
                     + ", ".join(f"{r:.3f} at γ = {w:g}" for w, r in ratios) + ".")
    for w in dict.fromkeys((low, PAPER_WIDTH, high)):
        if cells("lif", w) and cells("ilif", w):
            lines.append(sentence_compare(
                f"Test accuracy at γ = {w:g}", "ILIF", "LIF",
                compare(values(cells("ilif", w), "test_acc", 100),
                        values(cells("lif", w), "test_acc", 100)), " %", 2))
    for neuron in ("lif", "ilif"):
        present = [w for w in widths if cells(neuron, w)]
        if len(present) < 2:
            continue
        accs = {w: values(cells(neuron, w), "test_acc", 100) for w in present}
        best = max(present, key=lambda w: _mean(accs[w]))
        if best == present[0]:
            lines.append(f"{label(neuron)} is most accurate at the narrowest width, "
                         f"γ = {present[0]:g}: no accuracy loss at small γ here.")
        else:
            comp = compare(accs[present[0]], accs[best])
            lines.append(sentence_compare(
                f"{label(neuron)} at its narrowest width against its best width (γ = {best:g})",
                f"γ = {present[0]:g}", f"γ = {best:g}", comp, " %", 2))
    return lines


def width_reading(groups: dict[tuple[str, float], list[dict[str, Any]]],
                  paper_context: bool = True) -> list[str]:
    """Interpretation of the γ study, each sentence emitted only when the numbers support it
    (``paper_context``: the data set is the paper's CIFAR-10, so its accuracies are quoted)."""
    widths = sorted({w for _, w in groups})
    if len(widths) < 2:
        return []
    low, high = widths[0], widths[-1]
    lines = []

    def v(neuron: str, width: float, key: str, scale: float = 1.0) -> list[float]:
        return values(groups.get((neuron, width), []), key, scale)

    for neuron in ("lif", "ilif"):
        opened = compare(v(neuron, high, "open_rate"), v(neuron, low, "open_rate"))
        grad = compare(v(neuron, low, "grad_norm_first_layer"),
                       v(neuron, high, "grad_norm_first_layer"))
        if opened.known and grad.known and opened.diff > 0 and grad.diff > 0:
            lines.append(
                f"{label(neuron)}: widening the rectangle from γ = {low:g} to {high:g} opens more "
                f"neuron-steps to the gradient ({opened.mean_b:.3f} → {opened.mean_a:.3f}, "
                f"×{opened.mean_a / opened.mean_b:.1f} for ×{high / low:g} in γ), yet the "
                f"first-layer gradient norm is larger at γ = {low:g} ({grad.mean_a:.2e} vs "
                f"{grad.mean_b:.2e}): the rectangle's height is 1/γ, so the few open "
                "neuron-steps of a narrow surrogate each pass a larger derivative. In norm, the "
                "narrow surrogate concentrates the gradient on fewer neurons rather than "
                "starving it."
            )
    for neuron in ("lif", "ilif"):
        present = [w for w in widths if v(neuron, w, "grad_norm_first_layer")]
        ratios = [_mean(v(neuron, w, "grad_norm_last_layer"))
                  / _mean(v(neuron, w, "grad_norm_first_layer")) for w in present]
        rho = spearman(present, ratios)
        if len(present) >= 3 and math.isfinite(rho) and abs(rho) >= 0.8:
            lines.append(
                f"{label(neuron)}: the ratio of the last to the first neuron layer's gradient "
                "norm is "
                + ", ".join(f"{r:.2f} at γ = {w:g}" for w, r in zip(present, ratios, strict=True))
                + (": the first layer's gradient shrinks relative to the last layer's as γ "
                   "grows (every open neuron-step on the way down scales it by 1/γ)." if rho > 0
                   else ": the first layer's gradient grows relative to the last layer's as γ "
                   "grows.")
            )
    for neuron in ("lif", "ilif"):
        present = [w for w in widths if v(neuron, w, "test_acc")]
        if len(present) < 3:
            continue
        best = max(present, key=lambda w: _mean(v(neuron, w, "test_acc", 100)))
        if best in (present[0], present[-1]):
            continue
        edges = [compare(v(neuron, best, "test_acc", 100), v(neuron, w, "test_acc", 100))
                 for w in (present[0], present[-1])]
        beyond = [w for w, c in zip((present[0], present[-1]), edges, strict=True)
                  if c.beyond_noise]
        lines.append(
            f"{label(neuron)}'s accuracy peaks inside the range, at γ = {best:g}; "
            + (f"the drop to γ = {' and γ = '.join(f'{w:g}' for w in beyond)} is beyond seed "
               "noise." if beyond else "the drop towards both ends is within seed noise.")
        )
    accs = [_mean(values(g, "test_acc", 100)) for g in groups.values()]
    accs = [a for a in accs if math.isfinite(a)]
    if accs:
        context = (f" against the paper's {PAPER_ACCURACY['lif']:.2f}–"
                   f"{PAPER_ACCURACY['ilif']:.2f} % on CIFAR-10 (ResNet-18, 200 epochs)"
                   if paper_context else " (the paper reports no result on this dataset)")
        lines.append(
            f"Accuracies span {min(accs):.1f}–{max(accs):.1f} % here{context}: a few short "
            "epochs of a small network, where the neurons' differences in accuracy are of the "
            "order of the seed noise unless a comparison above says otherwise."
        )
    return lines


def width_claims(groups: dict[tuple[str, float], list[dict[str, Any]]]
                 ) -> list[tuple[str, Comparison, int]]:
    """The paper's γ claims as comparisons: (claim, comparison, expected sign of a − b)."""
    widths = sorted({w for _, w in groups})
    if len(widths) < 2:
        return []
    low, high = widths[0], widths[-1]
    mid = PAPER_WIDTH if PAPER_WIDTH in widths else widths[len(widths) // 2]

    def v(neuron: str, width: float, key: str, scale: float = 1.0) -> list[float]:
        return values(groups.get((neuron, width), []), key, scale)

    claims = [
        (f"a wide surrogate overactivates LIF (firing at γ = {high:g} above γ = {low:g})",
         compare(v("lif", high, "firing_rate"), v("lif", low, "firing_rate")), +1),
        (f"a narrow surrogate starves LIF's gradient (first-layer gradient norm at γ = {low:g} "
         f"below γ = {mid:g})",
         compare(v("lif", low, "grad_norm_first_layer"), v("lif", mid, "grad_norm_first_layer")),
         -1),
    ]
    for w in dict.fromkeys((low, mid, high)):
        claims.append((f"ILIF fires less than LIF at γ = {w:g}",
                       compare(v("ilif", w, "firing_rate"), v("lif", w, "firing_rate")), -1))
    for w in dict.fromkeys((low, mid)):
        claims.append((f"ILIF is more accurate than LIF at γ = {w:g}",
                       compare(v("ilif", w, "test_acc", 100), v("lif", w, "test_acc", 100)), +1))
    return claims


def gradient_table(cells: list[dict[str, Any]]) -> str:
    groups = by_series(sorted(cells, key=lambda c: (c["neuron"] != "lif", c["width"])),
                       lambda c: (c["neuron"], float(c["width"])))
    layers = list(dict.fromkeys(layer for c in cells for layer in (c.get("layer_grad_norm") or {})))
    rows = []
    for (neuron, width), group in groups.items():
        means = dict(layer_means(group, "layer_grad_norm"))
        rows.append([label(neuron), f"{width:g}"]
                    + [f"{means[layer]:.2e}" if layer in means else "–" for layer in layers])
    return md_table(["neuron", "γ", *(short_layer(layer) for layer in layers)], rows)


def section_item1(results: Results, figs: Figures) -> list[str]:
    columns = (ACC, FIRING, OVERACTIVE, OPEN, GRAD_FIRST, GRAD_LAST)
    out = section_width(results, figs, "width", "item1",
                        "## 1. The γ trade-off on CIFAR-10: LIF vs ILIF", columns)
    cells = results.part("width")
    if not cells:
        return out
    out += ["Per-layer gradient norm at the neuron inputs (RMS over the last training epoch's "
            "batches, mean over seeds), first layer on the left:", "", gradient_table(cells), ""]
    widths = sorted({float(c["width"]) for c in cells})
    chosen = [w for w in (widths[0], PAPER_WIDTH, widths[-1]) if w in widths]
    grads, firing = {}, {}
    for neuron in ("lif", "ilif"):
        for w in dict.fromkeys(chosen):
            group = results.select(["width"], [neuron], w)
            grads[f"{label(neuron)} γ={w:g}"] = [(short_layer(k), v) for k, v in
                                               layer_means(group, "layer_grad_norm") if v > 0]
            firing[f"{label(neuron)} γ={w:g}"] = [(short_layer(k), v) for k, v in
                                                layer_means(group, "layers", "firing_rate")]
    out += [figs.layers(firing, "test firing rate per layer", "item1_layer_firing.png"),
            figs.layers(grads, "‖∂L/∂x‖ at the neuron inputs", "item1_layer_grad_norm.png",
                        log=True), ""]
    return out


def section_bars(results: Results, title: str, part_name: str, neurons: Sequence[str],
                 columns: Sequence[Column], surrogate: str | None = "rectangle",
                 paper: bool = False) -> list[str]:
    """A table of neurons at the paper's γ, the LIF/ILIF rows taken from the width part."""
    part = PARTS[part_name]
    own = results.part(part_name)
    cells = results.select(["width", part_name], neurons, PAPER_WIDTH, surrogate)
    out = [title, "", describe_setting(part, results, cells)
           .replace("Seeds present", f"γ = {PAPER_WIDTH:g} throughout; the LIF and ILIF rows "
                    "are the γ = 1 runs of item 1. Seeds present"), ""]
    if not own:
        out += [not_run(part_name), ""]
    if not cells:
        return out
    order = {n: i for i, n in enumerate(neurons)}
    groups = by_series(sorted(cells, key=lambda c: (order[c["neuron"]], c["surrogate"])),
                       lambda c: (c["neuron"], c["surrogate"]))
    several = len({s for _, s in groups}) > 1
    names = ["neuron", "surrogate"] if several else ["neuron"]

    def name_of(key: tuple[str, str]) -> list[str]:
        return [label(key[0]), key[1]] if several else [label(key[0])]

    extra = (lambda k: [f"{PAPER_ACCURACY[k[0]]:.2f}" if k[0] in PAPER_ACCURACY else "–"]) \
        if paper else None
    out += [series_table(groups, names, columns, name_of, extra,
                         ["paper, ResNet-18 (%)"] if paper else ()), ""]
    return out


def neuron_findings(results: Results, part_name: str, neurons: Sequence[str]) -> list[str]:
    lif = results.select(["width", part_name], ["lif"], PAPER_WIDTH, "rectangle")
    lines = []
    for neuron in neurons:
        if neuron == "lif":
            continue
        other = results.select(["width", part_name], [neuron], PAPER_WIDTH, "rectangle")
        if not other or not lif:
            continue
        lines.append(sentence_compare(f"{label(neuron)} vs LIF, test accuracy", label(neuron),
                                      "LIF", compare(values(other, "test_acc", 100),
                                                     values(lif, "test_acc", 100)), " %", 2))
        lines.append(sentence_compare(f"{label(neuron)} vs LIF, firing rate", label(neuron),
                                      "LIF", compare(values(other, "firing_rate"),
                                                     values(lif, "firing_rate")), "", 4))
    return lines


def section_item2(results: Results, figs: Figures) -> list[str]:
    neurons = ("lif", "ilif-mpiu", "ilif-ciu", "ilif")
    out = section_bars(results, "## 2. Ablation: LIF, LIF+MPIU, LIF+CIU, ILIF", "ablation",
                       neurons, (ACC, FIRING, OPEN, ENERGY))
    lines = neuron_findings(results, "ablation", neurons)
    if lines:
        out += ["Findings (generated):", ""] + [f"- {line}" for line in lines] + [""]
    cells = results.select(["width", "ablation"], neurons, PAPER_WIDTH, "rectangle")
    if cells:
        out += [figs.metric_vs_width(cells, ACC, "item2_accuracy.png"),
                figs.metric_vs_width(cells, FIRING, "item2_firing.png"), ""]
    return out


def section_item3(results: Results, figs: Figures) -> list[str]:
    out = section_bars(results, "## 3. Surrogate shapes at equal width (open question 3)",
                       "surrogate", ("lif", "ilif"), (ACC, FIRING, OPEN, SURR_MEAN),
                       surrogate=None)
    cells = results.select(["width", "surrogate"], ("lif", "ilif"), PAPER_WIDTH)
    lines = []
    for neuron in ("lif", "ilif"):
        groups = by_series([c for c in cells if c["neuron"] == neuron], lambda c: c["surrogate"])
        if len(groups) < 2:
            continue
        ranked = sorted(groups, key=lambda s: -_mean(values(groups[s], "test_acc", 100)))
        best, worst = ranked[0], ranked[-1]
        comp = compare(values(groups[best], "test_acc", 100),
                       values(groups[worst], "test_acc", 100))
        lines.append(
            f"{label(neuron)}: most accurate with {best} ({comp.mean_a:.2f} %), least with "
            f"{worst} ({comp.mean_b:.2f} %); the spread of {comp.diff:.2f} points is "
            + ("beyond seed noise." if comp.beyond_noise else
               "within seed noise." if comp.noise_estimated else
               "measured on one seed (noise not estimated).")
        )
    if lines:
        out += ["Findings (generated):", ""] + [f"- {line}" for line in lines] + [""]
    if cells:
        out += [figs.metric_vs_width(cells, ACC, "item3_accuracy.png"),
                figs.metric_vs_width(cells, OPEN, "item3_open_rate.png"), ""]
    return out


def section_item4(results: Results, figs: Figures) -> list[str]:
    neurons = ("lif", "plif", "alif", "clif", "ilif")
    out = section_bars(results, "## 4. Comparators: PLIF, ALIF, CLIF against ILIF", "neurons",
                       neurons, (ACC, FIRING, OPEN, ENERGY), paper=True)
    cells = results.select(["width", "neurons"], neurons, PAPER_WIDTH, "rectangle")
    lines = []
    ilif = [c for c in cells if c["neuron"] == "ilif"]
    for other in ("lif", "plif", "alif", "clif"):
        group = [c for c in cells if c["neuron"] == other]
        if ilif and group:
            lines.append(sentence_compare(
                f"ILIF vs {label(other)}, test accuracy", "ILIF", label(other),
                compare(values(ilif, "test_acc", 100), values(group, "test_acc", 100)),
                " %", 2))
    if lines:
        paper = (f"The paper (ResNet-18, T = 6, 200 epochs, GPU) reports ILIF "
                 f"{PAPER_ACCURACY['ilif']:.2f} %, CLIF {PAPER_ACCURACY['clif']:.2f} %, LIF "
                 f"{PAPER_ACCURACY['lif']:.2f} % on CIFAR-10 (SPEC §5): ILIF ahead of CLIF by "
                 f"{PAPER_ACCURACY['ilif'] - PAPER_ACCURACY['clif']:.2f} and of LIF by "
                 f"{PAPER_ACCURACY['ilif'] - PAPER_ACCURACY['lif']:.2f} points.")
        out += ["Findings (generated):", ""] + [f"- {line}" for line in lines] + [f"- {paper}", ""]
        clif = [c for c in cells if c["neuron"] == "clif"]
        lif = [c for c in cells if c["neuron"] == "lif"]
        out += ["Against the paper's ordering, at this scale:", ""] + paper_lines([
            ("ILIF more accurate than LIF", compare(values(ilif, "test_acc", 100),
                                                    values(lif, "test_acc", 100)), +1),
            ("ILIF more accurate than CLIF", compare(values(ilif, "test_acc", 100),
                                                     values(clif, "test_acc", 100)), +1),
            ("CLIF more accurate than LIF", compare(values(clif, "test_acc", 100),
                                                    values(lif, "test_acc", 100)), +1),
        ]) + [""]
    if cells:
        out += [figs.metric_vs_width(cells, ACC, "item4_accuracy.png"),
                figs.metric_vs_width(cells, FIRING, "item4_firing.png"), ""]
    return out


ENERGY_NOTE = (
    "Energy of one test inference from the firing rates measured on the test images (the selected "
    "checkpoint of each run), with the 45 nm constants of SPEC §6 (4.6 pJ per MAC, 0.9 pJ per "
    "accumulate): layers fed by spikes cost `SOP = r_in · T · FLOPs` accumulates, layers fed by "
    "real values (the encoding layer, and any layer reading average-pooled spikes) cost MACs over "
    "their non-zero inputs at each of the T steps — the paper's count — and, beside it, the "
    "neuron-state updates counted from each neuron's equations (a sigmoid at 4 MACs; "
    "`ilif.analysis.energy.neuron_ops`). State memory traffic is not counted (the "
    "`--state-access-pj` option of `ilif sweep` adds it)."
)


def energy_block(groups: dict[str, list[dict[str, Any]]], what: str) -> list[str]:
    """The energy table of ``groups`` (neuron -> cells) with its generated findings."""
    cells = [c for group in groups.values() for c in group]
    ann = _mean(values(cells, "ann_energy_pj", 1e-3))
    flops = _mean(values(cells, "flops", 1e-6))
    sops = _mean(values(cells, "sops"))
    out = [f"{what}. The same network as an ANN ({flops:.2f} M MACs per image) costs "
           f"{ann:.1f} nJ.", ""]

    def ratio(key: str, group: list[dict[str, Any]]) -> list[float]:
        return [c[key] / c["ann_energy_pj"] for c in group
                if isinstance(c.get(key), int | float) and c.get("ann_energy_pj")]

    head = ["neuron", "seeds", "firing rate", "SOPs (M)", "synaptic (nJ)", "neuron updates (nJ)",
            "total (nJ)", "SNN/ANN, synaptic only", "SNN/ANN, with updates"]
    rows = []
    for neuron, group in groups.items():
        rows.append([label(neuron), str(len(group)),
                     fmt_mean_std(values(group, "firing_rate"), 4),
                     fmt_mean_std(values(group, "sops", 1e-6), 3),
                     fmt_mean_std(values(group, "synaptic_energy_pj", 1e-3), 1),
                     fmt_mean_std(values(group, "neuron_energy_pj", 1e-3), 2),
                     fmt_mean_std(values(group, "snn_energy_pj", 1e-3), 1),
                     fmt_mean_std(ratio("synaptic_energy_pj", group), 3),
                     fmt_mean_std(ratio("snn_energy_pj", group), 3)])
    out += [md_table(head, rows), ""]
    lines = []
    if sops == 0:
        dearer = _mean(values(cells, "synaptic_energy_pj", 1e-3)) > ann
        lines.append(
            "No layer of this network is fed by spikes: every synaptic layer after the first "
            "reads average-pooled spikes (real values), which SPEC §6 counts as MACs over the "
            "non-zero inputs at every step"
            + (", so the spiking network costs more than the ANN here" if dearer else "")
            + " and the paper's energy argument (cheap accumulates) does not apply to this "
            "architecture; the comparison between neurons (their rates of non-zero inputs) "
            "still does."
        )
    lif, ilif = groups.get("lif", []), groups.get("ilif", [])
    claims: list[str] = []
    if lif and ilif:
        syn = compare(values(ilif, "synaptic_energy_pj", 1e-3),
                      values(lif, "synaptic_energy_pj", 1e-3))
        tot = compare(values(ilif, "snn_energy_pj", 1e-3), values(lif, "snn_energy_pj", 1e-3))
        share = {n: _mean(values(g, "neuron_energy_pj")) / _mean(values(g, "snn_energy_pj"))
                 for n, g in (("lif", lif), ("ilif", ilif))}
        lines += [
            sentence_compare("Synaptic energy (the paper's count)", "ILIF", "LIF", syn, " nJ", 1)
            + f" ILIF/LIF = {syn.mean_a / syn.mean_b:.3f}.",
            sentence_compare("With the neuron-state updates", "ILIF", "LIF", tot, " nJ", 1)
            + f" ILIF/LIF = {tot.mean_a / tot.mean_b:.3f}.",
            f"The neuron-state updates are {100 * share['ilif']:.1f} % of ILIF's energy and "
            f"{100 * share['lif']:.1f} % of LIF's.",
        ]
        claims = ["Against the paper's energy claim:", ""] + paper_lines([
            ("ILIF needs less synaptic energy than LIF (the paper's count)", syn, -1),
            ("… and still less with the neuron-state updates counted (beyond the paper)", tot, -1),
        ]) + [""]
    if lines:
        out += ["Findings (generated):", ""] + [f"- {line}" for line in lines] + [""]
    return out + claims


def section_item5(results: Results, figs: Figures) -> list[str]:
    neurons = ("lif", "ilif-mpiu", "ilif-ciu", "ilif", "plif", "alif", "clif")
    out = ["## 5. Energy per inference, with and without the neuron-update overhead "
           "(open question 1)", "", ENERGY_NOTE, ""]
    cells = results.select(["width", "ablation", "neurons"], neurons, PAPER_WIDTH, "rectangle")
    if not cells:
        return out + [not_run("width"), ""]
    order = {n: i for i, n in enumerate(neurons)}
    groups = by_series(sorted(cells, key=lambda c: order[c["neuron"]]), lambda c: c["neuron"])
    out += ["### CIFAR-10, `cifar-small`", ""]
    out += energy_block(groups, "The runs of items 1, 2 and 4 at γ = 1")
    out += [figs.add(plot_energy(groups, figs.folder / "item5_energy.png"), "energy"), ""]
    dvs = results.select(["dvs-width"], ("lif", "ilif"), PAPER_WIDTH, "rectangle")
    if dvs:
        dvs_groups = by_series(sorted(dvs, key=lambda c: c["neuron"] != "lif"),
                               lambda c: c["neuron"])
        out += ["### digits-dvs, `digits-small`", ""]
        out += energy_block(dvs_groups, "The γ = 1 runs of item 6")
        out += [figs.add(plot_energy(dvs_groups, figs.folder / "item5_energy_dvs.png"),
                         "energy on digits-dvs"), ""]
    return out


def section_item6(results: Results, figs: Figures) -> list[str]:
    out = section_width(results, figs, "dvs-width", "item6",
                        "## 6. Event data: the γ study on digits-dvs, and real N-MNIST",
                        (ACC, FIRING, OPEN, GRAD_FIRST, SECONDS))
    part = PARTS["nmnist-smoke"]
    cells = results.part("nmnist-smoke")
    out += ["### Real N-MNIST smoke check", "", describe_setting(part, results), ""]
    if not cells:
        failed = results.failed.get("nmnist-smoke")
        out += [f"*Failed cells: {', '.join(failed)}.*" if failed else not_run("nmnist-smoke"), ""]
        return out
    out += [
        "The real N-MNIST data of this repository hold 10 training and 10 test recordings (one "
        "per digit): this is a check that reading the ATIS files, integrating events into frames, "
        "training and the analysis run end to end on real sensor data, not an accuracy claim.",
        "",
        series_table(by_series(cells, lambda c: c["neuron"]), ["neuron"],
                     (ACC, FIRING, OPEN, SECONDS), lambda k: [label(k)]), "",
    ]
    return out


def section_reproduce(results: Results, root: Path, configs: Path) -> list[str]:
    seconds = [t for cells in results.cells.values() for t in values(cells, "seconds")]
    total = (f" The {len(seconds)} runs on this page took {sum(seconds) / 3600:.1f} hours of "
             "run time in all (the sum of their wall times, on a shared 2-core machine)."
             if seconds else "")
    out = ["## Reproducing", "",
           "Everything above (tables, figures, the generated findings): `make results`, i.e. "
           "`python -m ilif.study`. It runs each sweep below (a sweep skips finished cells and an "
           "interrupted cell resumes from its last checkpoint), then rewrites this page and "
           "`docs/figures/results/` from the `results.json` files under "
           f"`{root}/`. `python -m ilif.study --write-only` rewrites the page alone; "
           "`--jobs N` runs N sweeps at a time (one CPU thread each)." + total, ""]
    for part in PARTS.values():
        out += [f"`{part.name}`:", "", commands(part, root), ""]
    out += ["### Full scale (the paper's settings, SPEC §4)", "",
            "No GPU run was made for this page. The paper's four settings are the configs below "
            "(`DATA`: the folder holding the dataset; `torchrun --nproc_per_node=N -m ilif train "
            "…` spreads a run over N GPUs, see docs/training.md; `--neuron lif` or "
            "`--neuron clif` trains the paper's comparators). The times are **estimates** "
            "for one modern data-centre GPU, not measurements: about 10 GFLOPs per CIFAR image "
            "per training pass at T = 6 (forward and backward), and memory-bound neuron "
            "updates.", ""]
    rows = []
    for name, what, hours in FULL_SCALE:
        path = configs / f"{name}.yaml"
        exists = path.is_file()
        command = (f"`ilif train --config {path.as_posix()} --data-root DATA`" if exists
                   else f"`{path.as_posix()}` (not in this tree yet)")
        rows.append([what, command, f"{hours} (estimate)"])
    out += [md_table(["setting", "command", "expected GPU time"], rows), ""]
    return out


def conv_layers() -> int:
    """The convolutional layers of ``cifar-small``."""
    from ilif.models.convnet import CIFAR_SMALL

    return sum(isinstance(item, int) for item in CIFAR_SMALL)


def intro(results: Results) -> list[str]:
    done = sum(len(v) for v in results.cells.values())
    failed = sum(len(v) for v in results.failed.values())
    return [
        "# Results: the paper's claims at CPU scale", "",
        "<!-- Generated by `make results` (python -m ilif.study) from runs/study/*/s*/results.json;"
        " do not edit by hand. -->", "",
        "What the library shows when used as a researcher would: the γ trade-off, the ablation, "
        "the surrogate shapes, the comparators and the energy count of the paper, measured on the "
        "real CIFAR-10 subset of this repository (10,000 training and 2,000 test images) and on "
        "event data, with several seeds. These are **CPU-scale** runs: a small network "
        f"(`cifar-small`, {conv_layers()} convolutional layers) trained for minutes, not the "
        "paper's ResNet-18 trained for 200 epochs on a GPU, so accuracies "
        "sit far below the paper's (SPEC §5 numbers are given beside them for context only) and "
        "a result here says what holds in this small setting, not that the paper's numbers are "
        "right or wrong.", "",
        f"This page was generated from {done} finished runs"
        + (f" ({failed} failed runs left out)" if failed else "") + ". Every value is the mean ± "
        "sample standard deviation over seeds (one seed: the value). A difference counts as "
        "*beyond seed noise* when it exceeds twice its standard error over seeds "
        "(`√(s_a²/n_a + s_b²/n_b)`); with one seed no noise is estimated and no such claim is "
        "made. Test accuracy is read at the epoch of best validation accuracy; the firing rate "
        "(spikes per neuron per step) and the overactive share (neurons firing at most steps) are "
        "measured on test images with the selected checkpoint; the gradient-open rate "
        "(|H − θ| < γ/2) and the gradient norms at the neuron inputs during the last training "
        "epoch.", "",
    ]


def summary(results: Results) -> list[str]:
    """The paper's claims against the CIFAR-10 γ study at a glance (the same verdicts as §1)."""
    cells = results.part("width")
    if not cells:
        return []
    groups = by_series(cells, lambda c: (c["neuron"], float(c["width"])))
    claims = width_claims(groups)
    if not claims:
        return []
    return ["## Summary: the paper's claims on CIFAR-10 at this scale", "",
            "Generated from §1 (the verdicts and the criterion are explained there):", "",
            *paper_lines(claims), ""]


def write_results_doc(root: str | Path = DEFAULT_ROOT, doc: str | Path = DOC,
                      figures: str | Path = FIGURES, configs: str | Path = "configs") -> Path:
    """Write ``doc`` and its figures (in ``figures``, which the study owns: PNGs there that the
    page no longer shows are removed) from the results under ``root``."""
    from ilif.files import write_text

    root, doc, figures = Path(root), Path(doc), Path(figures)
    results = collect(root)
    figs = Figures(figures, doc)
    lines = intro(results) + summary(results)
    for section in (section_item1, section_item2, section_item3, section_item4, section_item5,
                    section_item6):
        lines += section(results, figs)
    lines += section_reproduce(results, root, Path(configs))
    text = "\n".join(lines)
    while "\n\n\n" in text:
        text = text.replace("\n\n\n", "\n\n")
    write_text(doc, text.rstrip() + "\n")
    written = {path.resolve() for path in figs.written}
    for stale in figures.glob("*.png"):  # figures of an earlier layout the page no longer shows
        if stale.resolve() not in written:
            stale.unlink()
    return doc
