"""The network around the neurons: the neuron contract every model keeps, swapping neurons,
channels_last end to end, and the stem run once on static input."""

from __future__ import annotations

import copy

import pytest
import torch
from model_shapes import SHAPES
from torch import nn

from ilif.models import create_model, list_models, swap_neurons
from ilif.models.layers import TimeDistributed, fold_time, repeated_batch_norm
from ilif.neurons import ILIF, LIF, Neuron


def tiny(name: str, **kw) -> tuple[nn.Module, torch.Tensor]:
    channels, size = SHAPES[name]
    torch.manual_seed(0)
    model = create_model(name, in_channels=channels, **kw)
    return model, torch.randn(2, channels, size, size)


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).detach().norm() / b.detach().norm().clamp_min(1e-30))


def grads(params) -> torch.Tensor:
    """All gradients as one vector (a bias before a BN has a zero gradient, only rounding)."""
    return torch.cat([p.grad.reshape(-1) for p in params])


class Recorder(nn.Module):
    """Stands in for a neuron: records the input shape, returns a fixed function of it."""

    def __init__(self, log: list) -> None:
        super().__init__()
        self.log = log

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.log.append(tuple(x.shape))
        return torch.tanh(x)


def test_every_registered_model_is_covered():
    assert set(list_models()) == set(SHAPES)


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_every_spiking_layer_is_a_neuron_on_sequences_with_bn_outside(name):
    model, x = tiny(name, neuron="lif", T=3)
    seen: list[tuple] = []

    def check(module, args, out):
        (inp,) = args
        seen.append(tuple(inp.shape))
        assert inp.dim() >= 2 and inp.shape[0] == 3 and inp.shape[1] == 2, inp.shape
        assert out.shape == inp.shape
        assert set(torch.unique(out).tolist()) <= {0.0, 1.0}

    neurons = [m for m in model.modules() if isinstance(m, Neuron)]
    assert neurons
    for n in neurons:
        n.register_forward_hook(check)
        # BN (and every other layer with parameters) stays outside the neuron
        assert not any(isinstance(c, nn.modules.batchnorm._BatchNorm) for c in n.modules())
    model(x)
    assert len(seen) == len(neurons)  # each neuron runs once per forward, on the whole sequence
    # nothing but the neurons keeps time state: with them swapped out, no module has a state
    swap_neurons(model, lambda _: nn.Identity())
    assert not any(hasattr(m, "state") for m in model.modules())


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_swap_neurons_puts_a_module_in_every_neurons_place(name):
    model, x = tiny(name, neuron="ilif", T=2)
    count = sum(isinstance(m, Neuron) for m in model.modules())
    log: list = []
    assert swap_neurons(model, lambda n: Recorder(log)) == count
    assert not any(isinstance(m, Neuron) for m in model.modules())
    out = model(x)
    assert out.shape[:2] == (2, 2)
    assert len(log) == count and all(s[:2] == (2, 2) for s in log)
    out.sum().backward()  # the stand-ins are differentiable: every parameter gets a gradient
    assert all(p.grad is not None for p in model.parameters())


def test_swapping_in_equal_neurons_leaves_the_output_unchanged():
    model, x = tiny("resnet19", neuron="ilif", T=2, backend="torch")
    model.eval()
    reference = model(x)
    seen: list[Neuron] = []

    def same(n: Neuron) -> nn.Module:
        seen.append(n)
        return ILIF(tau=n.tau, v_threshold=n.v_threshold, ciu_gain=n.ciu_gain,
                    mpiu_gain=n.mpiu_gain, backend="torch")

    swap_neurons(model, same)
    assert all(type(n) is ILIF for n in seen)
    torch.testing.assert_close(model(x), reference, rtol=0, atol=0)


def test_swap_neurons_errors_name_the_problem():
    model, _ = tiny("digits-small", neuron="lif", T=2)
    with pytest.raises(TypeError, match="must return an nn.Module"):
        swap_neurons(model, lambda n: 3)
    with pytest.raises(TypeError, match="Neuron itself"):
        swap_neurons(LIF(), lambda n: nn.Identity())


# -------------------------------------------------------------------------------- channels_last
def conv_inputs(model: nn.Module) -> list[torch.Tensor]:
    inputs: list[torch.Tensor] = []
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            m.register_forward_pre_hook(lambda mod, args: inputs.append(args[0]))
    return inputs


