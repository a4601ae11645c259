"""The Triton kernels (LIF, ILIF with every flag, CLIF) against the eager reference loop.

They run on CPU tensors through Triton's interpreter (``TRITON_INTERPRET=1``, set per test: the
kernels are built for the mode Triton is in at call time). The oracle is the neuron's own eager
path (``multi_step_torch``, autograd through the functional steps): identical spikes, gradients
within 1e-5 relative, the same final state and statistics.
"""

from __future__ import annotations

import itertools
import subprocess
import sys

import pytest
import torch

triton = pytest.importorskip("triton")  # imported in its compiled mode: the kernels must cope

from ilif.kernels.triton_kernels import triton_available, triton_multi_step  # noqa: E402
from ilif.neurons import NeuronStats  # noqa: E402
from ilif.neurons.modules import ALIF, CLIF, ILIF, LIF, PLIF  # noqa: E402
from ilif.surrogate import SURROGATES, Surrogate  # noqa: E402

SMALL_BLOCK = 16  # several programs and a ragged last block for the sizes below
GRAD_RTOL = 1e-5
GRAD_ATOL = 1e-6


@pytest.fixture(autouse=True)
def triton_interpreter(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")


def _triton(neuron, x, state, want_stats, **kwargs):
    """:func:`triton_multi_step` on ``neuron``'s fused form, its results as the neuron's
    state type and :class:`NeuronStats` (None where it declines)."""
    form = neuron.fused_form()
    result = None if form is None else triton_multi_step(form, x, state, want_stats, **kwargs)
    if result is None:
        return None
    spikes, final, sums = result
    stats = None if sums is None else NeuronStats(
        spikes=sums[0], open=sums[1], surrogate_sum=sums[2], neurons=x[0].numel())
    return spikes, neuron.state_type(*final), stats


def _input(steps: int, shape=(37,), dtype=torch.float32, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(steps, *shape, generator=gen, dtype=torch.float64) * 1.2 + 0.7
    return x.to(dtype).requires_grad_()


def _random_state(neuron, like: torch.Tensor, seed: int):
    """A non-zero state, each field in the range it takes in a run."""
    gen = torch.Generator().manual_seed(seed)
    fields = []
    for name in neuron.state_type._fields:
        scale = {"v": 0.6, "trace": 0.05, "memory": 1.5, "drive": 1.0, "c": 1.0}[name]
        t = torch.randn(like.shape, generator=gen, dtype=torch.float64) * scale
        fields.append((t.abs() if name == "c" else t).to(like.dtype))  # C ≥ 0
    return neuron.state_type(*fields)


def _compare(
    neuron, x, state, *, block=SMALL_BLOCK, chunk=None, want_stats=False, seed=1, leaf=None
):
    """Run both paths on ``x`` from ``state``; assert equal spikes, gradients (with respect to
    ``leaf``, default ``x``) and final state."""
    result = _triton(neuron, x, state, want_stats, block=block, chunk=chunk)
    assert result is not None, "the Triton path declined a supported neuron"
    spikes, final, stats = result
    ref_spikes, ref_final, ref_h = neuron.multi_step_torch(x, state, keep_h=True)
    assert spikes.shape == x.shape and spikes.dtype == x.dtype
    torch.testing.assert_close(spikes, ref_spikes, rtol=0, atol=0)

    gen = torch.Generator().manual_seed(seed)
    upstream = torch.randn(x.shape, generator=gen, dtype=torch.float64).to(x.dtype)
    (grad,) = torch.autograd.grad(spikes, x if leaf is None else leaf, upstream)
    (ref_grad,) = torch.autograd.grad(ref_spikes, x if leaf is None else leaf, upstream)
    torch.testing.assert_close(grad, ref_grad, rtol=GRAD_RTOL, atol=GRAD_ATOL)

    assert type(final) is type(ref_final)
    for got, want in zip(final, ref_final, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    return spikes, stats, ref_h, grad


# ------------------------------------------------------------------------------- equivalence
ILIF_FLAGS = list(itertools.product([True, False], repeat=4))


@pytest.mark.parametrize("steps", [1, 2, 6, 16])
@pytest.mark.parametrize(
    "mpiu,ciu,detach_reset,detach_inhibition",
    ILIF_FLAGS,
    ids=lambda f: str(int(f)),
)
def test_ilif_every_flag_from_a_nonzero_state(steps, mpiu, ciu, detach_reset, detach_inhibition):
    neuron = ILIF(
        tau=1.1, mpiu=mpiu, ciu=ciu, detach_reset=detach_reset,
        detach_inhibition=detach_inhibition, ciu_gain=0.3, mpiu_gain=0.9,
    )
    x = _input(steps)
    _, _, _, grad = _compare(neuron, x, _random_state(neuron, x[0], seed=steps))
    assert grad.abs().sum() > 0  # the surrogate window is hit: the comparison has content


@pytest.mark.parametrize("steps", [1, 2, 6, 16])
@pytest.mark.parametrize("surrogate", sorted(SURROGATES))
@pytest.mark.parametrize("kind", ["lif", "ilif", "clif"])
def test_every_neuron_and_surrogate_from_rest(kind, surrogate, steps):
    width = {"rectangle": 1.0, "triangle": 0.6, "sigmoid": 2.0, "atan": 0.4}[surrogate]
    cls = {"lif": LIF, "ilif": ILIF, "clif": CLIF}[kind]
    neuron = cls(tau=2.0, surrogate=surrogate, width=width)
    x = _input(steps, shape=(3, 7), seed=steps)
    _compare(neuron, x, neuron.initial_state(x[0]))


@pytest.mark.parametrize("steps,chunk", [(6, 4), (16, 3), (9, 2), (20, None)])
@pytest.mark.parametrize("kind", ["lif", "ilif", "clif"])
def test_checkpointed_chunks_match(kind, steps, chunk):
    """T longer than a chunk: the forward runs unrolled chunks then the remaining steps, the
    backward checkpoints the states at chunk starts (T = 20 with the default 8 steps a chunk, and
    forced short chunks, some not a power of two), with a ragged last chunk."""
    cls = {"lif": LIF, "ilif": ILIF, "clif": CLIF}[kind]
    neuron = cls(tau=1.5, surrogate="sigmoid", width=0.8)
    x = _input(steps, shape=(21,), seed=3)
    _compare(neuron, x, _random_state(neuron, x[0], seed=4), chunk=chunk)


def _state_gradients(neuron, x, state, weights, **kwargs):
    """Spikes and final state of both paths under one loss; the gradients of x and of every
    initial-state field."""
    grads = {}
    for path in ("triton", "torch"):
        leaves = type(state)(*(t.detach().clone().requires_grad_() for t in state))
        if path == "triton":
            spikes, final, _ = _triton(neuron, x, leaves, False, **kwargs)
        else:
            spikes, final, _ = neuron.multi_step_torch(x, leaves)
        loss = (spikes * weights[0]).sum()
        loss = loss + sum((f * w).sum() for f, w in zip(final, weights[1:], strict=True))
        grads[path] = torch.autograd.grad(loss, (x, *leaves))
    return grads


@pytest.mark.parametrize(
    "mpiu,ciu,detach_reset,detach_inhibition",
    ILIF_FLAGS,
    ids=lambda f: str(int(f)),
)
def test_gradients_reach_the_initial_state_and_leave_the_final_one(
    mpiu, ciu, detach_reset, detach_inhibition
):
    """A state that requires grad and a loss on the final state (as when a sequence is fed in
    pieces): dL/dx and dL/d(initial state) as the eager loop gives them, also across chunks."""
    neuron = ILIF(
        tau=1.1, mpiu=mpiu, ciu=ciu, detach_reset=detach_reset,
        detach_inhibition=detach_inhibition, ciu_gain=0.3, mpiu_gain=0.9, surrogate="sigmoid",
    )
    x = _input(7, shape=(19,), seed=15)
    gen = torch.Generator().manual_seed(16)
    weights = [torch.randn(x.shape, generator=gen)]
    weights += [torch.randn(x.shape[1:], generator=gen) for _ in range(4)]
    state = _random_state(neuron, x[0], seed=17)
    grads = _state_gradients(neuron, x, state, weights, chunk=3)
    for got, want in zip(grads["triton"], grads["torch"], strict=True):
        torch.testing.assert_close(got, want, rtol=GRAD_RTOL, atol=GRAD_ATOL)
    assert all(g.abs().sum() > 0 for g in grads["torch"][:2])  # x and v get gradient


@pytest.mark.parametrize("kind", ["lif", "clif"])
def test_state_gradients_of_lif_and_clif(kind):
    neuron = {"lif": LIF, "clif": CLIF}[kind](tau=1.5, surrogate="atan", width=0.7)
    x = _input(5, shape=(19,), seed=18)
    gen = torch.Generator().manual_seed(19)
    weights = [torch.randn(x.shape, generator=gen)]
    weights += [torch.randn(x.shape[1:], generator=gen) for _ in neuron.state_type._fields]
    grads = _state_gradients(neuron, x, _random_state(neuron, x[0], seed=20), weights)
    for got, want in zip(grads["triton"], grads["torch"], strict=True):
        torch.testing.assert_close(got, want, rtol=GRAD_RTOL, atol=GRAD_ATOL)


@pytest.mark.parametrize("width", [0.25, 1.0, 3.0])
def test_width_is_a_runtime_value(width):
    """Every γ goes through the same kernels; the gradients follow γ like the reference's."""
    neuron = ILIF(tau=1.1, surrogate="triangle", width=width)
    x = _input(6, seed=5)
    _compare(neuron, x, neuron.initial_state(x[0]))


def test_non_contiguous_input_and_single_block():
    neuron = ILIF(tau=1.1, surrogate="atan", width=0.5)
    base = (torch.randn(5, 6, 9, generator=torch.Generator().manual_seed(6)) + 0.7)
    base.requires_grad_()
    x = base.permute(1, 2, 0)[:, ::2]  # [6, 5, 5], strided in every dimension
    assert not x.is_contiguous()
    _, _, _, grad = _compare(neuron, x, _random_state(neuron, x[0], seed=7), block=64, leaf=base)
    assert grad.shape == base.shape and grad[:, :, 1::2].abs().sum() == 0  # skipped


def test_default_block_and_float64():
    neuron = ILIF(tau=1.1, surrogate="sigmoid", width=1.0)
    x = _input(6, shape=(2, 3, 5), dtype=torch.float64, seed=8)
    _compare(neuron, x, _random_state(neuron, x[0], seed=9), block=None)


def test_half_input_computes_in_float32():
    """float16 in, float16 out, the dynamics in float32: the eager loop on x.float() is exact."""
    neuron = ILIF(tau=1.1, surrogate="sigmoid", width=1.0)
    x16 = _input(6, shape=(23,), dtype=torch.float16, seed=11)
    x32 = x16.detach().float().requires_grad_()
    spikes, final, _ = _triton(neuron, x16, neuron.initial_state(x16[0]), False)
    ref_spikes, ref_final, _ = neuron.multi_step_torch(x32, neuron.initial_state(x32[0]))
    assert spikes.dtype == torch.float16 and final.v.dtype == torch.float16
    torch.testing.assert_close(spikes.float(), ref_spikes, rtol=0, atol=0)
    upstream = torch.randn(x32.shape, generator=torch.Generator().manual_seed(12))
    (grad,) = torch.autograd.grad(spikes, x16, upstream.half())
    (ref_grad,) = torch.autograd.grad(ref_spikes, x32, upstream.half().float())
    assert grad.dtype == torch.float16
    torch.testing.assert_close(grad, ref_grad.half(), rtol=1e-3, atol=1e-4)  # fp16 rounding
    torch.testing.assert_close(final.v, ref_final.v.detach().half(), rtol=1e-3, atol=1e-3)


def test_all_silent_and_all_firing_inputs():
    """Edge inputs: no spike ever (the clamp sees I = 0 exactly) and a spike every step."""
    neuron = ILIF(tau=1.1, surrogate="rectangle", width=1.0)
    for level in (-0.2, 3.0):
        x = torch.full((6, 19), level).requires_grad_()
        spikes, _, _, _ = _compare(neuron, x, neuron.initial_state(x[0]))
        assert spikes.sum() == (0 if level < 0 else spikes.numel())


def test_through_the_module_state_carried_between_calls():
    """``backend="triton"`` through the module: two calls in a row (the second starts from the
    state the first left, with its graph), the statistics callback, then a reset; all as the
    eager module does, the gradient through both calls included."""
    records: dict[str, list] = {"triton": [], "torch": []}
    x1 = _input(4, shape=(2, 9), seed=13)
    x2 = _input(3, shape=(2, 9), seed=14)
    results = {}
    for backend in records:
        neuron = ILIF(tau=1.1, surrogate="triangle", backend=backend)
        neuron.stats_callback = lambda n, stats, spikes, b=backend: records[b].append(stats)
        first = neuron(x1)
        second = neuron(x2)
        grads = torch.autograd.grad((first.sum() + 2 * second.sum()), (x1, x2))
        results[backend] = (first, second, *grads, neuron.state)
        neuron.reset()
        assert neuron.state is None
    got, want = results["triton"], results["torch"]
    for index in (0, 1):
        torch.testing.assert_close(got[index], want[index], rtol=0, atol=0)
    for index in (2, 3):
        assert got[index].abs().sum() > 0
        torch.testing.assert_close(got[index], want[index], rtol=GRAD_RTOL, atol=GRAD_ATOL)
    for mine, theirs in zip(got[4], want[4], strict=True):
        torch.testing.assert_close(mine, theirs, rtol=1e-5, atol=1e-6)
    assert len(records["triton"]) == len(records["torch"]) == 2
    for mine, theirs in zip(records["triton"], records["torch"], strict=True):
        torch.testing.assert_close(mine.spikes, theirs.spikes, rtol=0, atol=0)
        torch.testing.assert_close(mine.open, theirs.open, rtol=0, atol=0)


# -------------------------------------------------------------------------------- statistics
@pytest.mark.parametrize("surrogate", sorted(SURROGATES))
def test_statistics_equal_the_eager_monitor(surrogate):
    neuron = ILIF(tau=1.1, surrogate=surrogate, width=0.7)
    x = _input(6, shape=(41,), seed=10)
    spikes, stats, ref_h, _ = _compare(neuron, x, neuron.initial_state(x[0]), want_stats=True)
    assert stats.neurons == 41
    dims = (1,)
    want_spikes = spikes.detach().sum(dim=dims, dtype=torch.float64)
    want_open = neuron.surrogate.is_open(ref_h).sum(dim=dims, dtype=torch.float64)
    want_g = neuron.surrogate.derivative(ref_h.float()).sum(dim=dims, dtype=torch.float64)
    for got in (stats.spikes, stats.open, stats.surrogate_sum):
        assert got.shape == (6,) and got.dtype == torch.float64
    torch.testing.assert_close(stats.spikes, want_spikes, rtol=0, atol=0)
    torch.testing.assert_close(stats.open, want_open, rtol=0, atol=0)
    torch.testing.assert_close(stats.surrogate_sum, want_g, rtol=1e-6, atol=1e-9)
    assert 0 < stats.open.sum() < 6 * 41  # a count with content, not all or nothing


def test_no_statistics_unless_asked():
    neuron = LIF()
    x = _input(2)
    assert _triton(neuron, x, neuron.initial_state(x[0]), False)[2] is None


# ------------------------------------------------------------------------------------ guards
class _CustomSurrogate(Surrogate):
    name = "custom"

    def derivative(self, h):
        return torch.ones_like(h)


@pytest.mark.parametrize(
    "make",
    [
        lambda: PLIF(tau=2.0),
        lambda: ALIF(),
        lambda: ILIF(surrogate=_CustomSurrogate(1.0)),
    ],
    ids=["plif", "alif", "custom-surrogate"],
)
def test_declines_what_it_does_not_implement(make):
    neuron = make()
    x = _input(3)
    assert _triton(neuron, x, neuron.initial_state(x[0]), False) is None


def test_declines_integer_input():
    neuron = ILIF()
    xi = torch.ones(3, 4, dtype=torch.int32)
    assert _triton(neuron, xi, neuron.initial_state(xi[0].float()), False) is None


def test_rejects_a_bad_block_or_chunk():
    neuron = LIF()
    x = _input(2)
    with pytest.raises(ValueError, match="block must be a power of two"):
        _triton(neuron, x, neuron.initial_state(x[0]), False, block=24)
    with pytest.raises(ValueError, match="chunk must be a positive number of steps"):
        _triton(neuron, x, neuron.initial_state(x[0]), False, chunk=0)


def test_needs_cuda_when_not_interpreting(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    neuron = LIF()
    x = _input(2)
    assert _triton(neuron, x, neuron.initial_state(x[0]), False) is None


def test_available_and_lazy():
    assert triton_available()
    code = (
        "import sys, ilif, ilif.neurons, ilif.kernels.triton_kernels as k; "
        "assert 'triton' not in sys.modules, 'triton imported eagerly'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_operators_pass_opcheck():
    """The Triton kernels as ``torch.library`` operators: schema, fake implementation and
    autograd registration agree with the eager launch (under the interpreter here)."""
    from ilif.kernels.triton_kernels import prepare

    neuron = ILIF(tau=1.1, surrogate="sigmoid", width=1.0)
    x = _input(4, shape=(19,), seed=21)
    state = _random_state(neuron, x[0], seed=22)
    call = prepare(neuron.fused_form(), x, type(state)(*(t.requires_grad_() for t in state)))
    args = (call.x2d, call.state2d, call.params, [int(v) for v in call.config], True, 16, None)
    torch.library.opcheck(torch.ops.ilif.triton_forward.default, args)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("make", [lambda: ILIF(tau=1.1, surrogate="sigmoid", width=1.0),
                                  lambda: CLIF(surrogate="triangle", width=0.6),
                                  lambda: LIF(surrogate="atan", width=0.8)],
                         ids=["ilif", "clif", "lif"])
def test_half_precision_natively_against_float64(make, dtype):
    """float16 and bfloat16 straight into the kernels (loaded, computed in float32, stored in the
    input dtype), from a non-zero state: spikes agree with the float64 eager loop on the upcast
    input on ≥ 99.9 % of neuron-steps, dL/dx within relative L2 1e-2 of its gradient rounded to
    the input dtype."""
    neuron = make()
    x = _input(6, shape=(3, 41), dtype=dtype, seed=21)
    state = _random_state(neuron, x[0].detach().float(), seed=22)
    half_state = tuple(s.to(dtype) for s in state)
    spikes, final, _ = _triton(neuron, x, half_state, False, block=SMALL_BLOCK)
    x64 = x.detach().double().requires_grad_()
    ref_spikes, _, _ = neuron.multi_step_torch(
        x64, neuron.state_type(*(s.double() for s in half_state)))
    assert spikes.dtype == dtype and final[0].dtype == dtype
    assert (spikes.double() == ref_spikes).double().mean() >= 0.999
    assert 0 < float(ref_spikes.detach().mean()) < 1
    upstream = torch.randn(x.shape, generator=torch.Generator().manual_seed(23)).to(dtype)
    (grad,) = torch.autograd.grad(spikes, x, upstream)
    (ref_grad,) = torch.autograd.grad(ref_spikes, x64, upstream.double())
    assert grad.dtype == dtype
    want = ref_grad.to(dtype).double()
    assert float((grad.double() - want).norm() / want.norm()) <= 1e-2
