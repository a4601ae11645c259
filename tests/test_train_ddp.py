"""Two CPU processes (gloo) train together through torchrun; only rank 0 writes."""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_share_the_batches_and_count_every_test_sample_once(tmp_path):
    out = tmp_path / "run"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
        f"--master_port={free_port()}", "-m", "ilif", "train", "--dataset", "digits",
        "--model", "digits-small", "--T", "2", "--epochs", "1", "--batch-size", "16",
        "--limit-train-batches", "3", "--quiet", "--out", str(out),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("epoch 1/1") == 1  # only rank 0 reports
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 1
    row = rows[0]
    assert row["train_samples"] == 2 * 3 * 16  # 2 processes × 3 batches × 16
    assert row["test_samples"] == 360 and row["val_samples"] == 144  # all, none twice
    summary = json.loads((out / "summary.json").read_text())
    assert summary["world_size"] == 2
    assert {p.name for p in out.iterdir()} >= {"checkpoint_last.pt", "config.yaml"}


KILLED_TRAIN = Path(__file__).with_name("killed_train.py")  # `ilif train` killed after N steps


def run_ilif(args: list[str], processes: int, expect_exit: int | None = 0, kill_after: int = 0
             ) -> subprocess.CompletedProcess:
    """``ilif train ARGS`` on ``processes`` CPU processes (torchrun, gloo) or one plain process,
    ended abruptly after ``kill_after`` optimiser steps when given; ``expect_exit``: the exit
    status (None: any)."""
    launcher = (["-m", "torch.distributed.run", f"--nproc_per_node={processes}",
                 f"--master_port={free_port()}"] if processes > 1 else [])
    program = ([str(KILLED_TRAIN), str(kill_after)] if kill_after
               else ["-m", "ilif", "train"])
    command = [sys.executable, *launcher, *program, *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    if expect_exit is not None:
        assert done.returncode == expect_exit, done.stdout + done.stderr
    return done


DIGITS = ["--dataset", "digits", "--model", "digits-small", "--T", "2", "--batch-size", "8",
          "--val-split", "0", "--quiet", "--backend", "torch"]


@pytest.mark.slow
def test_two_processes_with_bf16_autocast_and_a_compiled_model(tmp_path):
    out = tmp_path / "run"
    done = run_ilif([*DIGITS, "--epochs", "1", "--limit-train-batches", "2", "--amp",
                     "--limit-eval-batches", "2", "--compile", "--compile-backend", "aot_eager",
                     "--out", str(out)], 2)
    # rank-aware logs: each process reports its shard (⌈1437 / 2⌉) under its rank; the run once
    assert "[rank 0/2] 719 training samples per epoch" in done.stdout
    assert "[rank 1/2] 719 training samples per epoch" in done.stdout
    assert done.stdout.count("epoch 1/1") == 1
    assert "autocast bfloat16" in done.stdout and "compiled (aot_eager)" in done.stdout
    row = json.loads((out / "metrics.jsonl").read_text())
    assert row["train_samples"] == 2 * 2 * 8 and row["test_samples"] == 2 * 2 * 8
    assert math.isfinite(row["train_loss"])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["config"]["amp"] is True


@pytest.mark.slow
def test_a_checkpoint_changes_world_size_at_an_epoch_boundary(tmp_path):
    """Epoch 1 on 2 processes, epoch 2 on 1, epoch 3 on 2 (each launch ends, killed, early in
    the next epoch): global_batch 16 is kept (8 × 2 processes, or 8 × 2 accumulated batches),
    and with it the schedule, the steps per epoch and the samples of each step
    (test_train_scaling.py checks those); only the losses depend on the world size."""
    out = tmp_path / "run"
    common = [*DIGITS, "--global-batch", "16", "--limit-train-batches", "3", "--epochs", "3",
              "--out", str(out)]
    resume = ["--resume", str(out / "checkpoint_last.pt")]
    # killed at the first step of epoch 2 (3 steps in epoch 1)
    run_ilif(common, 2, expect_exit=None, kill_after=4)
    assert torch.load(out / "checkpoint_last.pt", weights_only=True)["epoch"] == 1
    # one process accumulates 2 batches per step (3 steps in epoch 2), killed at the 4th step
    done = run_ilif([*common, *resume], 1, expect_exit=86, kill_after=4)
    assert "processes changed from 2 to 1" in done.stdout
    assert "global batch kept at 16 = 8 × 1 processes × 2 accumulated" in done.stdout
    done = run_ilif([*common, *resume], 2)
    assert "processes changed from 1 to 2" in done.stdout
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    for e, row in enumerate(rows):  # cosine over 3 epochs from 0.1
        assert row["lr"] == pytest.approx(0.05 * (1 + math.cos(math.pi * e / 3)))
        assert row["train_samples"] == 3 * 16  # 3 steps of the global batch
        assert row["test_samples"] == 360  # every test sample once, on 1 or 2 processes
    state = torch.load(out / "checkpoint_last.pt", weights_only=True)
    assert state["world_size"] == 2 and state["global_batch"] == 16 and state["epoch"] == 3
