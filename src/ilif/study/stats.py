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


# ------------------------------------------------------------------- paired inference (primary)
def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the regularised incomplete beta function (modified Lentz)."""
    tiny, qab, qap, qam = 1e-300, a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 400):
        m2 = 2 * m
        for aa in (m * (b - m) * x / ((qam + m2) * (a + m2)),
                   -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))):
            d = 1.0 + aa * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + aa / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-15:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """The regularised incomplete beta function ``I_x(a, b)``."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
                     + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    """Student's t distribution function with ``df`` degrees of freedom."""
    tail = 0.5 * betainc(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t >= 0 else tail


def t_ppf(q: float, df: float) -> float:
    """The ``q`` quantile of Student's t (bisection on :func:`t_cdf`, to 1e-12)."""
    if not 0.0 < q < 1.0:
        raise ValueError(f"q must lie in (0, 1), got q={q!r}")
    lo, hi = -1.0, 1.0
    while t_cdf(lo, df) > q:
        lo *= 2.0
    while t_cdf(hi, df) < q:
        hi *= 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if t_cdf(mid, df) < q:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-12:
            break
    return 0.5 * (lo + hi)


@dataclass(frozen=True)
class Paired:
    """A paired comparison: ``d_i = a_i − b_i`` over ``n`` pairs (seeds)."""

    n: int
    mean: float  # mean difference d̄
    sd: float  # sample standard deviation of the differences
    t: float
    p: float  # two-sided
    ci_low: float
    ci_high: float
    level: float = 0.95

    @property
    def se(self) -> float:
        return self.sd / math.sqrt(self.n) if self.n else math.nan


def paired_test(a: Sequence[float], b: Sequence[float], level: float = 0.95) -> Paired:
    """Two-sided paired t-test of ``a`` against ``b`` and the ``level`` confidence interval of
    the mean difference: ``t = d̄ / (s_d / √n)`` on ``n − 1`` degrees of freedom,
    ``CI = d̄ ± t_{(1+level)/2, n−1} · s_d / √n``. Pairs with a non-finite side are dropped;
    fewer than 2 pairs give NaN statistics."""
    diffs = [x - y for x, y in zip(a, b, strict=True) if math.isfinite(x) and math.isfinite(y)]
    n = len(diffs)
    if n < 2:
        mean = diffs[0] if diffs else math.nan
        return Paired(n, mean, math.nan, math.nan, math.nan, math.nan, math.nan, level)
    mean = sum(diffs) / n
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (n - 1))
    se = sd / math.sqrt(n)
    half = t_ppf(0.5 + level / 2.0, n - 1) * se
    if se == 0.0:
        t, p = (math.copysign(math.inf, mean), 0.0) if mean else (math.nan, 1.0)
    else:
        t = mean / se
        p = 2.0 * (1.0 - t_cdf(abs(t), n - 1))
    return Paired(n, mean, sd, t, p, mean - half, mean + half, level)


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (family-wise error), in the input order:
    ``p̃_(i) = max_{j ≤ i} min(1, (m − j + 1) · p_(j))`` over the sorted p-values; NaN stays
    NaN and does not count in ``m``."""
    finite = [(p, i) for i, p in enumerate(pvalues) if math.isfinite(p)]
    m = len(finite)
    out = [math.nan] * len(pvalues)
    running = 0.0
    for rank, (p, index) in enumerate(sorted(finite)):
        running = max(running, min(1.0, (m - rank) * p))
        out[index] = running
    return out


def paired_mde(sd: float, n: int, alpha: float = 0.05, power: float = 0.8,
               method: str = "t") -> float:
    """Minimum detectable mean difference of a two-sided paired test of ``n`` pairs whose
    differences have standard deviation ``sd``: ``(q_{1−α/2} + q_{power}) · sd / √n``, with
    ``q`` Student's t quantiles on ``n − 1`` degrees of freedom (``method="t"``: the usual
    central-t approximation to the noncentral-t power) or normal quantiles (``"normal"``)."""
    if n < 2:
        raise ValueError(f"n must be >= 2 pairs, got n={n!r}")
    if method == "t":
        q = t_ppf(1.0 - alpha / 2.0, n - 1) + t_ppf(power, n - 1)
    elif method == "normal":
        from statistics import NormalDist

        q = NormalDist().inv_cdf(1.0 - alpha / 2.0) + NormalDist().inv_cdf(power)
    else:
        raise ValueError(f"method must be 't' or 'normal', got method={method!r}")
    return q * sd / math.sqrt(n)


def pairs_for_mde(sd: float, target: float, alpha: float = 0.05, power: float = 0.8,
                  max_pairs: int = 1000) -> int:
    """The smallest number of pairs whose :func:`paired_mde` (t method) is ``<= target``."""
    if not (sd >= 0 and target > 0):
        raise ValueError(f"need sd >= 0 and target > 0, got sd={sd!r}, target={target!r}")
    for n in range(2, max_pairs + 1):
        if paired_mde(sd, n, alpha, power) <= target:
            return n
    raise ValueError(f"more than {max_pairs} pairs needed for an MDE of {target}")


def accuracy_mde(accuracy: float, images: int, pairs: int = 1, alpha: float = 0.05,
                 power: float = 0.8) -> float:
    """Minimum detectable difference of two test accuracies near ``accuracy`` from the test
    images' binomial noise alone (normal approximation; seed-to-seed variation comes on top):
    ``(z_{1−α/2} + z_{power}) · √(2 p (1 − p) / images) / √pairs``."""
    from statistics import NormalDist

    if not (0.0 <= accuracy <= 1.0 and images > 0 and pairs > 0):
        raise ValueError(f"need 0 <= accuracy <= 1, images > 0, pairs > 0; got "
                         f"accuracy={accuracy!r}, images={images!r}, pairs={pairs!r}")
    z = NormalDist().inv_cdf(1.0 - alpha / 2.0) + NormalDist().inv_cdf(power)
    return z * math.sqrt(2.0 * accuracy * (1.0 - accuracy) / images) / math.sqrt(pairs)