@pytest.mark.parametrize("name", ["resnet18", "resnet19", "cifar-small"])
@pytest.mark.parametrize("backend", ["torch", "auto"])
def test_channels_last_is_kept_end_to_end_and_equals_nchw(name, backend):
    model, x = tiny(name, neuron="ilif", T=2, backend=backend)
    cl = copy.deepcopy(model).to(memory_format=torch.channels_last)
    inputs = conv_inputs(cl)
    out_cl = cl(x.to(memory_format=torch.channels_last))
    assert inputs
    for t in inputs:  # every convolution sees channels_last input: no layout copy before it
        assert t.is_contiguous(memory_format=torch.channels_last), (t.shape, t.stride())
    out = model(x)
    assert rel(out_cl, out) <= 1e-5
    out_cl.square().sum().backward()
    out.square().sum().backward()
    assert rel(grads(cl.parameters()), grads(model.parameters())) <= 1e-4


def test_channels_last_leaves_per_channel_neurons_their_channel_dimension():
    # MPBN normalises per channel (dimension 2): it must not get the [T, N, H, W, C] view
    model, x = tiny("cifar-small", neuron="mpbn", T=2, backend="torch")
    cl = copy.deepcopy(model).to(memory_format=torch.channels_last)
    out_cl = cl(x.to(memory_format=torch.channels_last))
    assert rel(out_cl, model(x)) <= 1e-5


def test_fold_time_keeps_the_memory_format_and_copies_only_when_needed():
    x = torch.randn(2, 3, 4, 5, 6).permute(0, 1, 3, 4, 2).contiguous().permute(0, 1, 4, 2, 3)
    folded = fold_time(x)
    assert folded.data_ptr() == x.data_ptr()  # a view
    assert folded.is_contiguous(memory_format=torch.channels_last)
    step = torch.randn(3, 4, 5, 6).to(memory_format=torch.channels_last)
    repeated = step.unsqueeze(0).expand(2, *step.shape)  # stride 0 in T: needs a copy
    folded = fold_time(repeated)
    assert folded.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(folded, torch.cat([step, step]), rtol=0, atol=0)


# ------------------------------------------------------------------------------------ stem once
def stem_pair(name: str, neuron: str, train: bool):
    """Two equal models, stem once and stem on the repeated batch, float64 references aside."""
    model, x = tiny(name, neuron=neuron, T=3, backend="torch")
    twin = copy.deepcopy(model)
    model.stem_once, twin.stem_once = True, False
    model.train(train)
    twin.train(train)
    return model, twin, x


def stem_params(model: nn.Module) -> dict[str, torch.Tensor]:
    first = next(m for m in model.modules() if isinstance(m, TimeDistributed) and m.once)
    return dict(first.named_parameters())


# ResNet-34 on 32×32 images with N = 2 ends in training-mode BNs over T·N = 6 values of 1×1
# maps: they amplify any rounding difference (0.1 relative at the output, stem once or not), so
# for these two the whole-model comparison is made in eval mode and the stem's own output and
# gradient are compared in train mode (test_stem_once_of_a_conv_bn_stem_matches_the_repeated_batch)
ILL_CONDITIONED_IN_TRAIN = ("resnet34", "sew-resnet34")


@pytest.mark.parametrize("name", sorted(SHAPES))
@pytest.mark.parametrize("train", [True, False])
def test_stem_once_equals_the_stem_on_the_repeated_batch(name, train):
    # neurons swapped for a smooth stand-in, so that a rounding difference cannot flip a spike
    once, full, x = stem_pair(name, "lif", train)
    for m in (once, full):
        swap_neurons(m, lambda n: nn.Tanh())
    calls = []
    stems = []
    for m in (once, full):
        first = next(t for t in m.modules() if isinstance(t, TimeDistributed) and t.once)
        first.register_forward_hook(lambda mod, args, out: stems.append(out))
    conv = next(m for m in first.modules() if isinstance(m, nn.Conv2d))
    conv.register_forward_pre_hook(lambda mod, args: calls.append(args[0].shape))
    out_once, out_full = once(x), full(x)
    assert calls and calls[0][0] == x.shape[0] * 3  # the repeated model: [T·N, ...]
    assert stems[0].stride(0) == 0  # the stem-once model: [N, ...] repeated as a view
    assert rel(stems[0], stems[1]) <= 1e-5
    if train and name in ILL_CONDITIONED_IN_TRAIN:
        return
    assert rel(out_once, out_full) <= 1e-5
    grad = torch.randn_like(out_full)
    out_once.backward(grad)
    out_full.backward(grad)
    g_once, g_full = stem_params(once), stem_params(full)
    assert g_once and list(g_once) == list(g_full)
    assert rel(grads(g_once.values()), grads(g_full.values())) <= 1e-5
    weight = next(k for k in g_once if k.endswith("weight"))
    assert rel(g_once[weight].grad, g_full[weight].grad) <= 1e-5
    for a, b in zip(once.modules(), full.modules(), strict=True):  # BN running statistics
        if isinstance(a, nn.BatchNorm2d):
            assert rel(a.running_mean, b.running_mean) <= 1e-5
            assert rel(a.running_var, b.running_var) <= 1e-5
            assert int(a.num_batches_tracked) == int(b.num_batches_tracked)


