"""Where a training step's time goes: torch.profiler over ResNet-18 (T = 6, batch 16) steps.

    python benchmarks/train_step_profile.py                 # ilif default, fp32 and bf16-cl
    python benchmarks/train_step_profile.py --setup sj-lif --steps 2

The step, the set-ups and the precisions are those of ``benchmarks/train_step.py``. After
``--warmup`` steps, ``--steps`` steps run under ``torch.profiler``; every operator's self CPU
time is put in one category (convolution, batch norm, the neuron's forward and backward — the
autograd function with what it calls itself, or the eager loop's element-wise operators —,
layout and other copies, allocations, the residual additions, the optimiser, the loss and
readout, the rest) and reported per step, with the 25 operators of largest self time.
``--copies`` also lists every copy of more than 1 ms with the operator or model line that made
it (``with_stack``; slower). Results:
``benchmarks/results/train-step-profile-cpu.json`` and ``.md``. Discussion: docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_step import (  # noqa: E402
    MODELS,
    PRECISION_LABELS,
    PRECISIONS,
    RESULTS,
    SETUPS,
    Step,
    build,
    commit,
)

from ilif.models import create_model  # noqa: E402
from ilif.neurons import Neuron  # noqa: E402

# (category, name fragments), first match wins; names are torch.profiler event names
CATEGORIES = (
    ("neuron: its own code (kernel, python) outside torch ops",
     ("neuron forward", "_EagerFused", "fused_cpu", "LIFNode", "multistep")),
    ("convolution", ("convolution", "conv2d", "mkldnn_conv")),
    ("batch norm", ("batch_norm", "BatchNorm")),
    ("layout and other copies", ("copy_", "clone", "contiguous", "to_copy", "_to_dense")),
    ("allocation and zero-fill", ("empty", "zeros", "zero_", "fill_", "resize_")),
    ("optimiser", ("Optimizer", "sgd", "_foreach")),
    ("loss and readout", ("cross_entropy", "log_softmax", "nll_loss", "mean", "linear",
                          "addmm", "adaptive_avg_pool", "avg_pool")),
    ("element-wise (neuron eager loop, residual adds, autocast casts)",
     ("add", "mul", "sub", "div", "where", "clamp", "sigmoid", "maximum", "ge", "gt", "lt",
      "abs", "neg", "relu", "threshold", "heaviside", "stack", "unbind", "select", "_to_copy")),
)


def category(name: str) -> str:
    low = name.lower()
    for label, frags in CATEGORIES:
        if any(f.lower() in low for f in frags):
            return label
    return "other (views, autograd engine, python)"


def mark_forward(module: torch.nn.Module) -> None:
    """Open a profiler range "neuron forward" around every call of ``module``."""
    ranges: list = []

    def enter(*_):
        ranges.append(torch.profiler.record_function("neuron forward"))
        ranges[-1].__enter__()

    def leave(*_):
        ranges.pop().__exit__(None, None, None)

    module.register_forward_pre_hook(enter)
    module.register_forward_hook(leave)


def run(setup: str, precision: str, args: argparse.Namespace) -> dict:
    T = MODELS["resnet18"]
    torch.manual_seed(0)
    base = create_model("resnet18", neuron="ilif", T=T, num_classes=10)
    x = torch.randn(args.batch, 3, 32, 32)
    y = torch.randint(0, 10, (args.batch,))
    step = Step(build("resnet18", T, setup, base), precision, x, y)
    for m in step.model.modules():
        if isinstance(m, Neuron) or "LIFNode" in type(m).__name__:
            mark_forward(m)
    for _ in range(args.warmup):
        step()
    with profile(activities=[ProfilerActivity.CPU], record_shapes=args.copies,
                 with_stack=args.copies) as prof:
        wall = sum(step() for _ in range(args.steps)) / args.steps
    copies = copy_sources(prof) if args.copies else []
    events = prof.key_averages()
    per_cat: dict[str, float] = defaultdict(float)
    ops = []
    for e in events:
        self_ms = e.self_cpu_time_total / 1e3 / args.steps
        per_cat[category(e.key)] += self_ms
        ops.append({"op": e.key, "self_ms": self_ms, "calls": e.count / args.steps,
                    "category": category(e.key)})
    ops.sort(key=lambda o: -o["self_ms"])
    per_cat["not in any profiled range (python between ops)"] = max(
        0.0, wall * 1e3 - sum(per_cat.values()))
    return {"setup": setup, "precision": precision, "wall_ms": wall * 1e3,
            "categories": dict(sorted(per_cat.items(), key=lambda kv: -kv[1])),
            "top_ops": ops[:25], "copies": copies}


COPY_OPS = ("aten::copy_", "aten::clone", "aten::contiguous", "aten::_to_copy", "aten::cat")


def copy_sources(prof) -> list[dict]:
    """Every outermost copy over 1 ms: its shape, time and the nearest named caller."""
    out = []
    for e in prof.events():
        parent = e.cpu_parent
        if e.name not in COPY_OPS or e.cpu_time_total < 1000:
            continue
        if parent is not None and parent.name in COPY_OPS + ("aten::to",):
            continue
        chain = []
        while parent is not None and len(chain) < 3:
            chain.append(parent.name)
            parent = parent.cpu_parent
        frames = [f for f in (e.stack or []) if "ilif" in f or "train_step" in f][:1]
        out.append({"op": e.name, "ms": e.cpu_time_total / 1e3,
                    "shape": list(e.input_shapes[0]) if e.input_shapes else [],
                    "called_from": frames[0] if frames else " < ".join(chain)})
    return out


def markdown(results: list[dict], meta: dict) -> str:
    lines = [f"ResNet-18, T = 6, batch {meta['batch']}, {meta['threads']} threads, "
             f"commit {meta['commit']}; per step, mean of {meta['steps']} profiled steps "
             "(the profiler adds its own cost to every operator).", ""]
    for r in results:
        lines += [f"**{r['setup']}, {PRECISION_LABELS[r['precision']]}**: "
                  f"{r['wall_ms']:.0f} ms per profiled step", "",
                  "| category | self CPU ms per step |", "|---|---:|"]
        lines += [f"| {k} | {v:.1f} |" for k, v in r["categories"].items()]
        lines += ["", "| operator | self ms | calls | category |", "|---|---:|---:|---|"]
        lines += [f"| `{o['op']}` | {o['self_ms']:.1f} | {o['calls']:.0f} | {o['category']} |"
                  for o in r["top_ops"][:15]]
        if r["copies"]:
            lines += ["", "| copy | shape | ms | from |", "|---|---|---:|---|"]
            lines += [f"| `{c['op']}` | {c['shape']} | {c['ms']:.1f} | {c['called_from']} |"
                      for c in r["copies"]]
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--setups", default="ilif", help=f"comma-separated, from {', '.join(SETUPS)}")
    p.add_argument("--precisions", default=",".join(PRECISIONS))
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--copies", action="store_true", help="list the copies and their callers")
    p.add_argument("--out", default=str(RESULTS / "train-step-profile-cpu"))
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    setups = [s for s in args.setups.split(",") if s]
    precisions = [s for s in args.precisions.split(",") if s]
    for label, given, valid in (("--setups", setups, SETUPS),
                                ("--precisions", precisions, PRECISIONS)):
        bad = [g for g in given if g not in valid]
        if bad or not given:
            p.error(f"{label}: unknown or empty {bad}; valid: {', '.join(valid)}")
    results = []
    for s in setups:
        for prec in precisions:
            print(f"profiling {s} {prec}", flush=True)
            results.append(run(s, prec, args))
    meta = {"commit": commit(), "batch": args.batch, "steps": args.steps,
            "threads": args.threads, "torch": torch.__version__}
    md = markdown(results, meta)
    print(md)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"meta": meta, "results": results}, indent=1))
    out.with_suffix(".md").write_text(md + "\n")
    print(f"wrote {out.with_suffix('.json')} and {out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
