"""SpikeMonitor against spikes and gradient-open steps counted directly, on every backend."""

from __future__ import annotations

import gc
import math
import weakref

import pytest
import torch
from torch import nn

import ilif
from ilif.analysis.monitor import SpikeMonitor
from ilif.neurons.base import Neuron
from ilif.surrogate import get_surrogate


class TimeFlatten(nn.Module):
    """Apply a per-step layer to a sequence [T, N, *] by folding T into the batch."""

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.layer(x.flatten(0, 1))
        return y.reshape(x.shape[0], x.shape[1], *y.shape[1:])


def small_snn(neuron: str = "ilif", width: float = 1.0, backend: str = "torch", **kw) -> nn.Module:
    """conv(1→4) → neuron → linear(4·6·6→10) → neuron, multi-step."""
    torch.manual_seed(0)
    make = lambda: ilif.create_neuron(  # noqa: E731
        neuron, tau=2.0, surrogate="rectangle", width=width, backend=backend, **kw
    )
    return nn.Sequential(
        TimeFlatten(nn.Conv2d(1, 4, 3)), make(),
        TimeFlatten(nn.Flatten()), TimeFlatten(nn.Linear(4 * 6 * 6, 10)), make(),
    )


def backends() -> list[tuple[str, str]]:
    """Every (backend, device) that runs here for ILIF (the eager 'torch' on CPU always does)."""
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    found = []
    for device in devices:
        for backend in ("torch", "auto", "cpu", "triton"):
            try:
                ilif.ILIF(backend=backend)(torch.zeros(2, 3, device=device))
            except (RuntimeError, ValueError, ImportError):  # no kernel for it here
                continue
            found.append((backend, device))
    return found


FUSED = [pair for pair in backends() if pair[0] != "torch"]


