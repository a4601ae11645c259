"""``ilif demo``: LIF vs ILIF on the embedded digits over a small γ sweep, with the full report.

Trains ``digits-small`` with LIF and with ILIF at each surrogate width γ (rectangle surrogate),
measures test accuracy, firing rate (trained, and at step 0: the untrained network with batch
norm in training mode, :mod:`ilif.analysis.trajectory`), gradient-open rate, gradient norms and
energy, prints the table, and writes ``results.csv``, ``results.json``, ``report.md`` and its
figures into ``--out``.
No download; a few minutes on two CPU cores. Rerunning resumes (finished cells are kept).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ilif.analysis.report import summary_table, write_report
from ilif.analysis.sweep import Grid, run_sweep

DEMO_WIDTHS = (0.25, 1.0, 4.0)
DEMO_NEURONS = ("lif", "ilif")


def demo_config(out: str | Path, **overrides: Any) -> Any:
    """The demo's training configuration (digits, digits-small, T = 4), with ``overrides``."""
    from ilif.train import TrainConfig

    settings: dict[str, Any] = dict(
        dataset="digits", model="digits-small", T=4, epochs=3, batch_size=64, lr=0.1,
        weight_decay=5e-4, train_size=640, seed=1, out=str(out), quiet=True, device="cpu",
    )
    settings.update({k: v for k, v in overrides.items() if v is not None})
    return TrainConfig(**settings)


def run_demo(
    out: str | Path,
    widths: Sequence[float] = DEMO_WIDTHS,
    neurons: Sequence[str] = DEMO_NEURONS,
    seeds: Sequence[int] = (1,),
    **overrides: Any,
) -> Path:
    """Run the demo sweep into ``out`` and write its report; returns the report path."""
    started = time.perf_counter()
    out = Path(out)
    base = demo_config(out, **overrides)
    grid = Grid(neurons=list(neurons), surrogates=["rectangle"], widths=list(widths),
                seeds=list(seeds))
    print(f"ilif demo: {len(grid.cells())} training runs ({', '.join(neurons)} × γ "
          f"{', '.join(f'{w:g}' for w in widths)}) on the embedded digits, into {out}", flush=True)
    run_sweep(base, grid, out, say=lambda line: print(line, flush=True), trajectories=True)
    report = write_report(out)
    from ilif.analysis.report import load_results

    cells, _ = load_results(out)
    print("\n" + summary_table(cells) + "\n")
    print(f"report: {report}  (figures in {out / 'figures'}, per-cell results in "
          f"{out / 'results.csv'}); {time.perf_counter() - started:.0f} s in all", flush=True)
    return report
