"""The figures of docs/results.md (PNG, written into the study's figures folder and linked
relative to the page), drawn with the plotting helpers of :mod:`ilif.analysis.report`."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ilif.analysis.report import group_by, mean_std, pyplot, save_figure
from ilif.study.load import label, number


class Figures:
    """Writes the figures into ``folder`` and links them relative to the document."""

    def __init__(self, folder: Path, doc: Path) -> None:
        self.folder, self.doc = folder, doc
        self.written: list[Path] = []

    def add(self, path: Path | None, title: str) -> str:
        """The markdown link of ``path`` (empty when no figure was drawn)."""
        if path is None:
            return ""
        self.written.append(path)
        relative = Path(os.path.relpath(path.resolve(), self.doc.parent.resolve()))
        return f"![{title}]({relative.as_posix()})"


def plot_firing_trajectory(cells: Sequence[dict[str, Any]], widths: Sequence[float],
                           path: Path, title: str) -> Path | None:
    """Validation firing rate against the SGD step, LIF vs ILIF at each of ``widths``: step 0
    (batch norm in training mode, open marker) then every epoch; mean ± std over seeds."""
    series = group_by([c for c in cells if c.get("trajectory")
                       and any(math.isclose(float(c["width"]), w) for w in widths)],
                      lambda c: (c["neuron"], float(c["width"])))
    if not series:
        return None
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.0, 3.8))
    for index, ((neuron, width), group) in enumerate(sorted(series.items())):
        color = f"C{index}"
        epochs = min(len(c["trajectory"]) for c in group)
        steps = [group[0]["trajectory"][e].get("sgd_steps", e + 1) for e in range(epochs)]
        stats = [mean_std([number(c["trajectory"][e], "val_firing_rate") for c in group])
                 for e in range(epochs)]
        name = f"{label(neuron)}, γ = {width:g}"
        ax.errorbar(steps, [m for m, _, _ in stats], yerr=[s for _, s, _ in stats], marker="o",
                    capsize=2, color=color, label=name)
        start = mean_std([number(c, "step0_firing_rate") for c in group])
        if start[2]:
            ax.errorbar([0], [start[0]], yerr=[start[1]], marker="o", mfc="white", capsize=2,
                        color=color)
    ax.set_xlabel("SGD step (open markers: step 0, batch norm in training mode)")
    ax.set_ylabel("validation firing rate")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def plot_energy_presets(groups: dict[str, list[dict[str, Any]]], path: Path) -> Path | None:
    """Energy per inference per neuron under both presets side by side (stacked: synaptic,
    neuron updates, spike routing), mean over seeds."""
    if not groups:
        return None
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(8.0, 3.6))
    names = list(groups)
    xs = list(range(len(names)))
    for ax, (prefix, title) in zip(axes, (("", "45 nm (Horowitz 2014)"),
                                          ("loihi_", "Loihi (Davies et al. 2018)")),
                                   strict=True):
        bottom = [0.0] * len(names)
        for key, part, color in (("synaptic_energy_pj", "synaptic", "C0"),
                                 ("neuron_energy_pj", "neuron updates", "C3"),
                                 ("spike_energy_pj", "spike routing", "C2")):
            column = f"{prefix}{key}"
            heights = [mean_std([number(c, column) / 1e3 for c in groups[n]])[0] for n in names]
            heights = [h if math.isfinite(h) else 0.0 for h in heights]
            if not any(heights):
                continue
            ax.bar(xs, heights, bottom=bottom, label=part, color=color)
            bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
        ax.set_xticks(xs, [label(n) for n in names])
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3, axis="y")
    axes[0].set_ylabel("energy per inference (nJ)")
    axes[0].legend(fontsize=8)
    return save_figure(fig, path)
