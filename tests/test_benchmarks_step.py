"""The training-step benchmark (benchmarks/train_step.py) and the pooling of its runs against the
targets (benchmarks/pool.py)."""

from __future__ import annotations

import importlib.util
import json
import math
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def _module(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


pool = _module("pool")


# ---------------------------------------------------------------------- the median's interval
@pytest.mark.parametrize("n, k", [(6, 1), (9, 2), (12, 3), (20, 6), (30, 10)])
def test_median_interval_is_the_order_statistic_interval(n, k):
    """[x(k), x(n+1−k)] with the largest k whose coverage 1 − 2·P(Bin(n, ½) < k) ≥ 95 %
    (k from the binomial table; coverage computed here from the definition)."""
    values = [float(v) for v in range(n, 0, -1)]  # unsorted on purpose
    low, high, coverage = pool.median_interval(values)
    assert (low, high) == (float(k), float(n + 1 - k))
    tail = sum(math.comb(n, i) for i in range(k)) / 2 ** n
    assert coverage == pytest.approx(1 - 2 * tail)
    assert coverage >= 0.95
    wider_tail = sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n
    assert 1 - 2 * wider_tail < 0.95  # k + 1 would not cover


def test_median_interval_of_few_values_is_their_range_with_its_coverage():
    low, high, coverage = pool.median_interval([3.0, 1.0, 2.0, 5.0, 4.0])
    assert (low, high) == (1.0, 5.0)
    assert coverage == pytest.approx(1 - 2 / 32)  # below 95 %: stated, not hidden
    with pytest.raises(ValueError, match="at least one"):
        pool.median_interval([])


# ------------------------------------------------------------------------ reading the runs
_LOG = """process 1/2
  [resnet18 fp32] ilif           1060.0 ms
  [resnet18 fp32] sj-lif         1100.0 ms
  [resnet18 fp32] identity       1000.0 ms
  [resnet18 bf16-cl] ilif         550.0 ms
  [resnet18 bf16-cl] sj-lif       660.0 ms
  [resnet18 bf16-cl] identity     500.0 ms
  [cifar-small fp32] ilif          40.0 ms
  [cifar-small fp32] identity      20.0 ms
process 2/2
  [resnet18 fp32] ilif           1050.0 ms
  [resnet18 fp32] sj-lif         1155.0 ms
  [resnet18 fp32] identity       1000.0 ms
"""


def test_printed_output_gives_each_process_its_ratios(tmp_path):
    log = tmp_path / "run.log"
    log.write_text(_LOG)
    first, second = pool.train_step_processes(log)
    assert first["fp32"]["overhead"] == pytest.approx(0.06)
    assert first["fp32"]["vs_sj"] == pytest.approx(1100 / 1060)
    assert first["bf16-cl"]["overhead"] == pytest.approx(0.10)
    assert first["bf16-cl"]["vs_sj"] == pytest.approx(1.2)
    assert second == {"fp32": {"overhead": pytest.approx(0.05), "vs_sj": pytest.approx(1.1)}}


def test_a_saved_run_gives_the_ratios_train_step_stored(tmp_path):
    """The JSON of a real run: the ratios recomputed from its times equal those it stored."""
    path = RESULTS / "train-step-cpu.json"
    stored = json.loads(path.read_text())["processes"]
    processes = pool.train_step_processes(path)
    assert len(processes) == len(stored)
    for got, run in zip(processes, stored, strict=True):
        for row in run["rows"]:
            if row["model"] == "resnet18" and row["setup"] == "ilif":
                assert got[row["precision"]]["overhead"] == pytest.approx(row["overhead"])
                assert got[row["precision"]]["vs_sj"] == pytest.approx(row["vs_sj"])


def test_unreadable_results_are_refused_with_the_file_named(tmp_path):
    bad = tmp_path / "empty.log"
    bad.write_text("nothing here\n")
    with pytest.raises(ValueError, match="empty.log"):
        pool.train_step_processes(bad)
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "pool.py"), "train-step",
                           str(tmp_path / "missing.json")], capture_output=True, text=True)
    assert proc.returncode == 2 and "missing.json" in proc.stderr


