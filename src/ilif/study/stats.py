"""Seed statistics and comparisons of the study: mean ± std, and whether a difference exceeds
the seed noise.

A difference of two means ``Δ = m_a − m_b`` counts as beyond seed noise when
``|Δ| > 2·SE`` with ``SE = √(s_a²/n_a + s_b²/n_b)`` (sample standard deviations over seeds);
with a single seed on either side the noise is not estimated and no such claim is made.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ilif.analysis.report import mean_std

NOISE_FACTOR = 2.0


def values(cells: Iterable[dict[str, Any]], key: str, scale: float = 1.0) -> list[float]:
    """The finite values of ``key`` in ``cells``, times ``scale``."""
    out = []
    for cell in cells:
        value = cell.get(key)
        if isinstance(value, int | float) and math.isfinite(float(value)):
            out.append(float(value) * scale)
    return out


def fmt_mean_std(numbers: Sequence[float], digits: int) -> str:
    """``mean ± std`` (sample std) for several values, the value for one, ``–`` for none."""
    mean, std, n = mean_std(list(numbers))
    if n == 0:
        return "–"
    if n == 1:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


@dataclass(frozen=True)
class Comparison:
    """``a`` against ``b``: means, counts, difference and its standard error."""

    mean_a: float
    mean_b: float
    n_a: int
    n_b: int
    diff: float
    se: float

    @property
    def known(self) -> bool:
        return self.n_a > 0 and self.n_b > 0

    @property
    def noise_estimated(self) -> bool:
        return self.n_a > 1 and self.n_b > 1

    @property
    def beyond_noise(self) -> bool:
        """|Δ| > 2·SE (False where the noise is not estimated)."""
        return self.noise_estimated and abs(self.diff) > NOISE_FACTOR * self.se

    def verdict(self, higher: str = "higher", lower: str = "lower") -> str:
        """The direction, and whether it is beyond seed noise (or the noise is not estimated)."""
        if not self.known:
            return "not measured"
        direction = higher if self.diff > 0 else lower
        if not self.noise_estimated:
            return f"{direction} (one seed: noise not estimated)"
        if self.beyond_noise:
            return f"{direction}, beyond seed noise"
        return f"{direction}, within seed noise"


def compare(a: Sequence[float], b: Sequence[float]) -> Comparison:
    """The comparison of samples ``a`` and ``b`` (finite values only)."""
    mean_a, std_a, n_a = mean_std(list(a))
    mean_b, std_b, n_b = mean_std(list(b))
    if n_a == 0 or n_b == 0:
        return Comparison(mean_a, mean_b, n_a, n_b, math.nan, math.nan)
    se = math.sqrt((std_a**2 / n_a if n_a > 1 else 0.0) + (std_b**2 / n_b if n_b > 1 else 0.0))
    return Comparison(mean_a, mean_b, n_a, n_b, mean_a - mean_b, se)


def spearman(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Spearman rank correlation of two equally long sequences without ties (NaN if < 3)."""
    if len(xs) != len(ys) or len(xs) < 3:
        return math.nan

    def ranks(seq: Sequence[float]) -> list[float]:
        order = sorted(range(len(seq)), key=lambda i: seq[i])
        out = [0.0] * len(seq)
        for rank, index in enumerate(order):
            out[index] = float(rank)
        return out

    rx, ry = ranks(xs), ranks(ys)
    n = len(xs)
    d2 = sum((a - b) ** 2 for a, b in zip(rx, ry, strict=True))
    return 1.0 - 6.0 * d2 / (n * (n * n - 1))
