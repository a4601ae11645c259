"""GradientMonitor against gradients of the neuron inputs computed directly by autograd."""

from __future__ import annotations

import gc
import math
import weakref

import pytest
import torch
from test_analysis_monitor import TimeFlatten

import ilif
from ilif.analysis.gradients import GradientMonitor


def two_layer_forward(lin1, lif1, lin2, lif2, x):
    """The network step by step, keeping the neuron inputs for a direct gradient read-out."""
    x1 = lin1(x)
    x1.retain_grad()
    x2 = lin2(lif1(x1))
    x2.retain_grad()
    return lif2(x2), x1, x2


@pytest.mark.parametrize("neuron", ["lif", "ilif"])
def test_gradient_norms_equal_direct_autograd(neuron: str) -> None:
    torch.manual_seed(0)
    make = lambda: ilif.create_neuron(neuron, surrogate="triangle", width=2.0)  # noqa: E731
    lin1, lif1 = TimeFlatten(torch.nn.Linear(6, 8)), make()
    lin2, lif2 = TimeFlatten(torch.nn.Linear(8, 3)), make()
    model = torch.nn.ModuleDict({"lin1": lin1, "lif1": lif1, "lin2": lin2, "lif2": lif2})
    squared = {name: torch.zeros(5, dtype=torch.float64) for name in ("lif1", "lif2")}
    abs_sum = {"lif1": 0.0, "lif2": 0.0}
    with GradientMonitor(model) as monitor:
        for _ in range(2):
            ilif.reset_net(model)
            x = torch.randn(5, 4, 6) * 2 + 0.5
            out, x1, x2 = two_layer_forward(lin1, lif1, lin2, lif2, x)
            (out * torch.arange(3.0)).sum().backward()
            for name, xi in (("lif1", x1), ("lif2", x2)):
                squared[name] += xi.grad.double().flatten(1).pow(2).sum(1)
                abs_sum[name] += float(xi.grad.double().abs().sum())
        summary = monitor.summary()
    for name in ("lif1", "lif2"):
        layer = summary["layers"][name]
        assert squared[name].sum() > 0
        assert layer["grad_norm"] == pytest.approx(math.sqrt(float(squared[name].sum()) / 2))
        assert layer["grad_norm_per_step"] == pytest.approx((squared[name] / 2).sqrt().tolist())
        elements = 2 * 5 * 4 * (8 if name == "lif1" else 3)
        assert layer["grad_mean_abs"] == pytest.approx(abs_sum[name] / elements)


def test_single_step_neurons_count_steps_from_reset() -> None:
    torch.manual_seed(0)
    lin = torch.nn.Linear(3, 4)
    lif = ilif.LIF(step_mode="s", surrogate="atan", width=1.0)
    model = torch.nn.Sequential(lin, lif)
    with GradientMonitor(model) as monitor:
        ilif.reset_net(model)
        x = torch.randn(3, 2, 3) * 2
        currents = []
        outs = []
        for t in range(3):
            current = lin(x[t])
            current.retain_grad()
            currents.append(current)
            outs.append(lif(current))
        torch.stack(outs).sum().backward()
        layer = monitor.summary()["layers"]["1"]
    direct = [float(c.grad.double().norm()) for c in currents]
    assert layer["grad_norm_per_step"] == pytest.approx(direct)
    assert layer["grad_norm"] == pytest.approx(math.sqrt(sum(d * d for d in direct)))


def test_gradient_monitor_off_or_no_grad_registers_nothing_and_keeps_nothing() -> None:
    lin, lif = TimeFlatten(torch.nn.Linear(3, 4)), ilif.ILIF()
    model = torch.nn.Sequential(lin, lif)
    monitor = GradientMonitor(model)
    monitor.enabled = False
    x = torch.randn(2, 2, 3)
    current = lin(x)
    lif(current)
    assert not current._backward_hooks
    monitor.enabled = True
    ilif.reset_net(model)
    with torch.no_grad():
        model(x)
    assert monitor.summary()["layers"]["1"]["grad_norm_per_step"] == []
    ilif.reset_net(model)
    out = model(x)
    out.sum().backward()
    ref = weakref.ref(out)
    del out
    ilif.reset_net(model)
    gc.collect()
    assert ref() is None
    assert monitor.summary()["layers"]["1"]["grad_norm"] >= 0
    monitor.close()
    assert not lif._forward_pre_hooks


def test_monitor_overhead_benchmark_writes_json(tmp_path):
    """benchmarks/monitors.py (the numbers behind the monitors' overhead) runs and reports."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    out = tmp_path / "monitors.json"
    proc = subprocess.run([sys.executable, str(root / "benchmarks" / "monitors.py"), "--repeats",
                           "1", "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(out.read_text())
    assert set(report["fwd_bwd_ms"]) == {"plain", "spikes", "grads"}
    assert report["ratio_to_plain"]["plain"] == 1.0 and min(report["fwd_bwd_ms"].values()) > 0