@pytest.mark.parametrize("kernel,stride", [(3, 1), (7, 2)])  # the CIFAR and ImageNet stems
def test_stem_once_of_a_conv_bn_stem_matches_the_repeated_batch(kernel, stride):
    torch.manual_seed(0)
    stem = nn.Sequential(nn.Conv2d(3, 8, kernel, stride, kernel // 2, bias=False),
                         nn.BatchNorm2d(8))
    once = TimeDistributed(stem, once=True)
    full = TimeDistributed(copy.deepcopy(stem))
    x = torch.randn(2, 3, 16, 16)
    seq = x.unsqueeze(0).expand(4, *x.shape)
    y_once, y_full = once(seq), full(seq.contiguous())
    assert y_once.stride(0) == 0
    assert rel(y_once, y_full) <= 1e-5
    grad = torch.randn_like(y_full)
    y_once.backward(grad)
    y_full.backward(grad)
    for p, q in zip(once.parameters(), full.parameters(), strict=True):
        assert rel(p.grad, q.grad) <= 1e-5
    assert rel(once.module[1].running_var, full.module[1].running_var) <= 1e-6


def test_stem_once_with_spiking_neurons_gives_the_same_spikes():
    once, full, x = stem_pair("cifar-small", "ilif", True)
    assert rel(once(x), full(x)) <= 1e-5


def test_repeated_batch_norm_uses_the_bessel_factor_of_the_repeated_batch():
    torch.manual_seed(0)
    x = torch.randn(4, 3, 2, 2, dtype=torch.float64)
    for momentum in (0.1, None):
        bn = nn.BatchNorm2d(3, momentum=momentum).double()
        ref = copy.deepcopy(bn)
        y = repeated_batch_norm(bn, x, 5)
        y_ref = ref(torch.cat([x] * 5))
        torch.testing.assert_close(y, y_ref[:4])
        # hand-derived: n = 5·4·2·2 = 80 values per channel, var_b·80/79
        var_b = x.transpose(0, 1).reshape(3, -1).var(dim=1, unbiased=False)
        m = 0.1 if momentum is not None else 1.0
        torch.testing.assert_close(bn.running_var, (1 - m) * 1.0 + m * var_b * 80 / 79)
        torch.testing.assert_close(bn.running_var, ref.running_var)
        torch.testing.assert_close(bn.running_mean, ref.running_mean)


def test_stem_once_is_an_option_of_create_model():
    model, x = tiny("digits-small", neuron="lif", T=2, stem_once=False)
    assert model.stem_once is False
    assert model.encode(x).stride(0) != 0  # the repeated batch is materialised
    model.stem_once = True
    assert model.encode(x).stride(0) == 0


def test_once_applies_only_to_layers_that_treat_samples_alone():
    torch.manual_seed(0)
    x = torch.ones(4, 3).unsqueeze(0).expand(3, 4, 3)  # one [N, F] repeated over T = 3
    linear = TimeDistributed(nn.Linear(3, 2), once=True)
    assert linear(x).stride(0) == 0  # ran once, repeated as a view
    torch.testing.assert_close(linear(x), TimeDistributed(linear.module)(x.contiguous()))
    dropout = TimeDistributed(nn.Dropout(0.5), once=True)  # a mask per step: not once
    y = dropout(x)
    assert y.stride(0) != 0 and not torch.equal(y[0], y[1])
