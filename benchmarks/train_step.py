"""What the neuron costs in a whole training step: ilif against SpikingJelly and no neuron at all.

    python benchmarks/train_step.py                      # 3 processes, both models, both precisions
    python benchmarks/train_step.py --quick              # one process, one timed step per set-up
    python benchmarks/train_step.py --models resnet18 --precisions bf16-cl --repeats 3

A training step is forward + backward + SGD step (momentum 0.9) of a model from
``ilif.models.create_model`` on a random static batch (direct encoding), the loss the cross entropy
of the time-averaged readout. Models: ``resnet18`` (CIFAR stem, T = 6) and ``cifar-small``
(T = 4), batch 16 of 3×32×32. Precisions: ``fp32`` (float32, NCHW) and ``bf16-cl`` (bf16 autocast,
model and input channels_last). Set-ups, all built from one initialisation:

- ``ilif``: ILIF neurons, ``backend="auto"`` (the default: a fused kernel where one applies);
- ``ilif-torch``: the same with ``backend="torch"`` (the eager loop);
- ``sj-lif``: every neuron replaced (:func:`ilif.models.swap_neurons`) by SpikingJelly's multi-step
  ``LIFNode`` with ilif's LIF equations — ``decay_input=False``, ``v_reset=None`` (soft reset),
  the same τ, θ and detach_reset, the rectangle surrogate ``Rect(alpha=1/γ)``;
  it is a LIF, without ILIF's two inhibitory units;
- ``identity``: ``nn.Identity`` in every neuron's place: the limit, what the rest of the step costs.

Method: one process builds every set-up, runs ``--warmup`` untimed steps of each, then
``--repeats`` rounds in which each set-up runs one timed step (the order rotated every round), so
that a load change on a shared machine hits all set-ups alike; per set-up the median. The parent
runs ``--processes`` such processes one after another and reports, per figure, the median over
the processes (and the best process, labelled as such). Ratios are taken inside each process
and then their median: ``overhead`` = time / limit − 1, ``vs SJ`` = SJ-network time / time
(> 1: faster than the SpikingJelly network). ``saved B/image``: the bytes of every tensor that
autograd saves in one training forward (``torch.autograd.graph.saved_tensors_hooks``), each
storage counted once, parameters excluded, per image of the batch.

Results: ``benchmarks/results/train-step-cpu.json`` and ``.md`` (``--out`` changes the stem).
Discussion: docs/performance.md.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ilif.models import create_model, swap_neurons
from ilif.neurons import Neuron

MODELS = {"resnet18": 6, "cifar-small": 4}
PRECISIONS = ("fp32", "bf16-cl")
SETUPS = ("ilif", "ilif-torch", "sj-lif", "identity")
LIMIT, PEER = "identity", "sj-lif"
LABELS = {
    "ilif": "ilif ILIF, default backend",
    "ilif-torch": 'ilif ILIF, backend="torch"',
    "sj-lif": "SpikingJelly LIFNode",
    "identity": "no neurons (the limit)",
}
PRECISION_LABELS = {"fp32": "float32", "bf16-cl": "bf16 autocast + channels_last"}
RESULTS = Path(__file__).resolve().parent / "results"


# ------------------------------------------------------------------------------------ set-ups
def sj_lif(neuron: Neuron) -> nn.Module:
    """SpikingJelly's multi-step LIFNode with the replaced neuron's τ, θ, reset and surrogate."""
    from spikingjelly.activation_based import neuron as sj_neuron
    from spikingjelly.activation_based import surrogate

    width = float(getattr(neuron.surrogate, "width", 1.0))
    return sj_neuron.LIFNode(
        tau=float(neuron.tau), decay_input=False, v_threshold=float(neuron.v_threshold),
        v_reset=None, surrogate_function=surrogate.Rect(alpha=1.0 / width),
        detach_reset=neuron.detach_reset, step_mode="m",
    )


def build(model_name: str, T: int, setup: str, base: nn.Module) -> nn.Module:
    model = copy.deepcopy(base)
    if setup == "ilif-torch":
        for m in model.modules():
            if isinstance(m, Neuron):
                m.backend = "torch"
    elif setup == "sj-lif":
        swap_neurons(model, sj_lif)
    elif setup == "identity":
        swap_neurons(model, lambda _: nn.Identity())
    return model


class Step:
    """One set-up of one model and precision: the model, its optimiser and one training step."""

    def __init__(self, model: nn.Module, precision: str, x: torch.Tensor, y: torch.Tensor) -> None:
        self.channels_last = precision == "bf16-cl"
        self.model = model.to(memory_format=torch.channels_last) if self.channels_last else model
        self.x = x.to(memory_format=torch.channels_last) if self.channels_last else x
        self.y = y
        self.opt = torch.optim.SGD(self.model.parameters(), lr=0.01, momentum=0.9)
        self.model.train()

    def loss(self) -> torch.Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.channels_last):
            out = self.model(self.x)
            return F.cross_entropy(out.float().mean(0), self.y)

    def __call__(self) -> float:
        start = time.perf_counter()
        self.opt.zero_grad(set_to_none=True)
        self.loss().backward()
        self.opt.step()
        return time.perf_counter() - start

    def saved_bytes(self) -> int:
        """Bytes autograd saves in one forward, per storage, parameters excluded."""
        params = {p.untyped_storage().data_ptr() for p in self.model.parameters()}
        storages: dict[int, int] = {}

        def pack(t: torch.Tensor) -> torch.Tensor:
            st = t.untyped_storage()
            if st.data_ptr() not in params and st.nbytes() > 0:
                storages[st.data_ptr()] = st.nbytes()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            loss = self.loss()
        del loss
        return sum(storages.values())


# ------------------------------------------------------------------------------------ worker
def worker(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(args.threads)
    rows = []
    for model_name in args.models:
        T = MODELS[model_name]
        torch.manual_seed(args.seed)
        base = create_model(model_name, neuron="ilif", T=T, num_classes=10)
        x = torch.randn(args.batch, 3, 32, 32)
        y = torch.randint(0, 10, (args.batch,))
        for precision in args.precisions:
            steps = {s: Step(build(model_name, T, s, base), precision, x, y) for s in args.setups}
            saved = {s: step.saved_bytes() / args.batch for s, step in steps.items()}
            for step in steps.values():
                for _ in range(args.warmup):
                    step()
            times: dict[str, list[float]] = {s: [] for s in steps}
            order = list(steps)
            for r in range(args.repeats):
                for s in order[r % len(order):] + order[: r % len(order)]:
                    times[s].append(steps[s]() * 1e3)
            medians = {s: statistics.median(v) for s, v in times.items()}
            for s in steps:
                rows.append({
                    "model": model_name, "T": T, "batch": args.batch, "precision": precision,
                    "setup": s, "ms": medians[s], "ms_runs": times[s],
                    "saved_bytes_per_image": saved[s],
                    "overhead": medians[s] / medians[LIMIT] - 1 if LIMIT in medians else None,
                    "vs_sj": medians[PEER] / medians[s] if PEER in medians else None,
                })
                print(f"  [{model_name} {precision}] {s:<11} {medians[s]:9.1f} ms", flush=True)
            del steps
    return {"rows": rows}


# ------------------------------------------------------------------------------------ parent
def commit() -> str:
    try:
        root = Path(__file__).resolve().parent.parent
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root,
                              capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=root, capture_output=True, text=True).stdout.strip()
        return head + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def summarise(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (model, precision, set-up): medians over the processes, and the best process."""
    keyed: dict[tuple, list[dict[str, Any]]] = {}
    for run in runs:
        for row in run["rows"]:
            keyed.setdefault((row["model"], row["precision"], row["setup"]), []).append(row)
    out = []
    for (model_name, precision, setup), rows in keyed.items():
        def med(key: str, rows: list[dict[str, Any]] = rows) -> float | None:
            vals = [r[key] for r in rows if r[key] is not None]
            return statistics.median(vals) if vals else None

        best = min(rows, key=lambda r: r["ms"])
        out.append({
            "model": model_name, "T": rows[0]["T"], "batch": rows[0]["batch"],
            "precision": precision, "setup": setup, "processes": len(rows),
            "ms": med("ms"), "overhead": med("overhead"), "vs_sj": med("vs_sj"),
            "saved_bytes_per_image": med("saved_bytes_per_image"),
            "ms_per_process": [r["ms"] for r in rows],
            "best_process_ms": best["ms"], "best_process_overhead": best["overhead"],
            "best_process_vs_sj": best["vs_sj"],
        })
    return out


