"""Statistics of the study's primary endpoints (docs/results.md): the paired t-test with the
confidence interval of the mean paired difference, Holm's adjustment, and the minimum detectable
effects of a paired design and of a test accuracy. Student's t distribution is computed here
(regularised incomplete beta), so the package needs no statistics library.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


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
