"""Pool separate runs of a benchmark against the targets: per run its median, over every
process (or round) of all runs the median, with a distribution-free 95 % interval for it.

    python benchmarks/pool.py train-step benchmarks/results/train-step-cpu-cea8666.json \\
        benchmarks/results/train-step-cpu-ea86c7f.log benchmarks/results/train-step-cpu.json
    python benchmarks/pool.py neurons benchmarks/results/neurons-cpu-t6-*-round*.json

``train-step`` reads the results of ``benchmarks/train_step.py``: its JSON, or its printed
output (``process i/n`` and ``[model precision] set-up  ms`` lines) where only that was kept. Per
process it takes ILIF's overhead over the neuron-free network and the SpikingJelly-network time
over ILIF's, as ``train_step.py`` does, for ResNet-18 T = 6. ``neurons`` reads the JSON of
``benchmarks/neurons.py`` (one round per file) and takes the fused ILIF's ``vs SJ`` (forward +
input gradient) at the first size; rounds whose file names differ only in ``-round<k>`` form one
run (the target is the median of three rounds), whose median is its figure.

The interval for the median is the order-statistic one, ``[x(k), x(n+1−k)]`` with the largest
``k`` whose coverage ``1 − 2·P(Binomial(n, ½) < k)`` is at least 95 % (it assumes the processes
independent draws of one distribution; with fewer than 6 processes no such ``k`` exists and the
range is given with its coverage). Results: ``--out`` (``.json`` and ``.md``).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import statistics
import sys
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"

# (name, precision, key, "<=" or ">=", bound): the targets of the ResNet-18 training step
TRAIN_STEP_TARGETS = (
    ("float32 overhead over the limit", "fp32", "overhead", "<=", 0.06),
    ("bf16 + channels_last overhead over the limit", "bf16-cl", "overhead", "<=", 0.15),
    ("bf16 + channels_last, SJ-network time / ILIF time", "bf16-cl", "vs_sj", ">=", 1.15),
)
NEURON_TARGET = ("fused ILIF vs SpikingJelly LIFNode, forward + input gradient", ">=", 3.0)

_SIGN = {"<=": "≤", ">=": "≥"}
_PROCESS = re.compile(r"^process (\d+)/(\d+)")
_ROW = re.compile(r"^\s*\[(\S+) (\S+)\]\s+(\S+)\s+([0-9.]+) ms")


def median_interval(values: list[float], level: float = 0.95) -> tuple[float, float, float]:
    """``(low, high, coverage)``: the order-statistic interval for the median of ``values``, the
    narrowest ``[x(k), x(n+1−k)]`` with coverage ≥ ``level``, else the full range."""
    xs = sorted(values)
    n = len(xs)
    if n == 0:
        raise ValueError("median_interval needs at least one value")
    best = (xs[0], xs[-1], 1 - 2 * 0.5 ** n)
    for k in range(1, n // 2 + 1):
        coverage = 1 - 2 * sum(math.comb(n, i) for i in range(k)) / 2 ** n
        if coverage < level:
            break
        best = (xs[k - 1], xs[n - k], coverage)
    return best


def _ratios(times: dict[str, float]) -> dict[str, float | None]:
    """ILIF's overhead over the limit and the SJ network's time over ILIF's, from set-up times."""
    ilif, limit, peer = times.get("ilif"), times.get("identity"), times.get("sj-lif")
    return {"overhead": ilif / limit - 1 if ilif and limit else None,
            "vs_sj": peer / ilif if ilif and peer else None}


def train_step_processes(path: Path, model: str = "resnet18") -> list[dict[str, Any]]:
    """Per process of one ``train_step.py`` run, ``{precision: {"overhead", "vs_sj"}}``."""
    text = path.read_text()
    processes: list[dict[str, dict[str, float]]] = []
    if path.suffix == ".json":
        for run in json.loads(text)["processes"]:
            times: dict[str, dict[str, float]] = {}
            for row in run["rows"]:
                if row["model"] == model:
                    times.setdefault(row["precision"], {})[row["setup"]] = row["ms"]
            processes.append(times)
    else:
        for line in text.splitlines():
            if _PROCESS.match(line):
                processes.append({})
            elif (m := _ROW.match(line)) and m.group(1) == model:
                if not processes:
                    raise ValueError(f"{path}: a timing line before any 'process i/n' line")
                processes[-1].setdefault(m.group(2), {})[m.group(3)] = float(m.group(4))
    if not processes:
        raise ValueError(f"{path}: no processes found (a train_step.py JSON or printed output?)")
    return [{p: _ratios(t) for p, t in times.items()} for times in processes]


def _meets(value: float, op: str, bound: float) -> bool:
    """Whether ``value`` meets ``op bound``; a value on the bound up to float rounding meets it
    (1060 / 1000 − 1 is 0.06000000000000005)."""
    tol = 1e-12 * max(1.0, abs(bound))
    return value <= bound + tol if op == "<=" else value >= bound - tol


