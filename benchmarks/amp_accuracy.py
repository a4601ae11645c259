"""Does bfloat16 autocast cost accuracy? One config trained with and without ``--amp``, paired.

    python benchmarks/amp_accuracy.py                       # configs/cifar10-cpu.yaml, seeds 1,2,3
    python benchmarks/amp_accuracy.py --seeds 1,2,3,4 --jobs 2 --threads 1

Each seed trains twice from the same initial weights and data order (``ilif train --seed S``), once
in float32 (``--no-amp``) and once under autocast (``--amp``: bfloat16 on the CPU). The endpoint,
fixed before the runs: the final epoch's accuracy on the whole test split
(``final_test_accuracy`` of ``summary.json``); the paired difference amp − float32 is reported as
a mean with its 95 % confidence interval (:func:`ilif.study.stats.paired_test`). The accuracy at
the best validation epoch and the final firing rate are reported beside it. Finished runs are
skipped and interrupted ones resume from ``checkpoint_last.pt``, so the script can run in pieces.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ilif.study.stats import paired_test

ARMS = {"float32": "--no-amp", "amp": "--amp"}
QUANTITIES = ("final_test_accuracy", "test_accuracy_at_best", "test_firing_rate")


def run_dir(root: Path, arm: str, seed: int) -> Path:
    return root / f"{arm}-s{seed}"


def train_command(args: argparse.Namespace, arm: str, seed: int) -> list[str]:
    """The ``ilif train`` call of one run (resuming where a checkpoint was left)."""
    out = run_dir(args.root, arm, seed)
    last = out / "checkpoint_last.pt"
    command = [sys.executable, "-m", "ilif", "train", "--config", str(args.config),
               "--seed", str(seed), "--out", str(out), "--data-root", str(args.data_root),
               ARMS[arm]]
    if last.is_file():
        command += ["--resume", str(last)]
    return command


def run_one(args: argparse.Namespace, arm: str, seed: int) -> float:
    """Train one run to completion (its output goes to ``train.log`` beside it); seconds taken."""
    out = run_dir(args.root, arm, seed)
    out.mkdir(parents=True, exist_ok=True)
    environment = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    begun = time.perf_counter()
    with open(out / "train.log", "a") as log:
        done = subprocess.run(train_command(args, arm, seed), stdout=log,
                              stderr=subprocess.STDOUT, env=environment)
    if done.returncode != 0:
        raise SystemExit(f"{arm} seed {seed} failed (exit {done.returncode}); see {out}/train.log")
    return time.perf_counter() - begun


def summarise(args: argparse.Namespace) -> dict:
    """Paired differences amp − float32 over the seeds whose two runs have finished."""
    runs = {}
    for seed in args.seeds:
        files = {arm: run_dir(args.root, arm, seed) / "summary.json" for arm in ARMS}
        if all(f.is_file() for f in files.values()):
            runs[seed] = {arm: json.loads(f.read_text()) for arm, f in files.items()}
    if not runs:
        raise SystemExit(f"no seed has both runs finished under {args.root}")
    seeds = sorted(runs)
    print(f"\n{args.config}, {len(seeds)} paired seeds ({', '.join(map(str, seeds))})\n")
    print("| seed | " + " | ".join(f"{q} float32 | amp" for q in QUANTITIES) + " |")
    print("|---:|" + "---:|---:|" * len(QUANTITIES))
    for seed in seeds:
        cells = [f"{runs[seed][arm][q]:.4f}" for q in QUANTITIES for arm in ARMS]
        print(f"| {seed} | " + " | ".join(cells) + " |")
    summary = {}
    for q in QUANTITIES:
        amp = [runs[s]["amp"][q] for s in seeds]
        fp32 = [runs[s]["float32"][q] for s in seeds]
        test = paired_test(amp, fp32)
        summary[q] = {"mean_delta": test.mean, "ci95": [test.ci_low, test.ci_high],
                      "sd_delta": test.sd, "p": test.p, "n": test.n,
                      "float32_mean": sum(fp32) / len(fp32), "amp_mean": sum(amp) / len(amp)}
        print(f"{q}: mean Δ (amp − float32) {test.mean:+.4f}, 95 % CI "
              f"[{test.ci_low:+.4f}, {test.ci_high:+.4f}], n = {test.n} seeds "
              f"(float32 {summary[q]['float32_mean']:.4f}, amp {summary[q]['amp_mean']:.4f})")
    wall = {arm: sum(runs[s][arm]["wall_time_s"] for s in seeds) / len(seeds) for arm in ARMS}
    print("mean wall time per run: " + ", ".join(f"{a} {w / 60:.1f} min" for a, w in wall.items()))
    return {"config": str(args.config), "seeds": seeds, "summary": summary,
            "mean_wall_time_s": wall,
            "runs": {str(s): {arm: {q: runs[s][arm][q] for q in QUANTITIES + ("wall_time_s",)}
                              for arm in ARMS} for s in seeds}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", type=Path, default=Path("configs/cifar10-cpu.yaml"))
    parser.add_argument("--data-root", type=Path, default=Path("../shared/data"),
                        help="the dataset folder (default ../shared/data)")
    parser.add_argument("--seeds", default="1,2,3", help="comma-separated seeds (default 1,2,3)")
    parser.add_argument("--root", type=Path, default=Path("runs/amp-accuracy"),
                        help="where the runs go (default runs/amp-accuracy)")
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time (default 1)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads per run (default 2)")
    parser.add_argument("--summarise-only", action="store_true",
                        help="train nothing: summarise the finished runs")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/amp-accuracy.json"))
    args = parser.parse_args(argv)
    try:
        args.seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        parser.error(f"--seeds must be comma-separated integers, got {args.seeds!r}")
    if not args.config.is_file():
        parser.error(f"--config: no such file {args.config}")
    if args.jobs < 1 or args.threads < 1:
        parser.error("--jobs and --threads must be at least 1")
    if not args.summarise_only:
        todo = [(arm, seed) for seed in args.seeds for arm in ARMS
                if not (run_dir(args.root, arm, seed) / "summary.json").is_file()]
        print(f"{len(todo)} runs to train ({args.jobs} at a time, {args.threads} threads each)",
              file=sys.stderr, flush=True)

        def train(job: tuple[str, int]) -> None:
            arm, seed = job
            print(f"{arm} seed {seed}: started, log {run_dir(args.root, arm, seed)}/train.log",
                  file=sys.stderr, flush=True)
            taken = run_one(args, arm, seed)
            print(f"{arm} seed {seed}: done in {taken / 60:.1f} min", file=sys.stderr, flush=True)

        with ThreadPoolExecutor(args.jobs) as pool:
            list(pool.map(train, todo))
    result = summarise(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