def direct_counts(neuron: Neuron, x_seq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Spikes and open mask [T, *] from the eager reference step by step (independent of stats)."""
    state = neuron.initial_state(x_seq[0])
    spikes, opened = [], []
    for x in x_seq:
        s, state, h = type(neuron).step_fn(x, state, neuron.params(), neuron.surrogate)
        spikes.append(s)
        opened.append(h.abs() < neuron.surrogate.width / 2)
    return torch.stack(spikes), torch.stack(opened)


@pytest.mark.parametrize(("backend", "device"), backends())
@pytest.mark.parametrize("surrogate", ["rectangle", "sigmoid"])
def test_monitor_counts_equal_direct_counts(backend: str, device: str, surrogate: str) -> None:
    torch.manual_seed(1)
    neuron = ilif.ILIF(tau=2.0, surrogate=get_surrogate(surrogate, 0.5), backend=backend)
    x = (torch.randn(6, 3, 5, 7) * 1.5 + 0.4).to(device)
    x[:, :, 0, 0] = -5.0  # one neuron per sample never fires: dead
    spikes, opened = direct_counts(neuron, x)
    neuron.eval()  # dead and overactive neurons are counted on evaluation passes
    with SpikeMonitor(neuron) as monitor:
        out = neuron(x)
        summary = monitor.summary()
    assert torch.equal(out, spikes)
    layer = summary["layers"]["ILIF"]
    steps = spikes[0].numel() * 6
    assert layer["firing_rate"] == pytest.approx(float(spikes.sum()) / steps, rel=1e-12)
    assert layer["open_rate"] == pytest.approx(float(opened.sum()) / steps, rel=1e-12)
    per_step = spikes.double().flatten(1).mean(1).tolist()
    assert layer["firing_rate_per_step"] == pytest.approx(per_step, rel=1e-12)
    counts = spikes.sum(0)  # [3, 5, 7]
    dead = float((counts.sum(0) == 0).float().mean())
    assert layer["dead_share"] == pytest.approx(dead) and dead > 0
    overactive = float((counts > 3).flatten(1).float().mean(1).mean())
    assert layer["overactive_share"] == pytest.approx(overactive)
    surrogate_fn = get_surrogate(surrogate, 0.5)
    h_ref = neuron.multi_step_torch(x, neuron.initial_state(x[0]), keep_h=True)[2]
    reference = float(surrogate_fn.derivative(h_ref.double()).mean())
    assert layer["surrogate_mean"] == pytest.approx(reference, rel=1e-5)
    assert summary["firing_rate"] == pytest.approx(layer["firing_rate"])
    assert layer["neurons"] == 5 * 7 and layer["neuron_steps"] == 6 * 3 * 5 * 7


@pytest.mark.skipif(not FUSED, reason="no fused kernel runs on this machine")
@pytest.mark.parametrize(("backend", "device"), FUSED)
def test_monitors_keep_the_fused_kernel(backend: str, device: str, monkeypatch) -> None:
    """Spike, gradient and energy monitors together never send a neuron down the eager loop."""
    from ilif.analysis.energy import EnergyMeter
    from ilif.analysis.gradients import GradientMonitor

    def eager(*args, **kwargs):
        raise AssertionError("the monitored neuron fell back to the eager loop")

    monkeypatch.setattr(Neuron, "multi_step_torch", eager)
    model = small_snn("ilif", backend=backend).to(device)
    x = torch.rand(4, 2, 1, 8, 8, device=device) * 3
    with SpikeMonitor(model) as spikes, GradientMonitor(model) as grads, EnergyMeter(model):
        out = model(x)
        out.sum().backward()
        assert spikes.summary()["firing_rate"] > 0
        assert grads.summary()["layers"]["1"]["grad_norm"] >= 0


def test_monitor_network_rates_weighted_by_neuron_steps_and_reset() -> None:
    model = small_snn("lif")
    x = torch.rand(4, 2, 1, 8, 8) * 3
    spikes: dict[str, torch.Tensor] = {}
    for name in ("1", "4"):
        model.get_submodule(name).register_forward_hook(
            lambda m, i, o, name=name: spikes.__setitem__(name, o.detach())
        )
    with SpikeMonitor(model) as monitor:
        ilif.reset_net(model)
        model(x)
        summary = monitor.summary()
        total = sum(float(s.sum()) for s in spikes.values())
        elements = sum(s.numel() for s in spikes.values())
        assert summary["firing_rate"] == pytest.approx(total / elements)
        assert set(summary["layers"]) == {"1", "4"}
        monitor.reset()
        assert monitor.summary()["firing_rate"] == 0.0


def test_monitor_off_costs_nothing_and_holds_no_tensors(monkeypatch) -> None:
    model = small_snn("ilif")
    calls = []
    original = Neuron._report
    monkeypatch.setattr(Neuron, "_report", lambda self, *a: calls.append(1) or original(self, *a))
    monitor = SpikeMonitor(model)
    monitor.enabled = False
    assert all(n.stats_callback is None for n in model.modules() if isinstance(n, Neuron))
    model(torch.rand(3, 2, 1, 8, 8))
    assert calls == [] and monitor.summary()["firing_rate"] == 0.0
    monitor.enabled = True
    ilif.reset_net(model)
    out = model(torch.rand(3, 2, 1, 8, 8) * 4)
    assert len(calls) == 2
    monitor.summary()
    ref = weakref.ref(out)
    del out
    ilif.reset_net(model)
    gc.collect()
    assert ref() is None, "the monitor keeps the model output alive"
    monitor.close()
    assert all(n.stats_callback is None for n in model.modules() if isinstance(n, Neuron))
    gone = weakref.ref(monitor)
    del monitor
    gc.collect()
    assert gone() is None, "the model keeps the closed monitor alive"


def test_per_neuron_flags_on_evaluation_passes_only_by_default() -> None:
    neuron = ilif.LIF()
    x = torch.full((4, 2, 3), 2.0)
    with SpikeMonitor(neuron) as default, SpikeMonitor(neuron, track_neurons=True) as always:
        neuron(x)  # training mode
        assert math.isnan(default.summary()["dead_share"])
        assert always.summary()["overactive_share"] == 1.0
        neuron.eval()
        neuron.reset()
        neuron(x)
        assert default.summary()["dead_share"] == 0.0
        assert default.summary()["overactive_share"] == 1.0


def test_monitor_chains_an_existing_callback_and_rejects_models_without_neurons() -> None:
    neuron = ilif.LIF()
    seen = []
    neuron.stats_callback = lambda n, stats, s: seen.append(float(stats.spikes.sum()))
    with SpikeMonitor(neuron) as monitor:
        neuron(torch.full((3, 4), 2.0))
        assert monitor.summary()["firing_rate"] == 1.0
    assert seen == [12.0] and neuron.stats_callback is not None
    with pytest.raises(ValueError, match="no ilif neuron"):
        SpikeMonitor(nn.Linear(2, 2))


def test_two_monitors_on_one_model_both_count_whichever_closes_first() -> None:
    neuron = ilif.LIF()
    first, second = SpikeMonitor(neuron), SpikeMonitor(neuron)
    neuron(torch.full((2, 3), 2.0))
    assert first.summary()["layers"]["LIF"]["neuron_steps"] == 6
    assert second.summary()["layers"]["LIF"]["neuron_steps"] == 6
    first.close()
    neuron(torch.full((2, 3), 2.0))
    assert first.summary()["layers"]["LIF"]["neuron_steps"] == 6
    assert second.summary()["layers"]["LIF"]["neuron_steps"] == 12
    second.close()
    assert neuron.stats_callback is None
    neuron(torch.full((2, 3), 2.0))
    assert second.summary()["layers"]["LIF"]["neuron_steps"] == 12