def test_pooling_train_step_runs(tmp_path):
    """Per run the median of its processes; pooled, the median of all processes and how many
    meet each target (hand-computed from the log above and a second run)."""
    one, two = tmp_path / "a.log", tmp_path / "b.log"
    one.write_text(_LOG)
    two.write_text(_LOG.replace("1060.0", "1070.0"))  # process 1: fp32 +7 %
    result = pool.pool_train_step([one, two])
    fp32 = next(t for t in result["targets"] if t["precision"] == "fp32")
    assert fp32["n"] == 4
    assert list(fp32["per_run"].values()) == [pytest.approx(0.055), pytest.approx(0.06)]
    assert fp32["median"] == pytest.approx(statistics.median([0.06, 0.05, 0.07, 0.05]))
    assert fp32["meeting"] == 3 and fp32["runs_meeting"] == 2
    vs_sj = next(t for t in result["targets"] if t["key"] == "vs_sj")
    assert vs_sj["n"] == 2 and vs_sj["meeting"] == 2  # bf16 only in each run's process 1
    # four values: the interval is their range [5 %, 7 %], across the 6 % bound; both 1.2×
    assert pool.verdict(fp32) == "median meets it, interval straddles the bound"
    assert pool.verdict(vs_sj) == "met (interval clear of the bound)"
    missed = {**fp32, **pool._verdict([0.07, 0.08, 0.065], "<=", 0.06)}
    assert pool.verdict(missed) == "not met"
    assert "median meets it, interval straddles" in pool.markdown(result)


def test_pooling_neuron_rounds_groups_rounds_into_runs(tmp_path):
    """Rounds of one run (names differing in -round<k>) form one run: the median of three rounds
    is the target's figure; the real rounds of two runs give their stored ratios."""
    paths = sorted(RESULTS.glob("neurons-cpu-t6-41bf56d-round*.json")) + sorted(
        RESULTS.glob("neurons-cpu-t6-7be0778-round*.json"))
    assert len(paths) == 6
    result = pool.pool_neurons(paths)
    (target,) = result["targets"]
    assert [Path(r).name for r in result["runs"]] == ["neurons-cpu-t6-41bf56d",
                                                       "neurons-cpu-t6-7be0778"]
    ratios = []
    for p in paths:
        rows = json.loads(p.read_text())["sizes"][0]["results"]
        ratios.append(next(r["vs_sj_fwd_bwd"] for r in rows
                           if r["name"] == "ilif ILIF" and r["backend"] == "cpu"))
    assert list(target["per_run"].values()) == [statistics.median(ratios[:3]),
                                                statistics.median(ratios[3:])]
    assert target["median"] == statistics.median(ratios) and target["n"] == 6
    out = tmp_path / "pooled"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "pool.py"), "neurons",
                           *map(str, paths), "--out", str(out)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(out.with_suffix(".json").read_text())["targets"][0]["n"] == 6
    assert "Runs whose median meets the target" in out.with_suffix(".md").read_text()


# ------------------------------------------------------------------------- the benchmark
def test_train_step_benchmark_runs_and_reports_the_ratios(tmp_path):
    """A small run of benchmarks/train_step.py: every set-up timed in each process, the ratios
    taken per process against the limit and the SpikingJelly network, then their medians."""
    out = tmp_path / "step"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "train_step.py"), "--models", "cifar-small",
           "--precisions", "fp32,bf16-cl", "--setups", "ilif,sj-lif,identity", "--batch", "2",
           "--processes", "2", "--repeats", "2", "--warmup", "0", "--threads", "1",
           "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(out.with_suffix(".json").read_text())
    assert report["meta"]["processes"] == 2 and len(report["processes"]) == 2
    for run in report["processes"]:
        rows = {(r["precision"], r["setup"]): r for r in run["rows"]}
        assert len(rows) == 6
        for (precision, _setup), row in rows.items():
            assert len(row["ms_runs"]) == 2 and row["ms"] == statistics.median(row["ms_runs"])
            limit = rows[(precision, "identity")]["ms"]
            assert row["overhead"] == pytest.approx(row["ms"] / limit - 1)
            assert row["vs_sj"] == pytest.approx(rows[(precision, "sj-lif")]["ms"] / row["ms"])
        # the neurons save what the neuron-free network does not
        for precision in ("fp32", "bf16-cl"):
            assert (rows[(precision, "ilif")]["saved_bytes_per_image"]
                    > rows[(precision, "identity")]["saved_bytes_per_image"])
    for s in report["summary"]:
        per_process = [next(r for r in run["rows"]
                            if (r["precision"], r["setup"]) == (s["precision"], s["setup"]))
                       for run in report["processes"]]
        assert s["overhead"] == pytest.approx(statistics.median(r["overhead"]
                                                                for r in per_process))
    md = out.with_suffix(".md").read_text()
    assert "**cifar-small, T = 4**" in md and "SpikingJelly LIFNode" in md
    assert "Best process (labelled: not a median)" in md
    assert md.strip() in proc.stdout  # the table is printed too
    # and the pooling reads what it wrote
    pooled = pool.train_step_processes(out.with_suffix(".json"), model="cifar-small")
    assert len(pooled) == 2 and set(pooled[0]) == {"fp32", "bf16-cl"}