def _verdict(values: list[float], op: str, bound: float) -> dict[str, Any]:
    low, high, coverage = median_interval(values)
    med = statistics.median(values)
    return {"median": med, "interval": [low, high], "coverage": coverage, "n": len(values),
            "meeting": sum(_meets(v, op, bound) for v in values),
            "median_meets": _meets(med, op, bound),
            "interval_meets": _meets(low, op, bound) and _meets(high, op, bound)}


def pool_train_step(paths: list[Path]) -> dict[str, Any]:
    runs = {str(p): train_step_processes(p) for p in paths}
    out = []
    for name, precision, key, op, bound in TRAIN_STEP_TARGETS:
        per_run = {}
        pooled = []
        for path, processes in runs.items():
            vals = [p[precision][key] for p in processes
                    if precision in p and p[precision][key] is not None]
            if vals:
                per_run[path] = statistics.median(vals)
                pooled += vals
        if pooled:
            out.append({"target": name, "precision": precision, "key": key, "op": op,
                        "bound": bound, "per_run": per_run,
                        "runs_meeting": sum(_meets(v, op, bound) for v in per_run.values()),
                        **_verdict(pooled, op, bound)})
    return {"kind": "train-step", "runs": list(runs), "targets": out}


def neuron_ratio(path: Path) -> float:
    """The fused ILIF's forward + input-gradient ratio to LIFNode in one ``neurons.py`` round."""
    data = json.loads(path.read_text())
    for row in data["sizes"][0]["results"]:
        if row["name"] == "ilif ILIF" and row["backend"] == "cpu":
            return float(row["vs_sj_fwd_bwd"])
    raise ValueError(f"{path}: no fused ('cpu') ILIF row in its first size")


def run_name(path: Path) -> str:
    """The run a ``neurons.py`` round belongs to: its path without ``-round<k>``."""
    return re.sub(r"-round\d+\.json$", "", str(path))


def pool_neurons(paths: list[Path]) -> dict[str, Any]:
    name, op, bound = NEURON_TARGET
    runs: dict[str, list[float]] = {}
    for path in paths:
        runs.setdefault(run_name(path), []).append(neuron_ratio(path))
    rounds = [v for vals in runs.values() for v in vals]
    return {"kind": "neurons", "runs": list(runs), "rounds": runs,
            "targets": [{"target": name, "key": "vs_sj_fwd_bwd", "op": op, "bound": bound,
                         "per_run": {r: statistics.median(v) for r, v in runs.items()},
                         "runs_meeting": sum(_meets(statistics.median(v), op, bound)
                                             for v in runs.values()),
                         **_verdict(rounds, op, bound)}]}


def _fmt(key: str, v: float) -> str:
    return f"{100 * v:+.1f} %" if key == "overhead" else f"{v:.3f}×"


def verdict(target: dict[str, Any]) -> str:
    """The reading of a pooled target: met with the whole interval clear of the bound, met by
    the median with the interval straddling the bound, or not met."""
    if target["interval_meets"]:
        return "met (interval clear of the bound)"
    if target["median_meets"]:
        return "median meets it, interval straddles the bound"
    return "not met"


def markdown(result: dict[str, Any]) -> str:
    unit = "rounds" if result["kind"] == "neurons" else "processes"
    lines = [f"| target | per run (median) | pooled median of the {unit} | 95 % interval "
             f"(coverage) | {unit} | {unit} meeting | verdict |",
             "|---|---|---:|---|---:|---:|---|"]
    for t in result["targets"]:
        k = t["key"]
        per_run = ", ".join(_fmt(k, v) for v in t["per_run"].values())
        low, high = t["interval"]
        target = f"{t['target']} {_SIGN[t['op']]} {_fmt(k, t['bound'])}"
        lines.append(
            f"| {target} | {per_run} | {_fmt(k, t['median'])} "
            f"| {_fmt(k, low)} to {_fmt(k, high)} ({100 * t['coverage']:.1f} %) | {t['n']} "
            f"| {t['meeting']} of {t['n']} | {verdict(t)} |")
    lines.append("")
    lines.append("Runs whose median meets the target: " + "; ".join(
        f"{t['target']}: {t['runs_meeting']} of {len(t['per_run'])}" for t in result["targets"])
        + ".")
    lines.append("Runs, in the order of 'per run': " + ", ".join(
        Path(r).name for r in result["runs"]) + ".")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("kind", choices=("train-step", "neurons"))
    p.add_argument("paths", nargs="+", type=Path, help="result files, one run (round) each")
    p.add_argument("--out", default=None,
                   help="path stem of the .json and .md results (default: "
                        "benchmarks/results/<kind>-pooled)")
    args = p.parse_args(argv)
    missing = [str(x) for x in args.paths if not x.is_file()]
    if missing:
        p.error(f"no such result file: {', '.join(missing)}")
    try:
        result = (pool_train_step if args.kind == "train-step" else pool_neurons)(args.paths)
    except (ValueError, KeyError, json.JSONDecodeError) as e:
        p.error(f"cannot read the results: {e}")
    md = markdown(result)
    print(md)
    out = Path(args.out) if args.out else RESULTS / f"{args.kind}-pooled"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=1))
    out.with_suffix(".md").write_text(md + "\n")
    print(f"wrote {out.with_suffix('.json')} and {out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
