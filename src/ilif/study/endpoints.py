"""The pre-registered primary endpoints E1–E3 of the study, paired by seed and Holm-adjusted.

Firing ``f(neuron, γ)`` is the neuron-weighted mean firing rate over all spiking layers on the
whole validation split after the last epoch (``val_firing_rate`` of a cell); ``f₀`` the same
network's rate at step 0 (batch norm in training mode). Per seed ``s``:

- E1 = f_s(LIF, 4) − f_s(LIF, 0.25): does a wide surrogate overactivate LIF?
- E2 = [f_s(LIF, 4) − f_s(LIF, 0.25)] − [f_s(ILIF, 4) − f_s(ILIF, 0.25)]: does ILIF damp it?
- E3 = [f_s(ILIF, 1) − f₀_s(ILIF, 1)] − [f_s(LIF, 1) − f₀_s(LIF, 1)]: does training change
  ILIF's firing differently from LIF's?

Each is tested two-sided against 0 by a paired t-test over the seeds present in every cell it
needs, in the SGD arm and in the AdamW arm; Holm's adjustment runs over all six tests.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ilif.study.load import Results, number
from ilif.study.plan import NARROW, PAPER_WIDTH, WIDE
from ilif.study.stats import Paired, holm, paired_mde, paired_test, pairs_for_mde

ALPHA = 0.05
FAMILY = 6  # E1–E3 in two arms
POWER = 0.8
MDE_TARGET = 0.01  # firing rate, CIFAR-10
ARMS = (("primary-sgd", "SGD (the paper's recipe)"), ("primary-adamw", "AdamW (scale-free)"))


@dataclass(frozen=True)
class Endpoint:
    name: str
    question: str
    definition: str
    cells: tuple[tuple[str, float], ...]  # the (neuron, γ) cells it reads
    value: Callable[[Callable[[str, float], float], Callable[[str, float], float]], float]
    readings: tuple[str, str]  # what a value above 0, below 0 says, in words


ENDPOINTS = (
    Endpoint("E1", "does a wide surrogate overactivate LIF?",
             f"f(LIF, γ = {WIDE:g}) − f(LIF, γ = {NARROW:g})",
             (("lif", WIDE), ("lif", NARROW)),
             lambda f, f0: f("lif", WIDE) - f("lif", NARROW),
             (f"LIF fires more at γ = {WIDE:g} than at γ = {NARROW:g}",
              f"LIF fires less at γ = {WIDE:g} than at γ = {NARROW:g}, the opposite of "
              "overactivation by a wide surrogate")),
    Endpoint("E2", "is LIF's γ effect larger than ILIF's, the interaction?",
             f"[f(LIF, {WIDE:g}) − f(LIF, {NARROW:g})] − [f(ILIF, {WIDE:g}) − f(ILIF, "
             f"{NARROW:g})]",
             (("lif", WIDE), ("lif", NARROW), ("ilif", WIDE), ("ilif", NARROW)),
             lambda f, f0: (f("lif", WIDE) - f("lif", NARROW))
             - (f("ilif", WIDE) - f("ilif", NARROW)),
             (f"LIF's firing change from γ = {NARROW:g} to {WIDE:g} is above ILIF's",
              f"LIF's firing change from γ = {NARROW:g} to {WIDE:g} is below ILIF's")),
    Endpoint("E3", "does training move ILIF's firing differently from LIF's?",
             f"[f(ILIF, {PAPER_WIDTH:g}) − f₀(ILIF, {PAPER_WIDTH:g})] − "
             f"[f(LIF, {PAPER_WIDTH:g}) − f₀(LIF, {PAPER_WIDTH:g})]",
             (("ilif", PAPER_WIDTH), ("lif", PAPER_WIDTH)),
             lambda f, f0: (f("ilif", PAPER_WIDTH) - f0("ilif", PAPER_WIDTH))
             - (f("lif", PAPER_WIDTH) - f0("lif", PAPER_WIDTH)),
             ("from step 0 to the last epoch, ILIF's firing moves up relative to LIF's",
              "from step 0 to the last epoch, ILIF's firing moves down relative to LIF's")),
)


def by_seed(cells: Sequence[dict[str, Any]], key: str) -> dict[tuple[str, float, int], float]:
    """``key`` of every cell by (neuron, γ, seed)."""
    return {(c["neuron"], float(c["width"]), int(c["seed"])): number(c, key) for c in cells}


def endpoint_values(endpoint: Endpoint, cells: Sequence[dict[str, Any]]) -> dict[int, float]:
    """The endpoint's value for every seed that has all its cells (finite values only)."""
    firing, step0 = by_seed(cells, "val_firing_rate"), by_seed(cells, "step0_firing_rate")
    seeds = sorted({int(c["seed"]) for c in cells})
    out = {}
    for seed in seeds:
        def f(neuron: str, width: float, seed: int = seed) -> float:
            return firing.get((neuron, width, seed), math.nan)

        def f0(neuron: str, width: float, seed: int = seed) -> float:
            return step0.get((neuron, width, seed), math.nan)

        value = endpoint.value(f, f0)
        if math.isfinite(value):
            out[seed] = value
    return out


@dataclass(frozen=True)
class EndpointResult:
    endpoint: Endpoint
    arm: str
    values: dict[int, float]
    test: Paired
    p_holm: float = math.nan

    def mde(self, alpha: float = ALPHA / FAMILY, power: float = POWER) -> float:
        """The minimum detectable effect of this test from its observed paired SD."""
        if self.test.n < 2 or not math.isfinite(self.test.sd):
            return math.nan
        return paired_mde(self.test.sd, self.test.n, alpha, power)

    def pairs_for_target(self, target: float = MDE_TARGET, alpha: float = ALPHA / FAMILY,
                         power: float = POWER) -> int | None:
        """The pairs whose MDE at this test's observed paired SD is ``<= target`` (None before
        2 pairs, or beyond 1000)."""
        if self.test.n < 2 or not math.isfinite(self.test.sd):
            return None
        try:
            return pairs_for_mde(self.test.sd, target, alpha, power)
        except ValueError:
            return None


def analyse(results: Results) -> list[EndpointResult]:
    """E1–E3 in both arms (paired t-tests of the per-seed values against 0), Holm over all."""
    raw = []
    for arm, _ in ARMS:
        cells = results.part(arm)
        for endpoint in ENDPOINTS:
            values = endpoint_values(endpoint, cells)
            seeds = sorted(values)
            test = paired_test([values[s] for s in seeds], [0.0] * len(seeds))
            raw.append(EndpointResult(endpoint, arm, values, test))
    adjusted = holm([r.test.p for r in raw])
    return [EndpointResult(r.endpoint, r.arm, r.values, r.test, p)
            for r, p in zip(raw, adjusted, strict=True)]
