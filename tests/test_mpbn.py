"""MPBN against a float64 reference written here from its equations (docs/neurons.md):

    H_t = λ·v_{t−1} + x_t ;  Ĥ_t = γ_c·(H_t − μ_{t,c})/sqrt(σ²_{t,c} + ε) + β_c
    S_t = Θ(Ĥ_t − θ) ;  v_t = H_t − S_t·θ

with per-step batch statistics over (N, H, W) in training, the running estimates shared by the
steps, and the exact inference fold into a per-channel threshold.
"""

from __future__ import annotations

import math

import pytest
import torch

import ilif
from ilif import surrogate
from ilif.analysis import measure_energy
from ilif.analysis.sweep import make_grid
from ilif.models import create_model
from ilif.neurons import MPBN, create_neuron, neuron_names
from ilif.train import TrainConfig

NEAR = 1e-9  # neuron-steps this close to the threshold may round either way


def heaviside(h: torch.Tensor) -> torch.Tensor:
    return (h >= 0).to(h.dtype)


def reference(x, *, tau, theta, gamma, beta, mean, var, momentum, eps, training,
              spike_fn=heaviside):
    """Run MPBN on x [T, N, C, *] from v = 0; returns spikes, Ĥ − θ and the running estimates."""
    lam = 1.0 - 1.0 / tau
    channels = x.shape[2]
    shape = (1, channels) + (1,) * (x.dim() - 3)
    dims = [0, *range(2, x.dim() - 1)]
    v = torch.zeros_like(x[0])
    mean, var = mean.clone(), var.clone()
    spikes, crossing = [], []
    for t in range(x.shape[0]):
        h = lam * v + x[t]
        if training:
            mu = h.mean(dim=dims)
            sigma2 = ((h - mu.view(shape)) ** 2).mean(dim=dims)
            n = h.numel() / channels
            mean = (1 - momentum) * mean + momentum * mu.detach()
            var = (1 - momentum) * var + momentum * sigma2.detach() * n / (n - 1)
        else:
            mu, sigma2 = mean, var
        h_hat = gamma.view(shape) * (h - mu.view(shape)) / torch.sqrt(sigma2.view(shape) + eps)
        h_hat = h_hat + beta.view(shape)
        s = spike_fn(h_hat - theta)
        v = h - s * theta
        spikes.append(s)
        crossing.append((h_hat - theta).detach())
    return torch.stack(spikes), torch.stack(crossing), mean, var


def make_mpbn(channels=4, seed=0, **kw) -> tuple[MPBN, dict]:
    """An MPBN with random affine parameters (one γ negative, one zero) and running estimates."""
    g = torch.Generator().manual_seed(seed)
    neuron = MPBN(channels=channels, backend="torch", **kw).double()
    with torch.no_grad():
        neuron.weight.copy_(torch.rand(channels, generator=g, dtype=torch.float64) * 1.5 + 0.3)
        neuron.weight[1] = -neuron.weight[1]
        neuron.bias.copy_(torch.randn(channels, generator=g, dtype=torch.float64) * 0.3)
        if channels > 3:  # γ = 0, β ≥ θ: Ĥ = β, that channel always fires at inference
            neuron.weight[3], neuron.bias[3] = 0.0, 1.5
        neuron.running_mean.copy_(torch.randn(channels, generator=g, dtype=torch.float64) * 0.5)
        neuron.running_var.copy_(torch.rand(channels, generator=g, dtype=torch.float64) + 0.2)
    params = dict(
        tau=neuron.tau, theta=neuron.v_threshold, gamma=neuron.weight.detach().clone(),
        beta=neuron.bias.detach().clone(), mean=neuron.running_mean.clone(),
        var=neuron.running_var.clone(), momentum=neuron.momentum, eps=neuron.eps,
    )
    return neuron, params


def currents(shape, seed=1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g, dtype=torch.float64) * 0.8 + 0.3


def assert_same_spikes(ours, ref, crossing) -> None:
    differ = ours != ref
    assert not (differ & (crossing.abs() >= NEAR)).any(), (
        f"{int(differ.sum())} neuron-steps differ away from the threshold")
    assert 0.05 < float(ref.mean()) < 0.95  # the check saw both spikes and silence


