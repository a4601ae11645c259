"""Shared helpers of the compile tests: small cifar-small/ResNet batches, eager vs compiled runs,
and the agreement checks (tolerances in tests/test_compile.py's docstring)."""

from __future__ import annotations

import torch

from ilif.models import create_model
from ilif.neurons import Neuron

SPIKE_AGREEMENT = 0.9999
OUTPUT_RTOL = 1e-4
GRAD_REL_L2 = 1e-3


def batch(size: int = 16, batch: int = 2, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.rand((batch, 3, size, size), generator=gen) * 2.0


def make_model(name: str, neuron: str, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return create_model(name, neuron=neuron, T=2)


def record_spikes(model: torch.nn.Module) -> list[torch.Tensor]:
    spikes: list[torch.Tensor] = []
    for module in model.modules():
        if isinstance(module, Neuron):
            module.register_forward_hook(lambda _m, _i, out: spikes.append(out.detach()))
    return spikes


def run(model, x):
    """Output, per-neuron spikes and parameter gradients of one forward and backward."""
    spikes = record_spikes(model)
    out = model(x)
    out.square().mean().backward()
    grads = [p.grad.detach().clone() for p in model.parameters() if p.grad is not None]
    return out.detach(), spikes, grads


def assert_agree(got, want) -> None:
    (out, spikes, grads), (ref_out, ref_spikes, ref_grads) = got, want
    assert len(spikes) == len(ref_spikes) > 0
    same = sum(int((a == b).sum()) for a, b in zip(spikes, ref_spikes, strict=True))
    total = sum(a.numel() for a in ref_spikes)
    assert same / total >= SPIKE_AGREEMENT, f"spikes agree on {same}/{total}"
    assert any(bool(s.sum() > 0) for s in ref_spikes)  # the comparison has content
    scale = float(ref_out.abs().max())
    torch.testing.assert_close(out, ref_out, rtol=OUTPUT_RTOL, atol=OUTPUT_RTOL * scale)
    assert len(grads) == len(ref_grads) > 0
    diff = torch.sqrt(sum(((a - b) ** 2).sum() for a, b in zip(grads, ref_grads, strict=True)))
    norm = torch.sqrt(sum((b**2).sum() for b in ref_grads))
    assert float(diff / norm) <= GRAD_REL_L2


