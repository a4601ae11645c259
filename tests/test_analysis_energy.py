"""Energy counts against FLOPs, SOPs and neuron operations computed by hand."""

from __future__ import annotations

import pytest
import torch
from test_analysis_monitor import TimeFlatten
from torch import nn

import ilif
from ilif.analysis.energy import (
    EnergyConstants,
    EnergyMeter,
    break_even,
    break_even_rate,
    energy_preset,
    measure_energy,
    neuron_ops,
)

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
    spiking = [layer for layer in result["layers"]
               if layer.get("input") in ("spikes", "pooled spikes")]
    assert spiking and all(0 <= layer["input_rate"] <= 1 for layer in spiking)
    assert result["layers"][0]["input"] == "real" and result["layers"][0]["encoding"]


# ------------------------------------------------------------------ spikes through pooling
def pooled_spikes() -> torch.Tensor:
    """[T=2, N=1, 1, 4, 4] spikes: step 1 three in the top-left 2×2 block; step 2 one in each of
    the top-left, top-right blocks and two in the bottom-right block (7 spikes)."""
    x = torch.zeros(2, 1, 1, 4, 4)
    for t, i, j in ((0, 0, 0), (0, 0, 1), (0, 1, 0), (1, 0, 0), (1, 0, 3), (1, 2, 2), (1, 3, 3)):
        x[t, 0, 0, i, j] = 1.0
    return x


def pool_conv() -> nn.Module:
    conv = nn.Conv2d(1, 3, 3, padding=1, bias=False)
    return TimeFlatten(nn.Sequential(nn.AvgPool2d(2), conv))


def test_layer_behind_average_pooling_is_spike_fed_both_implementations_counted() -> None:
    result = measure_energy(pool_conv(), [pooled_spikes()])
    (conv,) = [layer for layer in result["layers"] if layer["type"] == "Conv2d"]
    flops = 2 * 2 * 3 * 9  # output 3×2×2, fan-in 9, per step
    fan_out = flops / 4  # per pooled input (4 of them): 3 channels × 9 taps
    assert conv["flops"] == flops and conv["input"] == "pooled spikes"
    # event-driven: every spike entering the pool adds its weight into the conv: 7 · 27
    assert conv["sops_event_driven"] == pytest.approx(7 * fan_out)
    # the same as SPEC's r · k² · T · FLOPs with r = 7 / (2 · 16)
    assert conv["sops_event_driven"] == pytest.approx(7 / 32 * 4 * 2 * flops)
    # pool-first: 1 non-zero pooled value at step 1, 3 at step 2, each feeding 27 MACs
    assert conv["macs_pool_first"] == pytest.approx(4 * fan_out)
    # charged: the cheaper, 189 · 0.9 pJ < 108 · 4.6 pJ
    assert conv["implementation"] == "event-driven"
    assert conv["sops"] == pytest.approx(189) and conv["macs"] == 0
    assert result["sops"] == pytest.approx(189)
    assert result["synaptic_energy_pj"] == pytest.approx(189 * 0.9)
    # with cheap MACs pool-first wins; a chip without graded inputs has only event-driven
    cheap = measure_energy(pool_conv(), [pooled_spikes()], EnergyConstants(mac_pj=1.0))
    assert cheap["sops"] == 0 and cheap["synaptic_macs"] == pytest.approx(108)
    assert cheap["synaptic_energy_pj"] == pytest.approx(108.0)
    loihi = measure_energy(pool_conv(), [pooled_spikes()],
                           energy_preset("loihi", mac_pj=0.001))
    assert loihi["sops"] == pytest.approx(189)
    assert loihi["synaptic_energy_pj"] == pytest.approx(189 * 23.6)


def test_overlapping_and_chained_pools_count_every_window_a_spike_enters() -> None:
    """A 3×3 map, 2×2 windows at stride 1: the centre is in all 4 windows, a corner in 1."""
    def model() -> nn.Module:
        linear = nn.Linear(4, 2, bias=False)  # 2 outputs per pooled value
        return TimeFlatten(nn.Sequential(nn.AvgPool2d(2, stride=1), nn.Dropout(0.5),
                                         nn.Flatten(), linear))

    centre = torch.zeros(1, 1, 1, 3, 3)
    centre[..., 1, 1] = 1.0
    corner = torch.zeros(1, 1, 1, 3, 3)
    corner[..., 0, 0] = 1.0
    assert measure_energy(model(), [centre])["sops_event_driven"] == pytest.approx(4 * 2)
    assert measure_energy(model(), [corner])["sops_event_driven"] == pytest.approx(1 * 2)
    # pool → adaptive pool to 1×1 → linear(1 → 5): each of the 7 spikes feeds 5 outputs
    chained = TimeFlatten(nn.Sequential(nn.AvgPool2d(2), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                        nn.Linear(1, 5, bias=False)))
    result = measure_energy(chained, [pooled_spikes()])
    assert result["layers"][0]["input"] == "pooled spikes"
    assert result["sops_event_driven"] == pytest.approx(7 * 5)
    assert result["pool_first_macs"] == pytest.approx(2 * 5)  # one non-zero value per step


