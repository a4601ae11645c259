"""Copies of models and neurons at any time (deepcopy, pickle, AveragedModel, EMA), the
autograd graph a neuron's state keeps, and ``torch.export`` of an eval model."""

from __future__ import annotations

import copy
import gc
import pickle
import weakref

import pytest
import torch
from compile_helpers import batch, make_model

from ilif.neurons import ILIF, Neuron

pytest.importorskip("numba")


# ----------------------------------------------------------------------------------- export
@pytest.mark.parametrize("neuron", ["ilif", "clif"])
def test_export_of_an_eval_model_matches_eager(neuron: str) -> None:
    model = make_model("cifar-small", neuron).eval()
    x, other = batch(seed=1), batch(seed=2)
    with torch.no_grad():
        want = model(x)
        want_other = model(other)
    program = torch.export.export(model, (x,))
    exported = program.module()
    with torch.no_grad():
        torch.testing.assert_close(exported(x), want, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(exported(other), want_other, rtol=1e-6, atol=1e-6)
    assert any("fused_cpu_forward" in str(node.target) for node in program.graph.nodes)


# ----------------------------------------------------------------------------------- copies
def test_neuron_copies_before_after_and_between_forward_and_backward() -> None:
    """deepcopy and pickle of a neuron whose state holds an autograd graph: the copy continues
    from the same state values, and the original's backward still works."""
    x1 = torch.randn(3, 40, generator=torch.Generator().manual_seed(1)).add(0.6).requires_grad_()
    x2 = torch.randn(3, 40, generator=torch.Generator().manual_seed(2)).add(0.6)
    neuron = ILIF()
    copies = [copy.deepcopy(neuron)]  # before any forward
    spikes = neuron(x1)
    copies += [copy.deepcopy(neuron), pickle.loads(pickle.dumps(neuron))]  # before backward
    assert all(not t.requires_grad for c in copies[1:] for t in c.state)
    spikes.sum().backward()  # the original's graph is intact
    assert x1.grad is not None and x1.grad.abs().sum() > 0
    copies.append(copy.deepcopy(neuron))  # after backward
    want = neuron(x2).detach()
    for c in copies[1:]:
        torch.testing.assert_close(c(x2), want, rtol=0, atol=0)
    torch.testing.assert_close(copies[0](x2), ILIF()(x2), rtol=0, atol=0)  # a fresh neuron


def test_model_copies_averaged_model_and_ema_in_a_training_loop() -> None:
    """AveragedModel and an EMA deepcopy made right after a forward (before its backward), then
    updated over a few steps: every copy runs and matches the averages it should hold."""
    model = make_model("cifar-small", "ilif")
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    averaged, ema, decay = None, None, 0.5
    history = []
    for step in range(3):
        out = model(batch(seed=10 + step))
        if averaged is None:
            averaged = torch.optim.swa_utils.AveragedModel(model)  # between forward and backward
            ema = copy.deepcopy(model)
            pickle.loads(pickle.dumps(model))
        opt.zero_grad()
        out.square().mean().backward()
        opt.step()
        averaged.update_parameters(model)
        with torch.no_grad():
            for pe, p in zip(ema.parameters(), model.parameters(), strict=True):
                pe.mul_(decay).add_(p, alpha=1 - decay)
        history.append([p.detach().clone() for p in model.parameters()])
    # AveragedModel: the mean of the parameters after each update
    for pa, *ps in zip(averaged.module.parameters(), *history, strict=True):
        torch.testing.assert_close(pa, torch.stack(ps).mean(0), rtol=1e-5, atol=1e-6)
    x = batch(seed=20)
    assert averaged(x).shape == ema(x).shape == model(x).shape


class _Saved:
    """A tensor autograd saved for backward, boxed so that its lifetime can be watched."""

    def __init__(self, tensor: torch.Tensor) -> None:
        self.tensor = tensor


def test_model_state_holds_no_graph_after_forward() -> None:
    """After a model's forward the neurons keep no autograd graph: once the user drops the
    output, every tensor the graph saved is freed (without a reset or a backward)."""
    model = make_model("cifar-small", "ilif")
    boxes: list[weakref.ref] = []

    def pack(t: torch.Tensor) -> _Saved:
        box = _Saved(t)
        boxes.append(weakref.ref(box))
        return box

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda box: box.tensor):
        out = model(batch())
    gc.collect()
    assert sum(r() is not None for r in boxes) > 10  # the output's graph holds them
    assert all(not t.requires_grad for m in model.modules() if isinstance(m, Neuron)
               for t in m.state)
    del out
    gc.collect()
    assert sum(r() is not None for r in boxes) == 0


def test_a_neuron_keeps_the_graph_for_bptt_across_calls() -> None:
    """A neuron on its own keeps the graph in its state: the gradient of the second call's
    spikes reaches the first call's input, as through one sequence."""
    x = torch.randn(4, 50, generator=torch.Generator().manual_seed(5)).add(0.7).requires_grad_()
    ref = ILIF(backend="torch")
    (want,) = torch.autograd.grad(ref(x)[2:].sum(), x)
    neuron = ILIF()
    neuron(x[:2])
    (got,) = torch.autograd.grad(neuron(x[2:]).sum(), x)
    assert want[:2].abs().sum() > 0
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
