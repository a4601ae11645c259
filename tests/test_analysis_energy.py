"""Energy counts against FLOPs, SOPs and neuron operations computed by hand."""

from __future__ import annotations

import pytest
import torch
from test_analysis_monitor import TimeFlatten
from torch import nn

import ilif
from ilif.analysis.energy import EnergyConstants, EnergyMeter, measure_energy, neuron_ops

T, N = 4, 2


def known_rate_network() -> nn.Sequential:
    """Linear(4→4) with weights diag(2, 0, 2, 0) → LIF → Linear(4→3) of ones → LIF.

    With the real-valued input 1.5 everywhere, the first LIF gets currents (3, 0, 3, 0): neurons 0
    and 2 fire every step, rate 1/2; the second layer sees spikes at rate 1/2, gets current 2 on
    every neuron, and fires every step, rate 1.
    """
    first = nn.Linear(4, 4, bias=False)
    second = nn.Linear(4, 3, bias=False)
    with torch.no_grad():
        first.weight.copy_(torch.diag(torch.tensor([2.0, 0.0, 2.0, 0.0])))
        second.weight.fill_(1.0)
    return nn.Sequential(TimeFlatten(first), ilif.LIF(), TimeFlatten(second), ilif.LIF())


def test_counts_and_energy_equal_hand_computation() -> None:
    model = known_rate_network()
    result = measure_energy(model, [torch.full((T, N, 4), 1.5)])
    # hand counts per inference (one sample, T = 4 steps)
    flops1, flops2 = 4 * 4, 4 * 3  # MACs per step for a dense input
    macs1 = 1.0 * T * flops1  # real-valued encoding input, all non-zero: MACs every step
    sops2 = 0.5 * T * flops2  # spikes at rate 1/2 in: SOP = r · T · FLOPs
    lif1_mac, lif1_ac = 4 * T * 1, 4 * T * (1 + 0.5)  # λ·v + x; compare + reset per spike
    lif2_mac, lif2_ac = 3 * T * 1, 3 * T * (1 + 1.0)
    layers = {layer["name"]: layer for layer in result["layers"]}
    assert layers["0.layer"]["flops"] == flops1 and layers["2.layer"]["flops"] == flops2
    assert layers["0.layer"]["input"] == "real" and layers["0.layer"]["encoding"]
    assert layers["0.layer"]["macs"] == pytest.approx(macs1)
    assert layers["2.layer"]["input"] == "spikes"
    assert layers["2.layer"]["sops"] == pytest.approx(sops2)
    assert layers["2.layer"]["input_rate"] == pytest.approx(0.5)
    assert layers["1"]["firing_rate"] == 0.5 and layers["3"]["firing_rate"] == 1.0
    assert layers["1"]["macs"] == lif1_mac and layers["1"]["acs"] == lif1_ac
    assert layers["3"]["macs"] == lif2_mac and layers["3"]["acs"] == lif2_ac
    assert result["flops"] == flops1 + flops2 and result["sops"] == pytest.approx(sops2)
    assert result["ann_energy_pj"] == pytest.approx((flops1 + flops2) * 4.6)
    synaptic = macs1 * 4.6 + sops2 * 0.9
    neurons = (lif1_mac + lif2_mac) * 4.6 + (lif1_ac + lif2_ac) * 0.9
    assert result["synaptic_energy_pj"] == pytest.approx(synaptic)
    assert result["neuron_energy_pj"] == pytest.approx(neurons)
    assert result["snn_energy_pj"] == pytest.approx(synaptic + neurons)
    assert result["T"] == T and result["samples"] == N


def test_constants_encoding_once_and_state_memory() -> None:
    model = known_rate_network()
    constants = EnergyConstants(
        mac_pj=2.0, ac_pj=0.5, encoding_once=True, state_access_pj=3.0
    )
    result = measure_energy(model, [torch.full((T, N, 4), 1.5)], constants)
    layers = {layer["name"]: layer for layer in result["layers"]}
    assert layers["0.layer"]["macs"] == 16  # counted once, not T times
    assert layers["1"]["memory_pj"] == pytest.approx(2 * 1 * 4 * T * 3.0)  # read+write v
    assert result["ann_energy_pj"] == pytest.approx(28 * 2.0)
    assert result["synaptic_energy_pj"] == pytest.approx(16 * 2.0 + 0.5 * T * 12 * 0.5)