def test_a_real_valued_input_through_a_pool_stays_real() -> None:
    x = torch.full((2, 1, 1, 4, 4), 0.5)
    result = measure_energy(pool_conv(), [x])
    assert result["layers"][0]["input"] == "real" and result["sops"] == 0


def test_cifar_small_has_synaptic_operations_and_a_fan_out() -> None:
    from ilif.models import create_model

    torch.manual_seed(0)
    model = create_model("cifar-small", neuron="lif", num_classes=10, in_channels=3, T=2,
                         backend="torch")
    result = measure_energy(model, [torch.rand(2, 3, 32, 32) * 4])
    kinds = [layer["input"] for layer in result["layers"] if "flops" in layer]
    assert kinds == ["real", "pooled spikes", "pooled spikes", "pooled spikes"]
    # the first pooled layer: each spike of the first neuron layer feeds 3×3 taps × 64 channels
    first = result["layers"][2]
    assert first["sops_event_driven"] == pytest.approx(
        result["layers"][1]["spikes"] * 9 * 64, rel=1e-9)
    assert result["sops"] > 0 and result["sops_event_driven"] >= result["sops"]
    assert result["synaptic_fan_out"] > 0 and result["spikes"] > 0


def test_loihi_preset_charges_neuron_updates_per_state_value_and_spikes() -> None:
    model = known_rate_network()
    result = measure_energy(model, [torch.full((T, N, 4), 1.5)], energy_preset("loihi"))
    # LIF: 1 state value; layer 1 rate 1/2 (4 neurons), layer 2 rate 1 (3 neurons), T steps
    neurons = 4 * T * (52 + 0.5 * (81 - 52)) + 3 * T * 81.0
    spikes = 4 * T * 0.5 + 3 * T * 1.0
    assert result["neuron_energy_pj"] == pytest.approx(neurons)
    assert result["spike_energy_pj"] == pytest.approx(spikes * 1.7)
    assert result["preset"] == "loihi" and result["spikes"] == pytest.approx(spikes)
    ilif_ops = neuron_ops(ilif.ILIF())
    step = energy_preset("loihi").neuron_step_pj(ilif_ops, 0.0)
    assert step == pytest.approx(5 * 52.0)  # ILIF keeps 5 state values
    with pytest.raises(ValueError, match="valid presets: 45nm, loihi"):
        energy_preset("truenorth")


def test_break_even_rate_against_hand_values() -> None:
    # 2 pJ more per neuron-step, a spike feeds 50 accumulates of 0.9 pJ: 2 / 45
    assert break_even_rate(2.0, 50.0, 0.9) == pytest.approx(2.0 / 45.0)
    with pytest.raises(ValueError, match="fan_out"):
        break_even_rate(1.0, 0.0, 0.9)
    base = {"neuron_steps": 100.0, "neuron_energy_pj": 560.0, "synaptic_fan_out": 40.0,
            "spikes": 20.0, "constants": {"ac_pj": 0.9}}
    other = {"neuron_steps": 100.0, "neuron_energy_pj": 1460.0, "synaptic_fan_out": 40.0,
             "spikes": 15.0, "constants": {"ac_pj": 0.9}}
    out = break_even(base, other)
    assert out["extra_pj_per_neuron_step"] == pytest.approx(9.0)
    assert out["break_even_rate"] == pytest.approx(9.0 / 36.0)
    assert out["rate_reduction"] == pytest.approx(0.05)


def test_structural_fan_out_counts_every_neuron_once() -> None:
    """known_rate_network with every neuron firing: the 4 first-layer neurons feed 3 outputs
    each (12 SOPs per step), the 3 output neurons feed no synaptic layer: 12 / 7 per spike."""
    from ilif.analysis.energy import structural_fan_out

    assert structural_fan_out(known_rate_network(), torch.zeros(T, N, 4)) == pytest.approx(12 / 7)
