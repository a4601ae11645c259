"""What bfloat16 autocast changes in trained networks: firing rate, gradient-open rate, accuracy.

    python benchmarks/bf16_shift.py runs/pilot-sweep/cells/*/checkpoint_best.pt
    python benchmarks/bf16_shift.py CKPT ... --split val --out shift.json

Every checkpoint is evaluated twice on the same split, in float32 and under CPU bfloat16
autocast (the fused kernels then read and write bfloat16, float32 inside): the paired
difference bf16 − float32 of the firing rate, the open rate (|H − θ| < γ/2) and the accuracy,
per checkpoint and as a mean with its 95 % confidence interval over the checkpoints
(:func:`ilif.study.stats.paired_test`). bf16 rounds currents near θ = 1 to steps of 1/128 and
Θ(0) = 1 turns a tie into a spike, so the firing rate may move up. Printed as a table and
written as JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from ilif.monitors import SpikeMonitor
from ilif.study.stats import paired_test
from ilif.train.checkpoint import load_checkpoint
from ilif.train.data import build_data, eval_loader
from ilif.train.distributed import DistContext
from ilif.train.loop import evaluate

QUANTITIES = ("firing_rate", "open_rate", "accuracy")


def evaluate_both(path: Path, split: str, batch_size: int) -> dict:
    """The checkpoint's firing rate, open rate and accuracy in float32 and under bf16."""
    model, config, state = load_checkpoint(path)
    config = config.replace(T=state["model_args"]["T"])
    run_data = build_data(config)
    part = {"test": run_data.test, "val": run_data.val}[split]
    if part is None:
        raise SystemExit(f"{path}: this run has no {split} split")
    loader = eval_loader(part, batch_size, 0, DistContext(), False)
    row = {"checkpoint": str(path), "neuron": config.neuron, "width": config.width,
           "model": config.model, "dataset": config.dataset, "images": len(part)}
    for label, amp in (("float32", None), ("bfloat16", torch.bfloat16)):
        with SpikeMonitor(model) as monitor:
            result = evaluate(model, loader, amp=amp, monitor=monitor)
        row[label] = {q: float(result[q]) for q in QUANTITIES}
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("checkpoints", nargs="+", type=Path, help="checkpoint_*.pt files")
    parser.add_argument("--split", choices=("test", "val"), default="test")
    parser.add_argument("--batch-size", type=int, default=200)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/bf16-shift.json"))
    args = parser.parse_args(argv)
    missing = [str(p) for p in args.checkpoints if not p.is_file()]
    if missing:
        parser.error(f"no such checkpoint: {', '.join(missing)}")
    rows = []
    for k, path in enumerate(args.checkpoints, 1):
        print(f"[{k}/{len(args.checkpoints)}] {path}", file=sys.stderr, flush=True)
        rows.append(evaluate_both(path, args.split, args.batch_size))
    print(f"\n| checkpoint | neuron | γ | {' | '.join(f'Δ {q}' for q in QUANTITIES)} |")
    print("|---|---|---|" + "---:|" * len(QUANTITIES))
    for row in rows:
        deltas = [row["bfloat16"][q] - row["float32"][q] for q in QUANTITIES]
        name = Path(row["checkpoint"]).parent.name
        print(f"| {name} | {row['neuron']} | {row['width']:g} | "
              + " | ".join(f"{d:+.5f}" for d in deltas) + " |")
    summary = {}
    for q in QUANTITIES:
        test = paired_test([r["bfloat16"][q] for r in rows], [r["float32"][q] for r in rows])
        summary[q] = {"mean_delta": test.mean, "ci95": [test.ci_low, test.ci_high],
                      "n": test.n, "float32_mean": sum(r["float32"][q] for r in rows) / len(rows)}
        print(f"{q}: mean Δ (bf16 − float32) {test.mean:+.5f}, 95 % CI "
              f"[{test.ci_low:+.5f}, {test.ci_high:+.5f}], n = {test.n} checkpoints "
              f"(float32 mean {summary[q]['float32_mean']:.4f})")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"split": args.split, "summary": summary, "runs": rows},
                                   indent=1) + "\n")
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