def pct(v: float | None) -> str:
    return "—" if v is None else f"{100 * v:+.0f} %"


def ratio(v: float | None) -> str:
    return "—" if v is None else f"{v:.2f}×"


def markdown(summary: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    lines = [
        f"Training step (forward + backward + SGD), batch {meta['batch']}, "
        f"{meta['threads']} threads, {meta['cpu']}, torch {meta['torch']}, "
        f"commit {meta['commit']}; "
        f"median of {meta['processes']} processes × {meta['repeats']} interleaved steps.",
        "",
    ]
    models = list(dict.fromkeys(r["model"] for r in summary))
    precisions = list(dict.fromkeys(r["precision"] for r in summary))
    for model_name in models:
        rows = [r for r in summary if r["model"] == model_name]
        T = rows[0]["T"]
        lines.append(f"**{model_name}, T = {T}** — ms per step (overhead over the limit; "
                     "SpikingJelly-network time / this time)")
        lines.append("")
        lines.append("| set-up | " + " | ".join(PRECISION_LABELS[p] for p in precisions)
                     + " | saved B/image (" + " / ".join(precisions) + ") |")
        lines.append("|---|" + "---:|" * len(precisions) + "---:|")
        setups = list(dict.fromkeys(r["setup"] for r in rows))
        for s in setups:
            cells, saved = [], []
            for p in precisions:
                r = next((r for r in rows if r["setup"] == s and r["precision"] == p), None)
                if r is None:
                    cells.append("—")
                    saved.append("—")
                    continue
                extra = [] if s == LIMIT else [pct(r["overhead"])]
                if s not in (PEER, LIMIT) and r["vs_sj"] is not None:
                    extra.append(f"{ratio(r['vs_sj'])} vs SJ")
                cells.append(f"{r['ms']:.0f} ms" + (f" ({', '.join(extra)})" if extra else ""))
                saved.append(f"{r['saved_bytes_per_image'] / 2**20:.1f} MiB")
            lines.append(f"| {LABELS.get(s, s)} | " + " | ".join(cells) + " | "
                         + " / ".join(saved) + " |")
        lines.append("")
        best = []
        for p in precisions:
            for s in setups:
                r = next((r for r in rows if r["setup"] == s and r["precision"] == p), None)
                if r is not None and s not in (LIMIT,):
                    best.append(f"{s} {p}: {pct(r['best_process_overhead'])}"
                                + (f", {ratio(r['best_process_vs_sj'])} vs SJ"
                                   if s != PEER and r["best_process_vs_sj"] else ""))
        lines.append("Best process (labelled: not a median): " + "; ".join(best) + ".")
        lines.append("")
    return "\n".join(lines)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default=",".join(MODELS),
                   help=f"comma-separated, from {', '.join(MODELS)}")
    p.add_argument("--precisions", default=",".join(PRECISIONS),
                   help=f"comma-separated, from {', '.join(PRECISIONS)}")
    p.add_argument("--setups", default=",".join(SETUPS),
                   help=f"comma-separated, from {', '.join(SETUPS)}")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--repeats", type=int, default=5, help="timed steps per set-up and process")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps per set-up first")
    p.add_argument("--processes", type=int, default=3, help="separate processes; medians over them")
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true",
                   help="a smoke run: 1 process, 1 warm-up and 1 timed step per set-up")
    p.add_argument("--out", default=str(RESULTS / "train-step-cpu"),
                   help="path stem of the .json and .md results")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    args.precisions = [m.strip() for m in args.precisions.split(",") if m.strip()]
    args.setups = [m.strip() for m in args.setups.split(",") if m.strip()]
    for label, given, valid in (("--models", args.models, MODELS),
                                ("--precisions", args.precisions, PRECISIONS),
                                ("--setups", args.setups, SETUPS)):
        bad = [g for g in given if g not in valid]
        if bad or not given:
            p.error(f"{label}: unknown or empty {bad}; valid: {', '.join(valid)}")
    for label in ("batch", "repeats", "processes", "threads"):
        if getattr(args, label) < 1:
            p.error(f"--{label} must be >= 1")
    if args.warmup < 0:
        p.error("--warmup must be >= 0")
    if args.quick:
        args.processes, args.repeats, args.warmup = 1, 1, 1
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.worker:
        Path(args.worker).write_text(json.dumps(worker(args)))
        return 0
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    passthrough = [
        "--models", ",".join(args.models), "--precisions", ",".join(args.precisions),
        "--setups", ",".join(args.setups), "--batch", str(args.batch),
        "--repeats", str(args.repeats), "--warmup", str(args.warmup),
        "--threads", str(args.threads), "--seed", str(args.seed),
    ]
    runs = []
    for i in range(args.processes):
        tmp = out.with_name(f".{out.name}.process{i}.json")
        print(f"process {i + 1}/{args.processes}", flush=True)
        env = dict(os.environ)
        src = str(Path(__file__).resolve().parent.parent / "src")
        env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
        subprocess.run([sys.executable, __file__, *passthrough, "--worker", str(tmp)],
                       check=True, env=env)
        runs.append(json.loads(tmp.read_text()))
        tmp.unlink()
    meta = {
        "commit": commit(), "torch": torch.__version__, "cpu": cpu_name(),
        "threads": args.threads, "batch": args.batch, "repeats": args.repeats,
        "warmup": args.warmup, "processes": args.processes,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    summary = summarise(runs)
    md = markdown(summary, meta)
    print()
    print(md)
    out.with_suffix(".json").write_text(json.dumps(
        {"meta": meta, "summary": summary, "processes": runs}, indent=1))
    out.with_suffix(".md").write_text(md + "\n")
    print(f"wrote {out.with_suffix('.json')} and {out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
