"""A neuron registered in a user's own file works, with no edit in ilif, in create_model,
measure_energy, the monitors, and `ilif train` / `ilif sweep` / `ilif eval` (--import), including
loading its checkpoint."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from ilif.analysis import measure_energy
from ilif.analysis.sweep import make_grid
from ilif.models import create_model
from ilif.monitors import GradientMonitor, SpikeMonitor
from ilif.neurons import create_neuron, import_modules, neuron_names, registry
from ilif.train import TrainConfig

MODULE = "ilif_plugin_hardlif"
PLUGIN = '''
"""A LIF with a hard reset to 0, as a user would write it."""
from typing import NamedTuple

import torch

import ilif
from ilif.neurons import Neuron, NeuronOps


class State(NamedTuple):
    v: torch.Tensor


class Params(NamedTuple):
    decay: float
    v_threshold: float


def hard_reset_step(x, state, p, spike_fn):
    """H = λ·v + x ; S = Θ(H − θ) ; v = H·(1 − S)"""
    h_mem = p.decay * state.v + x
    h = h_mem - p.v_threshold
    s = spike_fn(h)
    return s, State(h_mem * (1.0 - s)), h


@ilif.register_neuron("hardlif-low", v_threshold=0.5)
@ilif.register_neuron("hardlif")
class HardResetLIF(Neuron):
    state_type = State
    step_fn = hard_reset_step
    operations = NeuronOps(dense_mac=1, dense_ac=1, spike_mac=1, state_values=1)

    def params(self):
        return Params(self.decay, self.v_threshold)
'''
TINY = ["--dataset", "digits", "--model", "digits-small", "--T", "2", "--epochs", "1",
        "--batch-size", "32", "--train-size", "64", "--limit-train-batches", "2",
        "--limit-eval-batches", "1", "--quiet"]


@pytest.fixture
def plugin(tmp_path):
    """The plug-in file, imported; the registry and sys.modules are restored afterwards."""
    path = tmp_path / f"{MODULE}.py"
    path.write_text(textwrap.dedent(PLUGIN))
    saved = dict(registry._REGISTRY)
    import_modules([str(path)])
    yield path
    registry._REGISTRY.clear()
    registry._REGISTRY.update(saved)
    sys.modules.pop(MODULE, None)


def hard_reset_reference(x: torch.Tensor, tau: float, theta: float) -> torch.Tensor:
    lam, v, out = 1 - 1 / tau, torch.zeros_like(x[0]), []
    for t in range(x.shape[0]):
        h = lam * v + x[t]
        s = (h >= theta).to(x.dtype)
        v = h * (1 - s)
        out.append(s)
    return torch.stack(out)


def test_a_registered_plugin_neuron_works_in_the_library(plugin) -> None:
    assert {"hardlif", "hardlif-low"} <= set(neuron_names())
    assert "hardlif" in neuron_names(variants=False) and "hardlif-low" not in neuron_names(False)
    neuron = create_neuron("hardlif-low", tau=2.0)
    assert neuron.kind == "hardlif" and neuron.v_threshold == 0.5  # the variant's preset
    # the eager loop runs its equations (it has no fused form), on every backend="auto" call
    x = torch.randn(5, 3, 40, dtype=torch.float64) + 0.3
    assert torch.equal(neuron.double()(x), hard_reset_reference(x, 2.0, 0.5))

    model = create_model("digits-small", neuron="hardlif", in_channels=1, T=3)
    data = torch.rand(8, 1, 8, 8)
    with SpikeMonitor(model) as spikes, GradientMonitor(model) as grads:
        model(data).sum().backward()
        summary, gradients = spikes.summary(), grads.summary()
    assert len(summary["layers"]) == 2 and 0 < summary["firing_rate"] < 1
    assert all(layer["grad_norm"] > 0 for layer in gradients["layers"].values())

    energy = measure_energy(model, [data])
    layers = [layer for layer in energy["layers"] if layer["type"] == "hardlif"]
    assert len(layers) == 2
    for layer in layers:  # the class's counts: 1 MAC per neuron-step plus 1 per spike
        steps = layer["neurons"] * energy["T"]
        assert layer["macs"] == pytest.approx(steps * (1 + layer["firing_rate"]), rel=1e-12)
    grid = make_grid(TrainConfig(), "neurons")
    assert "hardlif" in grid.neurons and "hardlif-low" not in grid.neurons


def test_a_neuron_without_operation_counts_names_the_fix(plugin) -> None:
    cls = registry.neuron_class("hardlif")
    bare = type("Bare", (cls,), {"operations": None})
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), bare(step_mode="s"))
    with pytest.raises(ValueError, match="operations = NeuronOps"):
        measure_energy(model, [torch.rand(2, 4)])


def ilif(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    src = str(Path(__file__).resolve().parents[1] / "src")
    env["PYTHONPATH"] = os.pathsep.join([src, env.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "-m", "ilif", *args], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=600)


def test_the_cli_trains_sweeps_and_evaluates_a_plugin_neuron(tmp_path) -> None:
    (tmp_path / f"{MODULE}.py").write_text(textwrap.dedent(PLUGIN))
    run = tmp_path / "run"
    # by module name (the working directory is searched)
    done = ilif("train", "--import", MODULE, "--neuron", "hardlif", *TINY, "--out", str(run),
                cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    config = json.loads((run / "summary.json").read_text())["config"]
    assert config["neuron"] == "hardlif"

    checkpoint = run / "checkpoint_last.pt"
    missing = ilif("eval", str(checkpoint), "--limit-eval-batches", "1", "--quiet", cwd=tmp_path)
    assert missing.returncode == 2
    assert "unknown neuron 'hardlif'" in missing.stderr and "--import" in missing.stderr

    # by file path, from another folder
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = tmp_path / "eval.json"
    evaluated = ilif("eval", str(checkpoint), "--import", str(tmp_path / f"{MODULE}.py"),
                     "--limit-eval-batches", "1", "--quiet", "--out", str(out), cwd=elsewhere)
    assert evaluated.returncode == 0, evaluated.stderr
    result = json.loads(out.read_text())
    assert result["neuron"] == "hardlif" and 0 < result["firing_rate"] < 1

    sweep = ilif("sweep", "--import", MODULE, "--neurons", "hardlif", *TINY,
                 "--out", str(tmp_path / "sweep"), "--no-report", cwd=tmp_path)
    assert sweep.returncode == 0, sweep.stdout + sweep.stderr
    rows = json.loads((tmp_path / "sweep" / "results.json").read_text())["cells"]
    assert [row["neuron"] for row in rows] == ["hardlif"]
    assert rows[0]["status"] == "done" and rows[0]["neuron_energy_pj"] > 0
