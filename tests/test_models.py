"""The spiking models: shapes, encoding of static and event input, resets, neuron settings."""

from __future__ import annotations

import pytest
import torch
from model_shapes import SHAPES

from ilif.models import create_model, list_models
from ilif.neurons import ILIF, LIF, NEURON_VARIANTS, Neuron


def neurons(model: torch.nn.Module) -> list[Neuron]:
    return [m for m in model.modules() if isinstance(m, Neuron)]


def test_list_models_names_every_model():
    assert set(list_models()) == set(SHAPES)


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_static_input_gives_one_readout_per_step(name):
    channels, size = SHAPES[name]
    model = create_model(name, neuron="lif", num_classes=7, in_channels=channels, T=3)
    out = model(torch.randn(2, channels, size, size))
    assert out.shape == (3, 2, 7)
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("neuron", sorted(NEURON_VARIANTS))
def test_every_neuron_kind_trains_in_a_model(neuron):
    model = create_model("digits-small", neuron=neuron, in_channels=1, T=2)
    out = model(torch.randn(4, 1, 8, 8))
    assert out.shape == (2, 4, 10)
    out.square().mean().backward()
    first_conv = model.features[0].conv_bn.module[0]
    assert first_conv.weight.grad.abs().sum() > 0
    kinds = {n.kind for n in neurons(model)}
    assert kinds == {NEURON_VARIANTS[neuron][0].kind}


def test_static_input_equals_the_same_frame_given_at_every_step():
    torch.manual_seed(0)
    model = create_model("digits-small", neuron="ilif", in_channels=1, T=4)
    x = torch.randn(3, 1, 8, 8)
    calibrate(model, x)
    repeated = x.unsqueeze(1).repeat(1, 4, 1, 1, 1)  # [N, T, C, H, W], as a DataLoader stacks
    torch.testing.assert_close(model(x), model(repeated), rtol=0, atol=0)


def calibrate(model: torch.nn.Module, x: torch.Tensor) -> torch.nn.Module:
    """Set every BN's running statistics to those of ``x`` (so eval mode produces spikes)."""
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = None  # cumulative average: one pass gives the batch's statistics
    model.train()
    with torch.no_grad():
        model(x)
    return model.eval()


def test_event_frames_keep_their_own_steps_and_are_causal():
    torch.manual_seed(0)
    model = create_model("digits-small", neuron="lif", in_channels=2, T=4, tau=2.0)
    frames = torch.rand(2, 6, 2, 8, 8) * 3  # [N, T'=6, C, H, W]
    calibrate(model, frames)
    out = model(frames)
    assert out.shape == (6, 2, 10)
    changed = frames.clone()
    changed[:, 3] = torch.rand(2, 2, 8, 8) * 3
    out2 = model(changed)
    # steps before the change are untouched, the changed step differs
    torch.testing.assert_close(out[:3], out2[:3], rtol=0, atol=0)
    assert not torch.equal(out[3], out2[3])


def test_samples_do_not_mix_in_eval_mode():
    torch.manual_seed(0)
    model = create_model("cifar-small", neuron="ilif", in_channels=3, T=3)
    x = torch.randn(4, 3, 32, 32)
    calibrate(model, x)
    together = model(x)
    assert not torch.allclose(together[:, 0], together[:, 1])  # the samples are told apart
    alone = torch.cat([model(x[i : i + 1]) for i in range(4)], dim=1)
    torch.testing.assert_close(together, alone, rtol=1e-5, atol=1e-5)


def test_model_resets_its_neurons_on_every_forward():
    torch.manual_seed(0)
    model = create_model("digits-small", neuron="ilif", in_channels=1, T=3)
    x = torch.randn(2, 1, 8, 8)
    calibrate(model, x)
    first = model(x)
    assert all(n.state is not None for n in neurons(model))
    torch.testing.assert_close(model(x), first, rtol=0, atol=0)
    model(torch.randn(5, 1, 8, 8))  # another batch size: the old state must not be reused


