"""The stateful module every neuron shares: step modes, state, reset, backends, statistics."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

import torch
from torch import Tensor, nn

from ilif.kernels import FusedForm, fused_multi_step
from ilif.kernels.contract import N_SURROGATES
from ilif.neurons.ops import NeuronOps
from ilif.surrogate import Rectangle, Surrogate, get_surrogate

STEP_MODES = ("s", "m")
DEFAULT_TAU = 1.1  # the paper's τ, for every neuron and factory (docs/neurons.md)
BACKENDS = ("auto", "torch", "cpu", "triton")


@dataclass
class NeuronStats:
    """Per-call statistics of one neuron layer, per time step (tensors of shape [T]).

    ``spikes``: spike count; ``open``: gradient-open neuron-steps (|h| < γ/2);
    ``surrogate_sum``: sum of g(h); ``neurons``: neurons per step (elements of one x_t).
    """

    spikes: Tensor
    open: Tensor
    surrogate_sum: Tensor
    neurons: int


StatsCallback = Callable[["Neuron", NeuronStats, Tensor], None]


def reset_net(model: nn.Module) -> None:
    """Reset the state of every stateful module in ``model`` (anything with a ``reset()``)."""
    for module in model.modules():
        reset = getattr(module, "reset", None)
        if callable(reset):
            reset()


def check_tau(tau: float, name: str = "tau", strict: bool = False) -> float:
    """Validate a membrane time constant: τ ≥ 1 so that the leak λ = 1 − 1/τ is in [0, 1)."""
    tau = float(tau)
    bad = (tau <= 1.0) if strict else (tau < 1.0)
    if not math.isfinite(tau) or bad:
        need = "> 1" if strict else ">= 1 (the leak λ = 1 − 1/τ must not be negative)"
        raise ValueError(f"{name} must be {need}, got {name}={tau!r}")
    return tau


def check_unit(value: float, name: str) -> float:
    value = float(value)
    if not (0.0 <= value <= 1.0):
        raise ValueError(f"{name} must lie in [0, 1], got {name}={value!r}")
    return value


class Neuron(nn.Module):
    """Base class of the spiking neurons.

    ``step_mode="s"``: one step ``x_t -> S_t`` per call, the state kept until :meth:`reset`.
    ``step_mode="m"``: a whole ``[T, *]`` sequence per call, starting from the current state.
    ``backend`` chooses the multi-step engine: ``"torch"`` (the eager reference loop),
    ``"cpu"`` / ``"triton"`` (fused kernels), or ``"auto"`` (a fused kernel where one exists for
    the neuron, device and dtype, else the eager loop).

    Subclasses give ``state_type`` (a NamedTuple of tensors), ``params()``, ``step_fn`` and
    ``operations`` (their per-step operation counts, or an :meth:`operation_counts` override),
    where a fused kernel can run them :meth:`fused_form`, and are registered by name with
    :func:`ilif.register_neuron` (docs/neurons.md).
    """

    state_type: type[NamedTuple]  # type: ignore[valid-type]
    step_fn: Callable[..., Any]
    kind: str = ""  # set by @register_neuron from the registered name
    operations: ClassVar[NeuronOps | None] = None

    def operation_counts(self) -> NeuronOps:
        """Operations per neuron per step, from the neuron's equations (docs/neurons.md,
        "Energy"); the energy meter asks each neuron layer for them."""
        if self.operations is None:
            raise NotImplementedError(
                f"{type(self).__name__} states no operation counts for the energy model: give "
                "the class `operations = NeuronOps(...)` (ilif.neurons.NeuronOps) or override "
                "operation_counts(); see docs/neurons.md, 'Energy'"
            )
        return self.operations

    def __init__(
        self,
        tau: float = DEFAULT_TAU,
        v_threshold: float = 1.0,
        surrogate: Surrogate | str | None = None,
        step_mode: str = "m",
        detach_reset: bool = False,
        backend: str = "auto",
        width: float | None = None,
    ) -> None:
        super().__init__()
        if step_mode not in STEP_MODES:
            raise ValueError(f"step_mode must be 's' or 'm', got step_mode={step_mode!r}")
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got backend={backend!r}")
        v_threshold = float(v_threshold)
        if not math.isfinite(v_threshold) or v_threshold <= 0:
            raise ValueError(f"v_threshold must be > 0, got v_threshold={v_threshold!r}")
        if surrogate is None:
            surrogate = Rectangle(width=1.0 if width is None else width)
        elif isinstance(surrogate, str):
            surrogate = get_surrogate(surrogate, 1.0 if width is None else width)
        elif not isinstance(surrogate, Surrogate):
            raise TypeError(
                f"surrogate must be an ilif.surrogate.Surrogate or a name, got {surrogate!r}"
            )
        elif width is not None:
            raise ValueError(
                f"width={width!r} was given with the surrogate instance {surrogate!r}, which has "
                "its own width; pass surrogate=<name> with width=, or the instance alone"
            )
        self.tau = tau
        self.v_threshold = v_threshold
        self.surrogate = surrogate
        self.step_mode = step_mode
        self.detach_reset = bool(detach_reset)
        self.backend = backend
        self.state: NamedTuple | None = None
        self.stats_callback: StatsCallback | None = None

    # ------------------------------------------------------------------ the parts subclasses give
    def params(self) -> NamedTuple:
        """The typed parameters of :attr:`step_fn`."""
        raise NotImplementedError

    def fused_form(self) -> FusedForm | None:
        """How the fused kernels run this neuron (:class:`ilif.kernels.FusedForm`: kernel family,
        flags, parameters, state layout), or None: the eager loop runs it (the default)."""
        return None

    def _surrogate_code(self) -> int | None:
        """The surrogate's kernel code, or None for a surrogate without one."""
        code = getattr(self.surrogate, "code", -1)
        return code if isinstance(code, int) and 0 <= code < N_SURROGATES else None

    @property
    def decay(self) -> float | Tensor:
        """The leak λ = 1 − 1/τ."""
        return 1.0 - 1.0 / self.tau

    # ---------------------------------------------------------------------------------- state
    def reset(self) -> None:
        """Forget the state: the next call starts from zero, as before the first step."""
        self.state = None

    def detach_state(self) -> None:
        """Keep the state's values but cut its autograd graph: the next call continues from
        them, and no gradient flows back into the calls before (truncated BPTT). The state a
        call leaves otherwise keeps that call's graph until :meth:`reset`, so that gradients
        flow across calls as through one long sequence."""
        if self.state is not None:
            self.state = type(self.state)(*(t.detach() for t in self.state))

    def __getstate__(self) -> dict[str, Any]:
        """For ``copy.deepcopy`` and pickling, at any time (also between a forward and its
        backward): the copy gets the state's values without their autograd graph."""
        state = dict(super().__getstate__())
        if state.get("state") is not None:
            state["state"] = type(state["state"])(*(t.detach() for t in state["state"]))
        return state

    def initial_state(self, like: Tensor) -> NamedTuple:
        """The all-zero state for one step of the shape, dtype and device of ``like``.

        One zero broadcast to the shape (a zero-stride view): nothing is allocated or filled per
        call, and the steps, which never write their state in place, read it as zeros.
        """
        zero = torch.zeros((), dtype=like.dtype, device=like.device).expand_as(like)
        return self.state_type(*(zero for _ in self.state_type._fields))

    def _state_for(self, x_step_shape: torch.Size, like: Tensor) -> NamedTuple:
        if self.state is None:
            return self.initial_state(like)
        stored = self.state[0].shape
        if stored != x_step_shape:
            raise RuntimeError(
                f"{type(self).__name__}: input of shape {tuple(x_step_shape)} per step does not "
                f"match the stored state of shape {tuple(stored)}. The state of the previous "
                "sample is still there: call neuron.reset() (or ilif.reset_net(model)) before "
                "each new batch."
            )
        if self.state[0].dtype != like.dtype or self.state[0].device != like.device:
            return self.state_type(*(t.to(like) for t in self.state))
        return self.state

    # -------------------------------------------------------------------------------- forward
    def _check_input(self, x: Tensor) -> None:
        if not isinstance(x, Tensor):
            raise TypeError(f"{type(self).__name__} expects a torch.Tensor, got {type(x).__name__}")
        if not x.is_floating_point():
            raise TypeError(
                f"{type(self).__name__} expects a floating-point input current, got dtype "
                f"{x.dtype}; convert it first, e.g. x.float()"
            )

    def forward(self, x: Tensor) -> Tensor:
        self._check_input(x)
        if self.step_mode == "s":
            return self.single_step(x)
        if x.dim() < 2:
            raise ValueError(
                f"{type(self).__name__} in step_mode='m' expects a sequence [T, *] with a time "
                f"dimension first, got shape {tuple(x.shape)}; add one with x.unsqueeze(0), or "
                "use step_mode='s' for one step per call"
            )
        return self.multi_step(x)

    def single_step(self, x: Tensor) -> Tensor:
        state = self._state_for(x.shape, x)
        s, self.state, h = type(self).step_fn(x, state, self.params(), self.surrogate)
        if self.stats_callback is not None:
            self._report(s.unsqueeze(0), h.unsqueeze(0))
        return s

    def multi_step(self, x_seq: Tensor) -> Tensor:
        zero_state = self.state is None  # known without looking at the values
        state = self._state_for(x_seq.shape[1:], x_seq[0])
        want_stats = self.stats_callback is not None
        backend = self.backend
        if backend != "torch":
            form = self.fused_form()
            if form is None and backend != "auto":
                raise ValueError(
                    f"backend={backend!r} cannot run this call: {type(self).__name__} has no "
                    "fused kernel (fused_form() is None: LIF, ILIF and CLIF with a fixed leak "
                    "have one); use backend='auto' or 'torch'"
                )
            result = None
            if form is not None:
                result = fused_multi_step(form, x_seq, state, zero_state, want_stats, backend)
            if result is not None:
                spikes, final, sums = result
                self.state = self.state_type(*final)
                if want_stats:
                    stats = NeuronStats(spikes=sums[0], open=sums[1], surrogate_sum=sums[2],
                                        neurons=x_seq[0].numel())
                    self.stats_callback(self, stats, spikes)  # type: ignore[misc]
                return spikes
        spikes, self.state, h_seq = self.multi_step_torch(x_seq, state, keep_h=want_stats)
        if want_stats:
            self._report(spikes, h_seq)
        return spikes

    def multi_step_torch(
        self, x_seq: Tensor, state: NamedTuple, keep_h: bool = False
    ) -> tuple[Tensor, NamedTuple, Tensor | None]:
        """The eager reference: one :attr:`step_fn` call per time step."""
        step, params, spike_fn = type(self).step_fn, self.params(), self.surrogate
        spikes, hs = [], []
        for x in x_seq.unbind(0):
            s, state, h = step(x, state, params, spike_fn)
            spikes.append(s)
            if keep_h:
                hs.append(h.detach())
        return torch.stack(spikes), state, (torch.stack(hs) if keep_h else None)

    # ----------------------------------------------------------------------------- statistics
    def _report(self, spikes: Tensor, h_seq: Tensor) -> None:
        with torch.no_grad():
            dims = tuple(range(1, h_seq.dim()))
            stats = NeuronStats(
                spikes=spikes.detach().sum(dim=dims, dtype=torch.float64),
                open=self.surrogate.is_open(h_seq).sum(dim=dims, dtype=torch.float64),
                surrogate_sum=self.surrogate.derivative(h_seq.float()).sum(
                    dim=dims, dtype=torch.float64
                ),
                neurons=h_seq[0].numel(),
            )
        self.stats_callback(self, stats, spikes)  # type: ignore[misc]

    def extra_repr(self) -> str:
        parts = [f"{k}={v}" for k, v in self.hyperparameters().items()]
        return ", ".join(parts)

    def hyperparameters(self) -> dict[str, Any]:
        """The constructor arguments that define this neuron, for repr and run records."""
        return {
            "tau": self.tau,
            "v_threshold": self.v_threshold,
            "surrogate": repr(self.surrogate),
            "step_mode": repr(self.step_mode),
            "detach_reset": self.detach_reset,
            "backend": repr(self.backend),
        }
