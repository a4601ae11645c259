"""``torch.compile`` with the default backend (inductor) against eager: cifar-small, ILIF, T = 2,
train mode, a small batch. Tolerances as in tests/test_compile.py: spikes on ≥ 99.99 % of
neuron-steps (inductor's fused BN may round differently by about 1e-7), outputs to rtol 1e-4,
parameter gradients to a relative L2 error ≤ 1e-3. A file of its own: its compilation takes
minutes on two cores, and the test runner spreads files over its workers.
"""

from __future__ import annotations

import pytest
import torch
from compile_helpers import assert_agree, batch, make_model, run

pytest.importorskip("numba")


@pytest.mark.slow  # inductor compiles forward and backward: about two minutes cold on 2 cores
def test_compiled_matches_eager_inductor() -> None:
    """The default backend (inductor) on cifar-small with ILIF, T = 2, train mode."""
    x = batch()
    want = run(make_model("cifar-small", "ilif"), x)
    torch._dynamo.reset()
    compiled = torch.compile(make_model("cifar-small", "ilif"), fullgraph=True)
    assert_agree(run(compiled, x), want)