def test_neuron_settings_reach_every_neuron():
    model = create_model(
        "resnet18", neuron="ilif", in_channels=3, T=2, surrogate="triangle", width=0.5, tau=1.5,
        ciu_gain=0.1, backend="torch",
    )
    layers = neurons(model)
    # pre-activation ResNet-18: 2 neurons per block × 8 blocks + the head's
    assert len(layers) == 17
    for n in layers:
        assert isinstance(n, ILIF) and n.step_mode == "m" and n.backend == "torch"
        assert n.tau == 1.5 and n.ciu_gain == 0.1
        assert type(n.surrogate).__name__ == "Triangle" and n.surrogate.width == 0.5
    assert len({id(n.surrogate) for n in layers}) == len(layers)


def test_ablation_names_switch_the_units():
    mpiu = neurons(create_model("digits-small", neuron="ilif-mpiu", in_channels=1))
    ciu = neurons(create_model("digits-small", neuron="ilif-ciu", in_channels=1))
    assert all(n.mpiu and not n.ciu for n in mpiu)
    assert all(n.ciu and not n.mpiu for n in ciu)
    assert all(isinstance(n, LIF) for n in neurons(create_model("digits-small", neuron="lif",
                                                                 in_channels=1)))


def test_bad_names_and_arguments_are_named_in_the_error():
    with pytest.raises(ValueError, match="unknown model 'resnet50'.*resnet18.*digits-small"):
        create_model("resnet50")
    with pytest.raises(ValueError, match="unknown neuron 'glif'.*ilif-mpiu"):
        create_model("digits-small", neuron="glif", in_channels=1)
    with pytest.raises(ValueError, match="unknown surrogate 'erf'.*rectangle"):
        create_model("digits-small", surrogate="erf", in_channels=1)
    with pytest.raises(ValueError, match="'lif' does not accept the argument 'ciu_gain'.*tau"):
        create_model("digits-small", neuron="lif", in_channels=1, ciu_gain=0.1)
    with pytest.raises(ValueError, match="step_mode"):
        create_model("digits-small", in_channels=1, step_mode="s")
    with pytest.raises(ValueError, match="tau"):
        create_model("digits-small", in_channels=1, tau=0.5)
    with pytest.raises(ValueError, match="resnet18 .*no dropout|'resnet18' has no dropout"):
        create_model("resnet18", dropout=0.3)
    model = create_model("digits-small", in_channels=1, T=2)
    with pytest.raises(ValueError, match=r"images \[N, C, H, W\] or event frames"):
        model(torch.randn(8, 8))


def _conv_bn_params(channels: list[int], cin: int) -> int:
    """3×3 conv without bias + BN (weight, bias) for each layer of a plain convnet."""
    total = 0
    for cout in channels:
        total += 9 * cin * cout + 2 * cout
        cin = cout
    return total


def test_parameter_counts_match_the_architectures():
    def count(model):
        return sum(p.numel() for p in model.parameters())

    # Pre-activation ResNet-18 with conv biases: convs 3×3 (stem + 2 per block), 1×1 shortcuts
    # where the shape changes, BN before each neuron (2 per block + head), linear 512 → 10.
    convs = [(3, 64, 3)]
    bns = []
    cin = 64
    for cout in (64, 128, 256, 512):
        for i in range(2):
            convs += [(cin, cout, 3), (cout, cout, 3)]
            bns += [cin, cout]
            if i == 0 and cin != cout:
                convs.append((cin, cout, 1))
            cin = cout
    bns.append(512)
    expected = sum(k * k * a * b + b for a, b, k in convs) + sum(2 * c for c in bns) + 5130
    assert expected == 11_176_970
    assert count(create_model("resnet18", in_channels=3)) == expected

    # VGG-11-BN on 2-channel events: 8 conv+BN layers, 7×7 adaptive pool, linear 512·49 → 10.
    vgg = _conv_bn_params([64, 128, 256, 256, 512, 512, 512, 512], 2) + 512 * 49 * 10 + 10
    assert count(create_model("vgg11", in_channels=2)) == vgg


def test_dropout_is_shared_over_time_and_off_in_eval():
    torch.manual_seed(0)
    model = create_model("vgg11", in_channels=2, T=3, dropout=0.5)
    drops = [m for m in model.modules() if type(m).__name__ == "TemporalDropout"]
    assert len(drops) == 8 and all(d.p == 0.5 for d in drops)
    x = torch.ones(3, 4, 16, 5, 5)
    y = drops[0](x)
    assert set(y.unique().tolist()) <= {0.0, 2.0}
    torch.testing.assert_close(y[0], y[2])  # one mask for all steps
    drops[0].eval()
    assert torch.equal(drops[0](x), x)
