"""The sweep, the report and the demo pipeline at a tiny size (a few batches per run)."""

from __future__ import annotations

import csv
import json
import math
import re
from pathlib import Path

import pytest

from ilif.analysis.demo import run_demo
from ilif.analysis.report import ReportError, write_report
from ilif.analysis.sweep import PRESETS, Grid, make_grid, run_sweep
from ilif.cli import main
from ilif.train import TrainConfig

TINY = dict(epochs=1, train_size=96, batch_size=32, limit_train_batches=2, limit_eval_batches=1)
WIDTHS = (0.5, 2.0)


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("demo")
    run_demo(out, widths=WIDTHS, **TINY)
    return out


def test_demo_writes_report_figures_and_results(demo_dir: Path, capsys) -> None:
    report = (demo_dir / "report.md").read_text()
    shown = re.findall(r"!\[[^\]]*\]\(([^)]+\.png)\)", report)
    assert len(shown) >= 3
    for figure in shown:
        assert (demo_dir / figure).is_file() and (demo_dir / figure).stat().st_size > 1000
    with open(demo_dir / "results.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert {"neuron", "width", "firing_rate", "test_acc"} <= set(rows[0])
    assert sorted((r["neuron"], float(r["width"])) for r in rows) == sorted(
        (n, w) for n in ("lif", "ilif") for w in WIDTHS
    )
    numeric = ("test_acc", "firing_rate", "open_rate", "grad_norm", "snn_energy_pj",
               "ann_energy_pj", "energy_ratio", "sops", "flops", "seconds", "dead_share")
    for row in rows:
        assert row["status"] == "done"
        values = {key: float(row[key]) for key in numeric}
        assert all(math.isfinite(v) for v in values.values()), row
        for rate in ("test_acc", "firing_rate", "open_rate", "dead_share"):
            assert 0.0 <= values[rate] <= 1.0
        assert values["flops"] > 0 and values["ann_energy_pj"] == pytest.approx(
            values["flops"] * 4.6)
    # the gradient-open rate grows with γ for both neurons (|h| < γ/2 covers more steps)
    by_cell = {(r["neuron"], float(r["width"])): float(r["open_rate"]) for r in rows}
    for neuron in ("lif", "ilif"):
        assert by_cell[(neuron, 2.0)] > by_cell[(neuron, 0.5)]
    # the step-0 firing rate (before any update) is measured for every cell; the forward pass
    # does not depend on γ and one seed gives one initialisation, so it is the same at every γ
    step0 = {(r["neuron"], float(r["width"])): float(r["step0_firing_rate"]) for r in rows}
    for neuron in ("lif", "ilif"):
        assert 0.0 < step0[(neuron, 0.5)] < 1.0
        assert step0[(neuron, 2.0)] == step0[(neuron, 0.5)]
    assert "firing rate at step 0" in (demo_dir / "report.md").read_text()
    # every epoch's metrics carry the gradient norms per layer and per step
    cell = demo_dir / "cells" / "ilif_rectangle_w2_s1"
    epoch = json.loads((cell / "metrics.jsonl").read_text().splitlines()[-1])
    assert epoch["grad_norm"] > 0 and len(epoch["layer_grad_norm_per_step"]) == 2
    assert all(len(steps) == 4 for steps in epoch["layer_grad_norm_per_step"].values())
    raster = json.loads((cell / "raster.json").read_text())
    assert len(raster["spikes"]) == 4 and set(sum(raster["spikes"], [])) <= {0, 1}


def test_sweep_skips_finished_cells_and_resumes_an_interrupted_one(demo_dir: Path) -> None:
    before = {r["cell"]: r for r in json.loads((demo_dir / "results.json").read_text())["cells"]}
    interrupted = demo_dir / "cells" / "lif_rectangle_w2_s1"
    (interrupted / "summary.json").unlink()  # as if killed after its last checkpoint
    base = TrainConfig(dataset="digits", model="digits-small", T=4, quiet=True, device="cpu",
                       out=str(demo_dir), **TINY)
    grid = Grid(neurons=["lif", "ilif"], surrogates=["rectangle"], widths=list(WIDTHS), seeds=[1])
    lines: list[str] = []
    rows = run_sweep(base, grid, demo_dir, say=lines.append)
    skipped = [line for line in lines if "skipped" in line]
    assert len(skipped) == 3
    assert any("lif_rectangle_w2_s1: resuming from checkpoint_last.pt" in line for line in lines)
    assert (interrupted / "summary.json").is_file()
    after = {r["cell"]: r for r in rows}
    assert after["lif_rectangle_w2_s1"]["test_acc"] == before["lif_rectangle_w2_s1"]["test_acc"]
    assert after["ilif_rectangle_w0.5_s1"]["firing_rate"] == pytest.approx(
        before["ilif_rectangle_w0.5_s1"]["firing_rate"])
    assert write_report(demo_dir).is_file()


def test_presets_are_the_grids_of_the_issue() -> None:
    base = TrainConfig()
    width = make_grid(base, "width")
    assert width.neurons == ["lif", "ilif"] and width.widths == [0.25, 0.5, 1.0, 2.0, 4.0]
    assert make_grid(base, "ablation").neurons == ["lif", "ilif-mpiu", "ilif-ciu", "ilif"]
    assert make_grid(base, "surrogate").surrogates == ["rectangle", "triangle", "sigmoid", "atan"]
    assert make_grid(base, "neurons").neurons == ["lif", "ilif", "clif", "plif", "alif", "mpbn"]
    paths = make_grid(base, "gradient-paths").cells()
    assert [c.neuron_kwargs() for c in paths] == [
        {}, {"detach_reset": True}, {"detach_inhibition": True}]
    assert [c.name for c in paths][1] == "ilif+detach-reset_rectangle_w1_s1234"
    custom = make_grid(base, "width", widths=[1.0], seeds=[1, 2])
    assert len(custom.cells()) == 4 and set(PRESETS) == {
        "width", "ablation", "surrogate", "neurons", "gradient-paths"}
    with pytest.raises(ValueError, match="unknown preset"):
        make_grid(base, "nope")


def test_report_and_cli_errors_name_the_fix(tmp_path: Path, capsys) -> None:
    with pytest.raises(ReportError, match="ilif sweep"):
        write_report(tmp_path)
    assert main(["report", str(tmp_path)]) == 2
    assert "ilif sweep" in capsys.readouterr().out


def test_sweep_flags_reach_the_training_config(tmp_path: Path) -> None:
    from ilif.analysis.cli import _constants
    from ilif.cli import build_parser
    from ilif.train.cli import resolve_config

    config_file = tmp_path / "base.yaml"
    config_file.write_text("epochs: 7\nbatch_size: 16\n")
    args = build_parser().parse_args([
        "sweep", "--out", "x", "--config", str(config_file), "--preset", "width", "--epochs",
        "2", "--T", "6", "--lr", "1e-3", "--neuron-kwarg", "ciu_gain=0.05", "--ac-pj", "0.5",
        "--encoding-once", "--quiet",
    ])
    config = resolve_config(args)
    assert (config.epochs, config.batch_size, config.T, config.lr) == (2, 16, 6, 1e-3)
    assert config.neuron_kwargs == {"ciu_gain": 0.05} and config.quiet
    constants = _constants(args)
    assert constants.ac_pj == 0.5 and constants.encoding_once and constants.mac_pj == 4.6
    chip = _constants(build_parser().parse_args(
        ["sweep", "--out", "x", "--energy-preset", "loihi", "--sigmoid-macs", "2"]))
    assert (chip.name, chip.ac_pj, chip.neuron_update_pj, chip.sigmoid_macs) == (
        "loihi", 23.6, 52.0, 2.0) and not chip.graded_inputs
    with pytest.raises(SystemExit):
        build_parser().parse_args(["sweep", "--out", "x", "--energy-preset", "truenorth"])
    grid = make_grid(config, args.preset, widths=[0.5, 1.0])
    assert [c.name for c in grid.cells()][:2] == ["lif_rectangle_w0.5_s1234",
                                                  "lif_rectangle_w1_s1234"]