def test_training_step_matches_the_reference_with_batch_statistics() -> None:
    neuron, p = make_mpbn(seed=3)
    neuron.train()
    x = currents((5, 8, 4, 3, 3))
    spikes = neuron(x)
    ref, crossing, mean, var = reference(x, training=True, **p)
    assert_same_spikes(spikes, ref, crossing)
    # the running estimates were updated once per step, with the unbiased variance
    torch.testing.assert_close(neuron.running_mean, mean, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(neuron.running_var, var, rtol=1e-12, atol=1e-12)
    # the state stays un-normalised: v_T = H_T − S_T·θ
    lam = 1 - 1 / p["tau"]
    v = torch.zeros_like(x[0])
    for t in range(x.shape[0]):
        v = lam * v + x[t] - ref[t] * p["theta"]
    torch.testing.assert_close(neuron.state.v, v, rtol=0, atol=1e-12)


def test_training_gradients_match_the_reference() -> None:
    neuron, p = make_mpbn(seed=5, surrogate=surrogate.Triangle(width=1.5))
    neuron.train()
    x = currents((4, 6, 4, 2, 2), seed=7).requires_grad_(True)
    w = torch.randn(x.shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    (neuron(x) * w).sum().backward()
    ours = (x.grad.clone(), neuron.weight.grad.clone(), neuron.bias.grad.clone())

    x.grad = None
    gamma = p.pop("gamma").requires_grad_(True)
    beta = p.pop("beta").requires_grad_(True)
    spikes, *_ = reference(x, gamma=gamma, beta=beta, training=True,
                           spike_fn=surrogate.Triangle(width=1.5), **p)
    (spikes * w).sum().backward()
    for a, b in zip(ours, (x.grad, gamma.grad, beta.grad), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)
    assert ours[1].abs().sum() > 0  # the gradient reached the affine parameters


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_inference_fold_is_exact(seed: int) -> None:
    """In eval mode the module thresholds H against θ′_c (flipped where γ_c < 0): the same
    float64 spikes as the normalised reference, except neuron-steps within 1e-9 of θ."""
    neuron, p = make_mpbn(channels=6, seed=seed)
    neuron.eval()
    x = currents((6, 16, 6, 4, 4), seed=10 + seed)
    with torch.no_grad():
        spikes = neuron(x)
    ref, crossing, mean, var = reference(x, training=False, **p)
    assert_same_spikes(spikes, ref, crossing)
    near = int((crossing.abs() < NEAR).sum())
    assert near <= 2, f"{near} neuron-steps sit within {NEAR} of the threshold"
    assert torch.equal(neuron.running_mean, mean) and torch.equal(neuron.running_var, var)
    # channel 1 has γ < 0 (it fires below its folded threshold), channel 3 has γ = 0, β ≥ θ
    threshold, scale, _ = neuron.folded_threshold()
    assert scale[1] < 0 and bool(ref[:, :, 3].eq(1).all())
    h = lam_h(x, ref, p)
    fired = ref[:, :, 1].bool()
    assert bool((h[:, :, 1][fired] <= threshold[1]).all())
    assert bool((h[:, :, 1][~fired] > threshold[1]).all())


def lam_h(x, spikes, p) -> torch.Tensor:
    """H_t of the run whose spikes are given."""
    lam = 1 - 1 / p["tau"]
    v, hs = torch.zeros_like(x[0]), []
    for t in range(x.shape[0]):
        h = lam * v + x[t]
        v = h - spikes[t] * p["theta"]
        hs.append(h)
    return torch.stack(hs)


def test_single_step_mode_and_channel_inference() -> None:
    x = currents((3, 5, 4, 2, 2), seed=4)
    lazy = MPBN(backend="torch", step_mode="s").double()
    assert lazy.weight is None
    single = torch.stack([lazy(x[t]) for t in range(3)])  # channels taken from [N, C, *]
    assert lazy.channels == 4 and lazy.weight.shape == (4,)
    multi = MPBN(channels=4, backend="torch").double()
    assert torch.equal(single, multi(x))
    with pytest.raises(ValueError, match="built for 4 channels"):
        multi(currents((3, 5, 3, 2, 2)))
    with pytest.raises(ValueError, match=r"needs an input \[T, N, C, \*\]"):
        MPBN()(torch.randn(3, 5))
    # a checkpoint loads into an MPBN that has not seen data yet
    fresh = MPBN().double()
    fresh.load_state_dict(multi.state_dict())
    assert torch.equal(fresh.running_var, multi.running_var) and fresh.channels == 4


def test_registered_and_built_by_the_model_factory_with_its_channel_count() -> None:
    assert "mpbn" in neuron_names() and type(create_neuron("mpbn")) is MPBN
    assert ilif.MPBN is MPBN
    model = create_model("cifar-small", neuron="mpbn", T=2)
    layers = [m for m in model.modules() if isinstance(m, MPBN)]
    assert [m.channels for m in layers] == [32, 64, 128]  # parameters exist before any forward
    names = {n for n, _ in model.named_parameters()}
    assert sum(n.endswith("neuron.weight") for n in names) == 3
    x = torch.rand(2, 3, 32, 32)
    model.train()
    model(x)
    energy = measure_energy(model, [x])
    lif = measure_energy(create_model("cifar-small", neuron="lif", T=2).eval(), [x])
    mpbn_layers = [layer for layer in energy["layers"] if layer["type"] == "mpbn"]
    assert len(mpbn_layers) == 3
    # after the fold, LIF's counts: 1 MAC and 1 compare per neuron-step, 1 AC per spike
    for layer in mpbn_layers:
        steps = layer["neurons"] * energy["T"]
        assert math.isclose(layer["macs"], steps, rel_tol=1e-12)
        assert math.isclose(layer["acs"], steps * (1 + layer["firing_rate"]), rel_tol=1e-12)
    assert energy["flops"] == lif["flops"]


def test_the_neurons_sweep_preset_includes_mpbn() -> None:
    grid = make_grid(TrainConfig(), "neurons")
    assert {"lif", "ilif", "clif", "plif", "alif", "mpbn"} <= set(grid.neurons)
