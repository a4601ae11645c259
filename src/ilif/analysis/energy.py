"""Operation counts and energy per inference of a spiking network, beside the same net as an ANN.

Counted by forward hooks on every ``nn.Conv1d/2d/3d`` and ``nn.Linear`` and on every ilif neuron,
for any model built from them (no per-model table). Per inference (one sample, T steps):

- ``FLOPs_l``: the multiply-accumulates of layer ``l`` for a dense input, one step
  (conv: ``out_elements · C_in/groups · ∏kernel``; linear: ``out_elements · in_features``; biases
  are not counted). The ANN is the same network run once: ``E_ANN = Σ_l FLOPs_l · E_MAC``.
- A layer whose input is **binary** (every value 0 or 1, read from the actual input tensor) is fed
  by spikes: ``SOP_l = r_in · T · FLOPs_l`` accumulates, ``r_in`` the measured share of non-zero
  inputs (docs/neurons.md, "Energy").
- A layer whose input is **real-valued** (the encoding layer, inputs after average pooling) costs
  ``r_in · T · FLOPs_l`` multiply-accumulates (MACs over its non-zero inputs, every step). With
  ``encoding_once=True`` the encoding layer (the first layer a sample enters) is counted once
  instead of T times, as for a repeated static image.
- Neuron-state updates per neuron per step, counted from each neuron's equations and stated by
  its class (:meth:`ilif.neurons.Neuron.operation_counts`): multiplies as MACs, adds and
  compares as accumulates, a sigmoid as ``sigmoid_macs`` MACs; operations gated by a spike
  (``S·θ``, ``S·σ(M)`` …) happen only when the neuron fires, so they are weighted by its
  measured firing rate.
- Optionally, state memory traffic: every state value is read and written once per neuron per step,
  at ``state_access_pj`` each (off by default).

``E_SNN = MACs · E_MAC + ACs · E_AC`` with the 45 nm constants (4.6 pJ, 0.9 pJ); the model is
described in docs/neurons.md, "Energy".
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ilif.monitors import neuron_layers
from ilif.neurons.base import Neuron, reset_net
from ilif.neurons.ops import NeuronOps

SYNAPTIC_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


@dataclass(frozen=True)
class EnergyConstants:
    """Energy per operation in picojoules (45 nm, Horowitz 2014) and counting options.

    ``sigmoid_macs``: a sigmoid's cost in MACs (4: a piecewise/polynomial approximation with one
    reciprocal). ``state_access_pj``: energy of one state read or write (None: not counted; about
    5 pJ for a 32-bit word in a small SRAM). ``encoding_once``: count the encoding layer once
    per inference instead of once per step.
    """

    mac_pj: float = 4.6
    ac_pj: float = 0.9
    sigmoid_macs: float = 4.0
    state_access_pj: float | None = None
    encoding_once: bool = False

    def __post_init__(self) -> None:
        for name in ("mac_pj", "ac_pj", "sigmoid_macs"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {name}={value!r}")
        if self.state_access_pj is not None and not (
            math.isfinite(self.state_access_pj) and self.state_access_pj >= 0
        ):
            raise ValueError(
                "state_access_pj must be None or >= 0, got "
                f"state_access_pj={self.state_access_pj!r}"
            )


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


@dataclass
class _SynapticCount:
    kind: str
    dense_macs: float = 0.0  # over every call
    effective: float = 0.0  # Σ r_in · dense MACs
    spike_calls: int = 0
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
        for name, neuron in neuron_layers(model).items():
            self.neurons[name] = _NeuronCount(kind=neuron.kind, ops=neuron_ops(neuron))
            self._handles.append(neuron.register_forward_hook(self._neuron_hook(name)))
        if not self.synapses:
            raise ValueError("EnergyMeter: the model holds no nn.Conv*d or nn.Linear layer")

    # ------------------------------------------------------------------------------- hooks
    def _on_model_start(self, module: nn.Module, inputs: tuple[Any, ...]) -> None:
        self._first_layer_pending = True

    def _on_model_end(self, module: nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
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
            if is_binary(x):
                count.spike_calls += 1
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

    def summary(self) -> dict[str, Any]:
        """Per-inference operation counts and energy (pJ), per layer (in the order of the
        forward pass) and in total."""
        if not self.samples:
            raise RuntimeError("EnergyMeter: no forward pass was measured")
        c, n, steps = self.constants, float(self.samples), self.time_steps()
        layers: list[dict[str, Any]] = []
        totals = {key: 0.0 for key in ("flops", "sops", "macs", "synaptic_pj", "neuron_macs",
                                       "neuron_acs", "neuron_pj", "memory_pj")}
        for name, s in self.synapses.items():
            if not (s.spike_calls or s.real_calls):
                continue
            spiking = s.real_calls == 0
            calls_per_step = 1.0 / steps if (s.encoding and c.encoding_once and not spiking) else 1
            flops = s.dense_macs / n / steps
            ops = s.effective / n * calls_per_step
            sops, macs = (ops, 0.0) if spiking else (0.0, ops)
            energy = sops * c.ac_pj + macs * c.mac_pj
            layers.append({
                "name": name, "type": s.kind, "input": "spikes" if spiking else "real",
                "encoding": s.encoding, "flops": flops,
                "input_rate": s.effective / s.dense_macs if s.dense_macs else 0.0,
                "sops": sops, "macs": macs, "energy_pj": energy, "ann_energy_pj": flops * c.mac_pj,
            })
            totals["flops"] += flops
            totals["sops"] += sops
            totals["macs"] += macs
            totals["synaptic_pj"] += energy
        for name, count in self.neurons.items():
            if not count.neuron_steps:
                continue
            rate = count.spikes / count.neuron_steps
            neuron_steps = count.neuron_steps / n
            mac, ac, sig = (v * neuron_steps for v in count.ops.per_step(rate))
            mac_total = mac + sig * c.sigmoid_macs
            energy = mac_total * c.mac_pj + ac * c.ac_pj
            memory = (
                2.0 * count.ops.state_values * neuron_steps * c.state_access_pj
                if c.state_access_pj is not None else 0.0
            )
            layers.append({
                "name": name, "type": count.kind, "input": "current", "encoding": False,
                "neurons": neuron_steps / steps, "firing_rate": rate, "macs": mac_total,
                "acs": ac, "sigmoids": sig, "state_values": count.ops.state_values,
                "energy_pj": energy, "memory_pj": memory, "ann_energy_pj": 0.0,
            })
            totals["neuron_macs"] += mac_total
            totals["neuron_acs"] += ac
            totals["neuron_pj"] += energy
            totals["memory_pj"] += memory
        layers.sort(key=lambda layer: self._order.get(layer["name"], len(self._order)))
        ann = totals["flops"] * c.mac_pj
        snn_synaptic = totals["synaptic_pj"]
        snn = snn_synaptic + totals["neuron_pj"] + totals["memory_pj"]
        return {
            "T": steps,
            "samples": self.samples,
            "constants": asdict(c),
            "flops": totals["flops"],
            "sops": totals["sops"],
            "synaptic_macs": totals["macs"],
            "neuron_macs": totals["neuron_macs"],
            "neuron_acs": totals["neuron_acs"],
            "synaptic_energy_pj": snn_synaptic,
            "neuron_energy_pj": totals["neuron_pj"],
            "memory_energy_pj": totals["memory_pj"],
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
