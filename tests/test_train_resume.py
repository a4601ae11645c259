"""A run killed mid-epoch and resumed ends exactly where an uninterrupted run ends."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

KILLED_TRAIN = Path(__file__).with_name("killed_train.py")  # `ilif train` killed after N batches

ARGS = ["train", "--dataset", "digits", "--model", "digits-small", "--neuron", "ilif", "--T", "2",
        "--epochs", "3", "--batch-size", "16", "--limit-train-batches", "4",
        "--limit-eval-batches", "2", "--quiet"]
TIMES = ("epoch_time_s", "wall_time_s")


def ilif(*args: str, kill_after: int = 0) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = ([str(KILLED_TRAIN), str(kill_after), *args[1:]] if kill_after
               else ["-m", "ilif", *args])
    return subprocess.run([sys.executable, *command], capture_output=True, text=True, env=env,
                          timeout=300)


def metrics(run: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in row.items() if k not in TIMES} for row in rows]


def test_resume_after_a_kill_mid_epoch_reproduces_the_uninterrupted_run(tmp_path):
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    done = ilif(*ARGS, "--out", str(whole))
    assert done.returncode == 0, done.stderr

    # killed abruptly in the middle of epoch 2 (after 6 of its 4 + 4 + 4 batches)
    killed = ilif(*ARGS, "--out", str(broken), kill_after=6)
    assert killed.returncode == 86, killed.stderr
    state = torch.load(broken / "checkpoint_last.pt", weights_only=True)
    assert state["epoch"] == 1 and not (broken / "summary.json").exists()
    assert [row["epoch"] for row in metrics(broken)] == [1]

    resumed = ilif("train", "--resume", str(broken / "checkpoint_last.pt"), "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming" in resumed.stdout and "1 of 3 epochs done" in resumed.stdout

    a = torch.load(whole / "checkpoint_last.pt", weights_only=True)
    b = torch.load(broken / "checkpoint_last.pt", weights_only=True)
    assert a["model"].keys() == b["model"].keys()
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    assert metrics(whole) == metrics(broken)
    assert len(metrics(broken)) == 3
    summary = json.loads((broken / "summary.json").read_text())
    assert summary["epochs"] == 3

    # raising --epochs on resume continues with a rebuilt schedule
    more = ilif("train", "--resume", str(broken / "checkpoint_last.pt"), "--epochs", "4", "--quiet")
    assert more.returncode == 0, more.stderr
    assert "schedule is rebuilt for 4 epochs" in more.stdout
    rows = metrics(broken)
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4]
    assert rows[3]["lr"] == 0.1 * 0.5 * (1 + __import__("math").cos(__import__("math").pi * 3 / 4))
