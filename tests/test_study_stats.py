"""Paired t-test, confidence interval, Holm and the minimum detectable effects against
hand-computed values (and scipy as an oracle where it is installed)."""

from __future__ import annotations

import math

import pytest

from ilif.study.stats import (
    accuracy_mde,
    holm,
    paired_mde,
    paired_test,
    pairs_for_mde,
    t_cdf,
    t_ppf,
)


def test_paired_test_against_hand_values() -> None:
    """d = (1, 2, 3, 4): d̄ = 2.5, s_d = √(5/3) = 1.290994, SE = 0.645497, t = 3.872983 on 3
    degrees of freedom; t_{0.975,3} = 3.182446 (table), so CI = 2.5 ± 2.054261."""
    a, b = [11.0, 12.0, 13.0, 14.0], [10.0, 10.0, 10.0, 10.0]
    r = paired_test(a, b)
    assert r.n == 4 and r.mean == pytest.approx(2.5)
    assert r.sd == pytest.approx(math.sqrt(5 / 3)) and r.se == pytest.approx(0.6454972)
    assert r.t == pytest.approx(3.8729833)
    assert r.ci_low == pytest.approx(2.5 - 2.054261, abs=1e-6)
    assert r.ci_high == pytest.approx(2.5 + 2.054261, abs=1e-6)
    # P(|T_3| > 3.8730) = 0.03047 (table value of the two-sided tail)
    assert r.p == pytest.approx(0.03047, abs=5e-5)
    # pairing matters: the same numbers unpaired would differ in order; here swapping a and b
    # flips the sign only
    swapped = paired_test(b, a)
    assert swapped.mean == -2.5 and swapped.p == pytest.approx(r.p)


def test_paired_test_edge_cases() -> None:
    one = paired_test([1.0], [0.0])
    assert one.n == 1 and math.isnan(one.p)
    nan_pair = paired_test([1.0, math.nan, 3.0], [0.0, 0.0, 1.0])
    assert nan_pair.n == 2 and nan_pair.mean == pytest.approx(1.5)
    constant = paired_test([2.0, 2.0, 2.0], [1.0, 1.0, 1.0])
    assert constant.p == 0.0 and constant.ci_low == constant.ci_high == 1.0


def test_t_distribution_against_table_values() -> None:
    assert t_cdf(0.0, 5) == pytest.approx(0.5)
    assert t_ppf(0.975, 3) == pytest.approx(3.182446, abs=1e-6)
    assert t_ppf(0.975, 10) == pytest.approx(2.228139, abs=1e-6)
    assert t_ppf(0.8, 9) == pytest.approx(0.883404, abs=1e-6)
    assert t_ppf(0.025, 3) == pytest.approx(-3.182446, abs=1e-6)
    assert t_cdf(1.0, 1) == pytest.approx(0.75)  # Cauchy: 1/2 + atan(1)/π


def test_holm_against_hand_values() -> None:
    """p = (0.01, 0.04, 0.03, 0.005), m = 4: sorted 0.005·4 = 0.02, 0.01·3 = 0.03,
    0.03·2 = 0.06, 0.04·1 = 0.04 → max so far 0.06."""
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])  # capped at 1
    out = holm([0.01, math.nan, 0.02])
    assert out[0] == pytest.approx(0.02) and math.isnan(out[1]) and out[2] == pytest.approx(0.02)


def test_minimum_detectable_effects_against_hand_values() -> None:
    # normal approximation: (1.959964 + 0.841621) · 0.01 / √10
    assert paired_mde(0.01, 10, method="normal") == pytest.approx(2.801585 * 0.01 / math.sqrt(10),
                                                                  rel=1e-6)
    # t: (t_{0.975,9} + t_{0.8,9}) · s / √n = (2.262157 + 0.883404) · 0.01 / √10
    assert paired_mde(0.01, 10) == pytest.approx(3.145561 * 0.01 / math.sqrt(10), rel=1e-5)
    n = pairs_for_mde(0.01, 0.01, alpha=0.05 / 6)
    assert paired_mde(0.01, n, alpha=0.05 / 6) <= 0.01 < paired_mde(0.01, n - 1, alpha=0.05 / 6)
    # accuracy near 50 % on 2,000 images, one pair: 2.801585 · √(2 · 0.25 / 2000)
    assert accuracy_mde(0.5, 2000) == pytest.approx(2.801585 * math.sqrt(0.5 / 2000), rel=1e-6)
    with pytest.raises(ValueError, match="n must be"):
        paired_mde(0.01, 1)
    with pytest.raises(ValueError, match="method"):
        paired_mde(0.01, 5, method="exact")


def test_against_scipy_where_installed() -> None:
    stats = pytest.importorskip("scipy.stats")
    a = [0.152, 0.149, 0.160, 0.155, 0.151, 0.158, 0.150]
    b = [0.141, 0.146, 0.149, 0.150, 0.139, 0.151, 0.148]
    r = paired_test(a, b)
    ref = stats.ttest_rel(a, b)
    assert r.t == pytest.approx(ref.statistic, rel=1e-9)
    assert r.p == pytest.approx(ref.pvalue, rel=1e-7)
    low, high = ref.confidence_interval(0.95)
    assert (r.ci_low, r.ci_high) == pytest.approx((low, high), rel=1e-7)
    for df in (2, 5, 11, 40):
        for q in (0.6, 0.8, 0.975, 0.99583):
            assert t_ppf(q, df) == pytest.approx(stats.t.ppf(q, df), rel=1e-8)
    # the central-t MDE against the noncentral-t power it approximates: a little under 0.8
    n, alpha = 12, 0.05 / 6
    delta = paired_mde(0.01, n, alpha)
    crit = stats.t.ppf(1 - alpha / 2, n - 1)
    power = 1 - stats.nct.cdf(crit, n - 1, delta / (0.01 / math.sqrt(n)))
    assert 0.77 < power < 0.80