def test_conv_flops_partial_input_and_sparse_spikes() -> None:
    conv = nn.Conv2d(2, 6, 3, padding=1, groups=2, bias=True)
    model = nn.Sequential(TimeFlatten(conv), ilif.LIF())
    x = torch.zeros(T, N, 2, 5, 5)
    x[:, :, 0, :2] = 1.0  # binary: spikes at rate 10/50 = 0.2
    result = measure_energy(model, [x])
    layer = result["layers"][0]
    flops = 6 * 5 * 5 * (2 // 2) * 9  # out elements · C_in/groups · kernel
    assert layer["flops"] == flops and layer["input"] == "spikes"
    assert layer["sops"] == pytest.approx(0.2 * T * flops) and layer["macs"] == 0


def test_neuron_ops_follow_the_equations() -> None:
    lif = neuron_ops(ilif.LIF())
    assert (lif.dense_mac, lif.dense_ac, lif.spike_ac, lif.state_values) == (1, 1, 1, 1)
    assert neuron_ops(ilif.ILIF(mpiu=False, ciu=False)) == lif
    assert neuron_ops(ilif.PLIF()) == lif
    full = neuron_ops(ilif.ILIF())
    assert (full.dense_mac, full.dense_ac, full.spike_ac, full.spike_sigmoid) == (2, 3, 4, 1)
    assert full.state_values == 5
    assert neuron_ops(ilif.ILIF(mpiu_gain=0.5)).dense_mac == 3
    mpiu = neuron_ops(ilif.create_neuron("ilif-mpiu"))
    assert (mpiu.dense_mac, mpiu.dense_ac, mpiu.spike_ac, mpiu.spike_sigmoid) == (1, 1, 3, 1)
    ciu = neuron_ops(ilif.create_neuron("ilif-ciu"))
    assert (ciu.dense_mac, ciu.dense_ac, ciu.spike_ac, ciu.spike_sigmoid) == (2, 3, 2, 0)
    clif = neuron_ops(ilif.CLIF())
    assert (clif.dense_mac, clif.dense_sigmoid, clif.spike_ac, clif.spike_sigmoid) == (3, 1, 3, 1)
    alif = neuron_ops(ilif.ALIF())
    assert (alif.dense_mac, alif.spike_ac, alif.state_values) == (3, 2, 3)


def test_ilif_sigmoid_cost_is_configurable() -> None:
    model = nn.Sequential(TimeFlatten(nn.Linear(2, 2)), ilif.ILIF())
    x = torch.full((T, 1, 2), 3.0)
    with torch.no_grad():
        model[0].layer.weight.copy_(torch.eye(2))
        model[0].layer.bias.zero_()
    cheap = measure_energy(model, [x], EnergyConstants(sigmoid_macs=0.0))
    dear = measure_energy(model, [x], EnergyConstants(sigmoid_macs=10.0))
    rate = cheap["layers"][1]["firing_rate"]
    assert rate > 0
    extra = dear["neuron_energy_pj"] - cheap["neuron_energy_pj"]
    assert extra == pytest.approx(10.0 * 4.6 * rate * 2 * T)


def test_errors_name_the_problem() -> None:
    with pytest.raises(ValueError, match="mac_pj"):
        EnergyConstants(mac_pj=-1.0)
    with pytest.raises(ValueError, match="Conv"):
        EnergyMeter(ilif.LIF())
    with pytest.raises(RuntimeError, match="no forward pass"):
        EnergyMeter(nn.Linear(2, 2)).summary()


def test_meter_keeps_no_tensor_and_removes_its_hooks() -> None:
    import gc
    import weakref

    model = known_rate_network()
    meter = EnergyMeter(model)
    x = torch.full((T, N, 4), 1.5)
    out = model(x)
    ref = weakref.ref(out)
    del out
    gc.collect()
    assert ref() is None
    assert meter.summary()["samples"] == N
    meter.close()
    assert not any(m._forward_hooks for m in model.modules())
    assert not model._forward_pre_hooks


@pytest.mark.parametrize("name", ["cifar-small", "resnet18"])
def test_flops_of_the_project_models_equal_torch_flop_counter(name: str) -> None:
    """Peer oracle: torch's FlopCounterMode counts 2 FLOPs per multiply-accumulate."""
    from torch.utils.flop_counter import FlopCounterMode

    from ilif.models import create_model

    model = create_model(name, neuron="ilif", num_classes=10, in_channels=3, T=2, backend="torch")
    model.eval()
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    result = measure_energy(model, [x])
    assert result["T"] == 2 and result["samples"] == 1
    assert 2 * result["flops"] * 2 == counter.get_total_flops()
    spiking = [layer for layer in result["layers"] if layer.get("input") == "spikes"]
    assert spiking and all(0 <= layer["input_rate"] <= 1 for layer in spiking)
    assert result["layers"][0]["input"] == "real" and result["layers"][0]["encoding"]
