"""Operation counts and energy per inference of a spiking network, beside the same net as an ANN.

Counted by forward hooks on every ``nn.Conv1d/2d/3d`` and ``nn.Linear`` and on every ilif neuron,
for any model built from them (no per-model table). Per inference (one sample, T steps):

- ``FLOPs_l``: the multiply-accumulates of layer ``l`` for a dense input, one step
  (conv: ``out_elements · C_in/groups · ∏kernel``; linear: ``out_elements · in_features``; biases
  are not counted). The ANN is the same network run once: ``E_ANN = Σ_l FLOPs_l · E_MAC``.
- A layer whose input is **binary** (every value 0 or 1, read from the actual input tensor) is fed
  by spikes: ``SOP_l = r_in · T · FLOPs_l`` accumulates, ``r_in`` the measured share of non-zero
  inputs (docs/neurons.md, "Energy").
- A layer fed by spikes through a linear map (average pooling, zero padding, flattening, dropout
  in evaluation) is still **spike-fed** (docs/analysis.md, "Energy"). Two implementations are
  counted and the cheaper one is charged: event-driven, every spike entering the map adds its
  weight into the layer, ``SOP_l = (spike-window incidences) · FLOPs_l / (inputs of the layer)``,
  i.e. ``r · k² · T · FLOPs_l`` after a non-overlapping k×k pool; pool-first, MACs over the
  non-zero pooled values, ``r_pooled · T · FLOPs_l``. A chip without graded inputs
  (``graded_inputs=False``) has only the event-driven one.
- A layer whose input is **real-valued** (the encoding layer) costs ``r_in · T · FLOPs_l``
  multiply-accumulates (MACs over its non-zero inputs, every step). With ``encoding_once=True``
  the encoding layer (the first layer a sample enters) is counted once instead of T times, as for
  a repeated static image.
- Neuron-state updates per neuron per step, counted from each neuron's equations and stated by
  its class (:meth:`ilif.neurons.Neuron.operation_counts`): multiplies as MACs, adds and
  compares as accumulates, a sigmoid as ``sigmoid_macs`` MACs; operations gated by a spike
  (``S·θ``, ``S·σ(M)`` …) happen only when the neuron fires, so they are weighted by its
  measured firing rate.
- Optionally, state memory traffic: every state value is read and written once per neuron per step,
  at ``state_access_pj`` each (off by default).

``E_SNN = MACs · E_MAC + ACs · E_AC`` with the 45 nm constants (4.6 pJ, 0.9 pJ, Horowitz 2014;
docs/neurons.md, "Energy"); the ``loihi`` preset (:data:`ENERGY_PRESETS`) charges the published
per-operation energies of a neuromorphic chip instead (docs/analysis.md).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ilif.monitors import neuron_layers
from ilif.neurons.base import Neuron, reset_net
from ilif.neurons.ops import NeuronOps

SYNAPTIC_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
AVG_POOLS = (nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d)
ADAPTIVE_POOLS = (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d)
ZERO_PADS = (nn.ZeroPad1d, nn.ZeroPad2d, nn.ZeroPad3d, nn.ConstantPad1d, nn.ConstantPad2d,
             nn.ConstantPad3d)
# Maps that reshape or scale spikes without mixing them (flatten, dropout in evaluation,
# identity) need no hook: the layer behind them is matched by value to the map's input.


@dataclass(frozen=True)
class EnergyConstants:
    """Energy per operation in picojoules and counting options (default: 45 nm, Horowitz 2014).

    ``sigmoid_macs``: a sigmoid's cost in MACs (4: a piecewise/polynomial approximation with one
    reciprocal). ``state_access_pj``: energy of one state read or write (None: not counted; about
    5 pJ for a 32-bit word in a small SRAM). ``encoding_once``: count the encoding layer once
    per inference instead of once per step. ``graded_inputs``: the hardware can feed real values
    into a synaptic layer (False: a layer reading pooled spikes runs event-driven only).
    ``neuron_update_pj`` / ``neuron_active_pj``: when set, a neuron-state update is charged as on
    a neuromorphic chip, ``state values × (E_update + r · (E_active − E_update))`` per neuron and
    step (each state value one compartment update; ``r`` the firing rate), instead of its counted
    MACs and accumulates. ``spike_pj``: energy of routing one emitted spike.
    """

    mac_pj: float = 4.6
    ac_pj: float = 0.9
    sigmoid_macs: float = 4.0
    state_access_pj: float | None = None
    encoding_once: bool = False
    name: str = "45nm"
    graded_inputs: bool = True
    neuron_update_pj: float | None = None
    neuron_active_pj: float | None = None
    spike_pj: float = 0.0

    def __post_init__(self) -> None:
        for name in ("mac_pj", "ac_pj", "sigmoid_macs", "spike_pj"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {name}={value!r}")
        for name in ("state_access_pj", "neuron_update_pj", "neuron_active_pj"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be None or >= 0, got {name}={value!r}")
        if (self.neuron_update_pj is None) != (self.neuron_active_pj is None):
            raise ValueError("neuron_update_pj and neuron_active_pj are set together (both or "
                             f"neither), got {self.neuron_update_pj!r} and "
                             f"{self.neuron_active_pj!r}")

    def neuron_step_pj(self, ops: NeuronOps, rate: float) -> float:
        """Energy of one neuron for one step at firing rate ``rate`` (spike routing excluded)."""
        if self.neuron_update_pj is not None and self.neuron_active_pj is not None:
            return ops.state_values * (
                self.neuron_update_pj + rate * (self.neuron_active_pj - self.neuron_update_pj))
        mac, ac, sig = ops.per_step(rate)
        return (mac + sig * self.sigmoid_macs) * self.mac_pj + ac * self.ac_pj


# Intel Loihi (14 nm), Davies et al., "Loihi: a neuromorphic manycore processor with on-chip
# learning", IEEE Micro 38(1), 2018, Table 2 (pre-silicon circuit simulation): 23.6 pJ per
# synaptic spike op (min), 81 / 52 pJ per neuron update (active / inactive), 1.7 pJ per spike
# within a tile. Loihi has no graded inputs (a pooled layer runs event-driven); the encoding
# layer's MACs are charged at the 45 nm 4.6 pJ (computed off the chip).
ENERGY_PRESETS: dict[str, EnergyConstants] = {
    "45nm": EnergyConstants(),
    "loihi": EnergyConstants(
        name="loihi", mac_pj=4.6, ac_pj=23.6, graded_inputs=False, neuron_update_pj=52.0,
        neuron_active_pj=81.0, spike_pj=1.7,
    ),
}


def energy_preset(name: str, **changes: Any) -> EnergyConstants:
    """The preset ``name`` of :data:`ENERGY_PRESETS`, with ``changes`` applied."""
    if name not in ENERGY_PRESETS:
        raise ValueError(f"unknown energy preset {name!r}; valid presets: "
                         f"{', '.join(ENERGY_PRESETS)}")
    return replace(ENERGY_PRESETS[name], **changes) if changes else ENERGY_PRESETS[name]


def break_even_rate(extra_pj_per_neuron_step: float, fan_out: float, ac_pj: float) -> float:
    """The firing-rate reduction at which a neuron's extra update cost pays for itself.

    ``Δr* = ΔE / (fan-out · E_AC)``: one spike fewer saves ``fan-out`` accumulates, so a neuron
    whose update costs ``ΔE`` more per step must fire ``Δr*`` spikes per step less to break even
    (docs/analysis.md, "Break-even").
    """
    if not (fan_out > 0 and ac_pj > 0):
        raise ValueError(f"fan_out and ac_pj must be > 0, got fan_out={fan_out!r}, "
                         f"ac_pj={ac_pj!r}")
    return extra_pj_per_neuron_step / (fan_out * ac_pj)


def break_even(base: dict[str, Any], other: dict[str, Any]) -> dict[str, float]:
    """Break-even of ``other`` (e.g. ILIF) against ``base`` (e.g. LIF) from two
    :meth:`EnergyMeter.summary` results of the same network and constants: the extra neuron
    energy per neuron-step, the fan-out (synaptic operations per spike) and ``Δr*``; also the
    measured rate reduction ``Δr = r_base − r_other``."""
    steps_b, steps_o = base.get("neuron_steps") or 0.0, other.get("neuron_steps") or 0.0
    if not (steps_b and steps_o):
        raise ValueError("break_even: a summary without neuron steps (no neuron layer measured)")
    extra = other["neuron_energy_pj"] / steps_o - base["neuron_energy_pj"] / steps_b
    fans = [s["synaptic_fan_out"] for s in (base, other) if s.get("synaptic_fan_out")]
    fan_out = sum(fans) / len(fans) if fans else math.nan
    ac_pj = float(other["constants"]["ac_pj"])
    rate_b, rate_o = base["spikes"] / steps_b, other["spikes"] / steps_o
    return {
        "extra_pj_per_neuron_step": extra, "fan_out": fan_out,
        "break_even_rate": break_even_rate(extra, fan_out, ac_pj) if fans else math.nan,
        "rate_reduction": rate_b - rate_o,
    }


def neuron_ops(neuron: Neuron) -> NeuronOps:
    """The per-step operation count of ``neuron``: the class states it from its equations
    (:meth:`ilif.neurons.Neuron.operation_counts`; the counts of every neuron are tabled in
    docs/neurons.md, "Energy")."""
    try:
        return neuron.operation_counts()
    except NotImplementedError as err:
        raise ValueError(f"EnergyMeter: {err}") from None


def dense_macs(layer: nn.Module, output: Tensor) -> int:
    """Multiply-accumulates of one call of a conv/linear layer on a dense input."""
    if isinstance(layer, nn.Linear):
        return output.numel() * layer.in_features
    fan_in = layer.in_channels // layer.groups * math.prod(layer.kernel_size)  # type: ignore[union-attr]
    return output.numel() * fan_in


def _window_sizes(size: int, out: int | None) -> list[int]:
    """Window lengths of an adaptive pool along one dimension (PyTorch's start/end rule)."""
    out = size if out is None else int(out)
    return [math.ceil((i + 1) * size / out) - (i * size) // out for i in range(out)]


def sum_pool(module: nn.Module, counts: Tensor) -> Tensor:
    """``counts`` (spikes per input element) summed over every window of the average pool
    ``module``: the spikes each pooled value aggregates (an element in two windows counts twice).
    """
    if isinstance(module, AVG_POOLS):
        dims = {nn.AvgPool1d: 1, nn.AvgPool2d: 2, nn.AvgPool3d: 3}[type(module)]

        def tup(v: Any) -> tuple[int, ...]:
            return tuple(v) if isinstance(v, (tuple, list)) else (v,) * dims

        kernel, pad = tup(module.kernel_size), tup(module.padding)
        stride = tup(module.stride if module.stride is not None else module.kernel_size)
        x = counts.unsqueeze(-2) if dims == 1 else counts  # 1-d as 2-d with a height of 1
        if dims == 1:
            kernel, stride, pad = (1, *kernel), (1, *stride), (0, *pad)
        pool = F.avg_pool3d if dims == 3 else F.avg_pool2d
        y = pool(x, kernel, stride, pad, ceil_mode=module.ceil_mode, divisor_override=1)
        return y.squeeze(-2) if dims == 1 else y
    if isinstance(module, ADAPTIVE_POOLS):
        dims = {nn.AdaptiveAvgPool1d: 1, nn.AdaptiveAvgPool2d: 2, nn.AdaptiveAvgPool3d: 3}[
            type(module)]
        out = module.output_size
        out = tuple(out) if isinstance(out, (tuple, list)) else (out,) * dims
        y = F.adaptive_avg_pool1d if dims == 1 else (
            F.adaptive_avg_pool2d if dims == 2 else F.adaptive_avg_pool3d)
        pooled = y(counts, out)
        sizes = torch.ones((), dtype=counts.dtype)
        for axis, (size, o) in enumerate(zip(counts.shape[-dims:], out, strict=True)):
            shape = [1] * dims
            shape[axis] = -1
            sizes = sizes * torch.tensor(_window_sizes(size, o), dtype=counts.dtype).view(shape)
        return pooled * sizes
    raise TypeError(f"sum_pool: not an average pool: {type(module).__name__}")


@dataclass
class _SynapticCount:
    kind: str
    dense_macs: float = 0.0  # over every call
    effective: float = 0.0  # Σ r_in · dense MACs (MACs over the non-zero inputs)
    event: float = 0.0  # Σ spike incidences · dense MACs / inputs (event-driven SOPs)
    spike_calls: int = 0
    pooled_calls: int = 0
    real_calls: int = 0
    encoding: bool = False


@dataclass
class _NeuronCount:
    kind: str
    ops: NeuronOps
    neuron_steps: float = 0.0
    spikes: float = 0.0
    steps: int = 0


def is_binary(x: Tensor) -> bool:
    """True when every value of ``x`` is 0 or 1 (a spike tensor)."""
    return bool(((x == 0) | (x == 1)).all())


class EnergyMeter:
    """Count operations by forward hooks while the model runs; :meth:`summary` per inference.

    Usage::

        with EnergyMeter(model) as meter, torch.no_grad():
            model(x)
        meter.summary()["snn_energy_pj"]

    The number of samples and T come from the model output ``[T, N, classes]`` (``time_dim=0``,
    ``batch_dim=1``); pass ``time_dim=None`` for an output ``[N, classes]`` (T is then read from
    the neurons' multi-step inputs).
    """

    def __init__(
        self,
        model: nn.Module,
        constants: EnergyConstants | None = None,
        time_dim: int | None = 0,
        batch_dim: int = 1,
    ) -> None:
        self.constants = constants or EnergyConstants()
        self.time_dim, self.batch_dim = time_dim, batch_dim
        self.synapses: dict[str, _SynapticCount] = {}
        self.neurons: dict[str, _NeuronCount] = {}
        self.samples = 0
        self.steps = 0
        self._first_layer_pending = False
        self._order: dict[str, int] = {}  # layer -> position of its first call
        self._handles = [
            model.register_forward_pre_hook(self._on_model_start),
            model.register_forward_hook(self._on_model_end),
        ]
        for name, module in model.named_modules():
            if isinstance(module, SYNAPTIC_LAYERS):
                kind = type(module).__name__
                self.synapses[name] = _SynapticCount(kind=kind)
                self._handles.append(module.register_forward_hook(self._synapse_hook(name)))
        # outputs of linear maps of spikes in this forward pass: (values, spikes per element)
        self._fed: list[tuple[Tensor, Tensor]] = []
        for module in model.modules():
            if isinstance(module, AVG_POOLS + ADAPTIVE_POOLS + ZERO_PADS):
                self._handles.append(module.register_forward_hook(self._map_hook))
        for name, neuron in neuron_layers(model).items():
            self.neurons[name] = _NeuronCount(kind=neuron.kind, ops=neuron_ops(neuron))
            self._handles.append(neuron.register_forward_hook(self._neuron_hook(name)))
        if not self.synapses:
            raise ValueError("EnergyMeter: the model holds no nn.Conv*d or nn.Linear layer")

    # ------------------------------------------------------------------------------- hooks
    def _on_model_start(self, module: nn.Module, inputs: tuple[Any, ...]) -> None:
        self._first_layer_pending = True
        self._fed = []

    def _spike_counts(self, x: Tensor) -> Tensor | None:
        """Spikes per element of ``x``: its indicator when ``x`` is binary, the counts of a
        linear map of spikes it equals (a reshaped or copied view of it), else None."""
        mapped = self._mapped_counts(x)
        if mapped is None and is_binary(x):
            return (x != 0).to(torch.float64)
        return mapped

    def _mapped_counts(self, x: Tensor) -> Tensor | None:
        """The spike counts of the linear map of spikes whose output ``x`` equals, or None."""
        flat = x.detach().reshape(-1)
        for values, counts in reversed(self._fed):
            if values.numel() == flat.numel() and torch.equal(values.reshape(-1), flat):
                return counts.reshape(x.shape)
        return None

    def _map_hook(self, module: nn.Module, inputs: tuple[Any, ...], output: Tensor) -> None:
        if not isinstance(output, Tensor):
            return
        counts = self._spike_counts(inputs[0])
        if counts is None:
            return
        if isinstance(module, ZERO_PADS):
            if float(getattr(module, "value", 0.0)) != 0.0:
                return
            mapped = F.pad(counts, module.padding)
        else:
            mapped = sum_pool(module, counts)
        self._fed.append((output.detach(), mapped))

    def _on_model_end(self, module: nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
        self._fed = []  # the meter keeps no tensor between passes
        out = output[0] if isinstance(output, (tuple, list)) else output
        if not isinstance(out, Tensor):
            raise TypeError("EnergyMeter: the model output must be a tensor [T, N, classes]")
        if self.time_dim is None:
            self.samples += int(out.shape[0])
        else:
            self.samples += int(out.shape[self.batch_dim])
            self.steps = max(self.steps, int(out.shape[self.time_dim]))

    def _synapse_hook(self, name: str):
        def hook(module: nn.Module, inputs: tuple[Any, ...], output: Tensor) -> None:
            x = inputs[0]
            count = self.synapses[name]
            self._order.setdefault(name, len(self._order))
            macs = dense_macs(module, output)
            rate = float(torch.count_nonzero(x)) / max(x.numel(), 1)
            count.dense_macs += macs
            count.effective += rate * macs
            counts = self._mapped_counts(x)
            if counts is not None:  # spikes through pooling/padding: each incidence feeds the
                count.pooled_calls += 1  # layer's average fan-out per input
                count.event += float(counts.sum()) * macs / max(x.numel(), 1)
            elif is_binary(x):
                count.spike_calls += 1
                count.event += rate * macs
            else:
                count.real_calls += 1
            if self._first_layer_pending:
                count.encoding = True
                self._first_layer_pending = False

        return hook

    def _neuron_hook(self, name: str):
        def hook(module: nn.Module, inputs: tuple[Any, ...], output: Tensor) -> None:
            count = self.neurons[name]
            self._order.setdefault(name, len(self._order))
            count.neuron_steps += output.numel()
            count.spikes += float(output.detach().sum(dtype=torch.float64))
            if module.step_mode == "m":  # type: ignore[attr-defined]
                count.steps = max(count.steps, int(output.shape[0]))

        return hook

    # ------------------------------------------------------------------------------- reading
    def reset(self) -> None:
        """Clear the counts."""
        for name, count in self.synapses.items():
            self.synapses[name] = _SynapticCount(kind=count.kind)
        for name, count in self.neurons.items():
            self.neurons[name] = _NeuronCount(kind=count.kind, ops=count.ops)
        self.samples = self.steps = 0
        self._order = {}

    def time_steps(self) -> int:
        """T: from the model output, else from the neurons' multi-step inputs (1 if unknown)."""
        steps = self.steps or max((c.steps for c in self.neurons.values()), default=0)
        return max(steps, 1)

    def summary(self, constants: EnergyConstants | None = None) -> dict[str, Any]:
        """Per-inference operation counts and energy (pJ), per layer (in the order of the
        forward pass) and in total; ``constants`` replaces the meter's (the counts are the
        same under every preset)."""
        if not self.samples:
            raise RuntimeError("EnergyMeter: no forward pass was measured")
        c, n, steps = constants or self.constants, float(self.samples), self.time_steps()
        layers: list[dict[str, Any]] = []
        totals = {key: 0.0 for key in (
            "flops", "sops", "macs", "synaptic_pj", "neuron_macs", "neuron_acs", "neuron_pj",
            "memory_pj", "event_sops", "pool_first_macs", "spikes", "neuron_steps", "spike_pj")}
        for name, s in self.synapses.items():
            if not (s.spike_calls or s.pooled_calls or s.real_calls):
                continue
            flops = s.dense_macs / n / steps
            layer: dict[str, Any] = {
                "name": name, "type": s.kind, "encoding": s.encoding, "flops": flops,
                "input_rate": s.effective / s.dense_macs if s.dense_macs else 0.0,
                "ann_energy_pj": flops * c.mac_pj,
            }
            if s.real_calls:  # real-valued input: MACs over its non-zero inputs
                per_step = 1.0 / steps if (s.encoding and c.encoding_once) else 1.0
                sops, macs = 0.0, s.effective / n * per_step
                layer["input"] = "real"
            elif s.pooled_calls:  # spikes through a linear map: the cheaper implementation
                event, pool_first = s.event / n, s.effective / n
                cheaper = c.graded_inputs and pool_first * c.mac_pj < event * c.ac_pj
                sops, macs = (0.0, pool_first) if cheaper else (event, 0.0)
                layer.update(input="pooled spikes", sops_event_driven=event,
                             macs_pool_first=pool_first,
                             implementation="pool-first" if cheaper else "event-driven")
                totals["event_sops"] += event
                totals["pool_first_macs"] += pool_first
            else:  # spikes
                sops, macs = s.effective / n, 0.0
                layer.update(input="spikes", sops_event_driven=sops,
                             implementation="event-driven")
                totals["event_sops"] += sops
            energy = sops * c.ac_pj + macs * c.mac_pj
            layer.update(sops=sops, macs=macs, energy_pj=energy)
            layers.append(layer)
            totals["flops"] += flops
            totals["sops"] += sops
            totals["macs"] += macs
            totals["synaptic_pj"] += energy
        for name, count in self.neurons.items():
            if not count.neuron_steps:
                continue
            rate = count.spikes / count.neuron_steps
            neuron_steps = count.neuron_steps / n
            spikes = count.spikes / n
            mac, ac, sig = (v * neuron_steps for v in count.ops.per_step(rate))
            mac_total = mac + sig * c.sigmoid_macs
            energy = c.neuron_step_pj(count.ops, rate) * neuron_steps
            memory = (
                2.0 * count.ops.state_values * neuron_steps * c.state_access_pj
                if c.state_access_pj is not None else 0.0
            )
            routing = spikes * c.spike_pj
            layers.append({
                "name": name, "type": count.kind, "input": "current", "encoding": False,
                "neurons": neuron_steps / steps, "firing_rate": rate, "macs": mac_total,
                "acs": ac, "sigmoids": sig, "state_values": count.ops.state_values,
                "spikes": spikes, "energy_pj": energy, "memory_pj": memory,
                "spike_pj": routing, "ann_energy_pj": 0.0,
            })
            totals["neuron_macs"] += mac_total
            totals["neuron_acs"] += ac
            totals["neuron_pj"] += energy
            totals["memory_pj"] += memory
            totals["spikes"] += spikes
            totals["neuron_steps"] += neuron_steps
            totals["spike_pj"] += routing
        layers.sort(key=lambda layer: self._order.get(layer["name"], len(self._order)))
        ann = totals["flops"] * c.mac_pj
        snn_synaptic = totals["synaptic_pj"]
        snn = snn_synaptic + totals["neuron_pj"] + totals["memory_pj"] + totals["spike_pj"]
        return {
            "T": steps,
            "samples": self.samples,
            "constants": asdict(c),
            "preset": c.name,
            "flops": totals["flops"],
            "sops": totals["sops"],
            "sops_event_driven": totals["event_sops"],
            "pool_first_macs": totals["pool_first_macs"],
            "synaptic_macs": totals["macs"],
            "neuron_macs": totals["neuron_macs"],
            "neuron_acs": totals["neuron_acs"],
            "spikes": totals["spikes"],
            "neuron_steps": totals["neuron_steps"],
            "synaptic_fan_out": (totals["event_sops"] / totals["spikes"]
                                 if totals["spikes"] else math.nan),
            "synaptic_energy_pj": snn_synaptic,
            "neuron_energy_pj": totals["neuron_pj"],
            "memory_energy_pj": totals["memory_pj"],
            "spike_energy_pj": totals["spike_pj"],
            "snn_energy_pj": snn,
            "ann_energy_pj": ann,
            "energy_ratio": snn / ann if ann else math.nan,
            "synaptic_energy_ratio": snn_synaptic / ann if ann else math.nan,
            "layers": layers,
        }

    def close(self) -> None:
        """Remove every hook."""
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def __enter__(self) -> EnergyMeter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def measure_energy(
    model: nn.Module,
    batches: Iterable[Any],
    constants: EnergyConstants | None = None,
    max_batches: int | None = None,
    device: torch.device | str | None = None,
) -> dict[str, Any]:
    """Run ``model`` (eval mode, no gradient) over ``batches`` (tensors or ``(x, y)`` pairs) and
    return :meth:`EnergyMeter.summary` per inference. The model's mode is restored after."""
    was_training = model.training
    model.eval()
    try:
        with EnergyMeter(model, constants) as meter, torch.no_grad():
            for index, batch in enumerate(batches):
                if max_batches is not None and index >= max_batches:
                    break
                x = batch[0] if isinstance(batch, (tuple, list)) else batch
                if device is not None:
                    x = x.to(device)
                reset_net(model)
                model(x)
            return meter.summary()
    finally:
        model.train(was_training)


def structural_fan_out(model: nn.Module, x: Tensor) -> float:
    """Synaptic operations per spike of ``model`` when every neuron fires at every step (each
    neuron weighted equally): the fan-out of the break-even rate that does not depend on where
    the network fires. ``x``: one input batch (its values do not matter)."""
    from ilif.monitors import neuron_layers

    handles = [n.register_forward_hook(lambda m, i, out: torch.ones_like(out))
               for n in neuron_layers(model).values()]
    try:
        summary = measure_energy(model, [x])
    finally:
        for handle in handles:
            handle.remove()
    return summary["synaptic_fan_out"]
