"""ilif models under ``torch.compile`` and ``torch.export``, and copies of models and neurons.

The fused CPU kernels are ``torch.library`` operators (docs/performance.md): dynamo traces a
whole model without a graph break, and compiled runs agree with eager ones. Tolerances: spikes
on ≥ 99.99 % of neuron-steps (inductor's fused BN may round differently by about 1e-7 and flip a
neuron sitting exactly at the threshold; ``aot_eager`` runs the same kernels, so its spikes are
equal), outputs to rtol 1e-4, parameter gradients to a relative L2 error ≤ 1e-3.
"""

from __future__ import annotations

import pytest
import torch
from compile_helpers import assert_agree, batch, make_model, run

from ilif.neurons import ILIF

pytest.importorskip("numba")


# ------------------------------------------------------------------------------ graph breaks
GRAPH_CASES = [("cifar-small", n, t) for n in ("ilif", "lif", "clif") for t in (True, False)]
# ResNet-18 takes about 20 s a trace on two cores: each neuron once, train and eval both covered
GRAPH_CASES += [("resnet18", "ilif", True), ("resnet18", "lif", False), ("resnet18", "clif", True)]


@pytest.mark.parametrize("name,neuron,train", GRAPH_CASES,
                         ids=[f"{m}-{n}-{'train' if t else 'eval'}" for m, n, t in GRAPH_CASES])
def test_no_graph_breaks(name: str, neuron: str, train: bool) -> None:
    """dynamo traces the whole model as one graph: the fused kernels are operators with fake
    implementations, the neuron forward makes no host synchronisation."""
    model = make_model(name, neuron).train(train)
    torch._dynamo.reset()
    explanation = torch._dynamo.explain(model)(batch())
    reasons = [b.reason for b in explanation.break_reasons]
    assert explanation.graph_break_count == 0, reasons
    assert explanation.graph_count == 1


# ------------------------------------------------------------------------ compiled vs eager
@pytest.mark.parametrize("neuron", ["ilif", "lif", "clif"])
def test_compiled_matches_eager_aot_eager(neuron: str) -> None:
    """Forward and backward through the traced operators (``aot_eager``: dynamo and AOT autograd,
    eager kernels) give the eager spikes, outputs and parameter gradients."""
    x = batch()
    want = run(make_model("cifar-small", neuron), x)
    torch._dynamo.reset()
    compiled = torch.compile(make_model("cifar-small", neuron), backend="aot_eager", fullgraph=True)
    assert_agree(run(compiled, x), want)


def test_operators_pass_opcheck() -> None:
    """``torch.library.opcheck``: schema, fake implementation, autograd registration and
    dynamo/AOT tracing of the forward operator agree with its eager behaviour."""
    form = ILIF(surrogate="sigmoid").fused_form()
    gen = torch.Generator().manual_seed(3)
    x = (torch.randn(4, 300, generator=gen) + 0.5).requires_grad_()
    state0 = (torch.randn(4, 300, generator=gen) * 0.3).requires_grad_()
    args = (x, state0, form.family, list(form.flags), list(form.params), True, True)
    torch.library.opcheck(torch.ops.ilif.fused_cpu_forward.default, args)


