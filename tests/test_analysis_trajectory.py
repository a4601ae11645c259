"""Step-0 baselines and per-step weight statistics against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch
from test_analysis_monitor import TimeFlatten
from torch import nn

import ilif
from ilif.analysis.trajectory import WeightSteps, spike_pass, step0_baseline


def bn_network() -> nn.Sequential:
    """Linear(2→2) of identity weights → BatchNorm1d → LIF(θ = 1, τ = 1.1)."""
    linear = nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        linear.weight.copy_(torch.eye(2))
    return nn.Sequential(TimeFlatten(nn.Sequential(linear, nn.BatchNorm1d(2))),
                         ilif.LIF(tau=1.1, backend="torch"))


def test_step0_baseline_uses_batch_statistics_and_leaves_the_model_untouched() -> None:
    """Sample 0 gets input 0.5 on both features, samples 1–3 get 0, constant over T = 3 steps.
    In training mode the batch norm uses the batch's mean 1/8 and (biased) variance 3/64, so
    sample 0 reads (3/8) / √(3/64) = √3 ≈ 1.73 ≥ θ = 1 at every step (it fires every step, soft
    reset leaves it above threshold) and the others −1/√3 (never fire): firing rate 1/4, and a
    quarter of the neurons fire at every step (overactive). In evaluation mode (running mean 0,
    variance 1) sample 0 reads 0.5, whose membrane settles at 0.5 / (1 − λ) = 0.55 < 1 with
    λ = 1 − 1/1.1: nothing fires."""
    model = bn_network()
    x = torch.zeros(3, 4, 2)
    x[:, 0] = 0.5
    batches = [(x.transpose(0, 1), torch.zeros(4))]  # (N, T, features): the model folds time

    class Seq(nn.Module):
        def __init__(self, inner: nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.inner(x.transpose(0, 1))

    net = Seq(model)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    rng = torch.get_rng_state()
    out = step0_baseline(net, batches, images=4)
    assert torch.equal(rng, torch.get_rng_state())
    for key, value in net.state_dict().items():  # running statistics untouched
        assert torch.equal(value, before[key]), key
    assert out["bn_train"]["images"] == 4
    assert out["bn_train"]["firing_rate"] == pytest.approx(0.25, abs=1e-6)
    assert out["bn_train"]["overactive_share"] == pytest.approx(0.25, abs=1e-6)
    assert out["bn_eval"]["firing_rate"] == 0.0
    # the first 2 images alone, training mode: mean 1/4, variance 1/16, sample 0 reads +1 and
    # sample 1 reads −1; 1 − ε (ε from the batch norm's eps) stays below θ at step 1, then
    # λ·v + x ≈ 1.09 fires at step 2 and, after the soft reset, λ·0.09 + 1 fires at step 3:
    # 2 of 3 steps for half of the samples
    two = spike_pass(net, batches, 2, train_mode=True)
    assert two["images"] == 2 and two["firing_rate"] == pytest.approx(1 / 3)


def test_weight_steps_share_of_nonzero_gradients_and_relative_update() -> None:
    layer = nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[3.0, 0.0], [0.0, 4.0]]))
    steps = WeightSteps(layer)
    layer.weight.grad = torch.tensor([[1.0, 0.0], [0.0, 0.0]])  # 1 of 4 non-zero
    steps.after_backward()
    with torch.no_grad():
        layer.weight.add_(torch.tensor([[0.0, 0.0], [0.0, 0.5]]))  # ‖ΔW‖ = 0.5, ‖W‖ = 5
    layer.weight.grad = torch.ones(2, 2)
    steps.after_backward()
    out = steps.epoch_summary()
    assert out["steps"] == 2
    assert out["weight_grad_nonzero_share"][""] == pytest.approx((0.25 + 1.0) / 2)
    assert out["weight_update_ratio"][""] == pytest.approx(0.5 / 5.0)
    empty = steps.epoch_summary()
    assert empty["steps"] == 0 and math.isnan(empty["weight_update_ratio"][""])


def test_sweep_with_trajectories_records_step0_and_epochs(tmp_path) -> None:
    import json

    from ilif.analysis.sweep import Grid, run_sweep
    from ilif.train import TrainConfig

    base = TrainConfig(dataset="digits", model="digits-small", T=2, quiet=True, device="cpu",
                       epochs=2, train_size=96, batch_size=32, limit_train_batches=2,
                       limit_eval_batches=1)
    grid = Grid(neurons=["lif"], surrogates=["rectangle"], widths=[1.0], seeds=[1])
    rows = run_sweep(base, grid, tmp_path, say=lambda line: None, trajectories=True)
    assert rows[0]["status"] == "done" and rows[0]["sgd_steps"] == 4
    cell = json.loads((tmp_path / "results.json").read_text())["cells"][0]
    # 10 % of the 1,437 digits are held out (144): fewer than 512, the baseline sees them all
    assert cell["step0"]["bn_train"]["images"] == 144
    assert 0 <= cell["step0_firing_rate"] <= 1
    assert [e["sgd_steps"] for e in cell["trajectory"]] == [2, 4]
    last = cell["trajectory"][-1]
    assert set(last["weight_grad_nonzero_share"]) == set(last["weight_update_ratio"])
    assert all(0 < v <= 1 for v in last["weight_grad_nonzero_share"].values())
    assert last["val_spikes"]["images"] == 144 and last["val_spikes"]["layer_firing_rate"]
    assert cell["loihi_snn_energy_pj"] > cell["snn_energy_pj"] > 0
