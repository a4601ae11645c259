"""Two CPU processes (gloo) train together through torchrun; only rank 0 writes."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys


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
