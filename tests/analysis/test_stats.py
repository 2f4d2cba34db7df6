"""hardstat.analysis.stats against scipy, hand-computed values and simulations with known truth."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats as st

from hardstat.analysis import stats


# -- paired contrasts over seeds -----------------------------------------------------------------
def test_t_interval_by_hand_and_against_scipy() -> None:
    # x = 1, 2, 3: mean 2, sd 1, se 1/sqrt(3); with 2 degrees of freedom the t quantile has
    # the closed form t_q = (2q - 1) sqrt(2 / (4 q (1 - q))): t_0.975 = 4.3027
    lo, hi = stats.t_interval([1.0, 2.0, 3.0], 0.95)
    q = 0.975
    half = (2 * q - 1) * math.sqrt(2 / (4 * q * (1 - q))) / math.sqrt(3)
    assert (lo, hi) == pytest.approx((2 - half, 2 + half), rel=1e-12)
    rng = np.random.default_rng(0)
    for n in (2, 3, 5, 10, 30):
        x = rng.normal(0.3, 1.0, n)
        for level in (0.9, 0.95, 0.99):
            expect = st.t.interval(level, n - 1, loc=x.mean(), scale=st.sem(x))
            assert stats.t_interval(x, level) == pytest.approx(expect, rel=1e-10)


def test_t_test_and_tost_against_scipy() -> None:
    rng = np.random.default_rng(1)
    for n in (2, 4, 8):
        for shift in (0.0, 0.3, -1.2):
            x = rng.normal(shift, 0.5, n)
            assert stats.t_test_p(x) == pytest.approx(st.ttest_1samp(x, 0).pvalue, rel=1e-10)
            assert stats.t_test_p(x, mu=0.2) == pytest.approx(
                st.ttest_1samp(x, 0.2).pvalue, rel=1e-10
            )
            t = stats.tost(x, margin=0.5)
            lower = st.ttest_1samp(x, -0.5, alternative="greater").pvalue
            upper = st.ttest_1samp(x, 0.5, alternative="less").pvalue
            assert (t.p_lower, t.p_upper) == pytest.approx((lower, upper), rel=1e-9)
            assert t.p == pytest.approx(max(lower, upper), rel=1e-9)


def test_tost_equivalence_is_the_90_percent_interval_inside_the_margin() -> None:
    rng = np.random.default_rng(2)
    x = rng.normal(rng.uniform(-1, 1, (2000, 1)), 0.4, (2000, 5))  # (experiments, seeds)
    lo, hi = stats.t_interval(x, 0.90)
    inside = (lo > -0.5) & (hi < 0.5)
    result = stats.tost(x, margin=0.5, alpha=0.05)
    assert inside.any() and not inside.all()
    assert np.array_equal(result.equivalent, inside)


def test_vectorised_rows_match_one_at_a_time() -> None:
    x = np.random.default_rng(3).normal(0, 1, (7, 4))
    lo, hi = stats.t_interval(x)
    p = stats.t_test_p(x)
    t = stats.tost(x, 0.8)
    for i, row in enumerate(x):
        assert (lo[i], hi[i]) == pytest.approx(stats.t_interval(row))
        assert p[i] == pytest.approx(stats.t_test_p(row))
        assert t.p[i] == pytest.approx(stats.tost(row, 0.8).p)


def test_fewer_than_two_seeds_give_no_interval_and_zero_spread_is_exact() -> None:
    for x in ([], [0.5]):
        lo, hi = stats.t_interval(x)
        assert math.isnan(lo) and math.isnan(hi)
        assert math.isnan(stats.t_test_p(x))
        t = stats.tost(x, 1.0)
        assert math.isnan(t.p) and not t.equivalent
    assert stats.t_interval([0.25, 0.25, 0.25]) == (0.25, 0.25)
    assert stats.t_test_p([0.25, 0.25]) == 0.0  # no spread: a nonzero mean is certain
    assert stats.t_test_p([0.0, 0.0]) == 1.0
    assert stats.tost([0.25, 0.25], 0.5).equivalent
    assert not stats.tost([0.75, 0.75], 0.5).equivalent
    with pytest.raises(ValueError):
        stats.tost([1.0, 2.0], 0.0)
    with pytest.raises(ValueError):
        stats.t_interval([1.0, 2.0], 1.0)


def test_holm_by_hand() -> None:
    # m = 4 finite p: sorted 0.005, 0.01, 0.03, 0.04 scaled by 4, 3, 2, 1 -> 0.02, 0.03, 0.06,
    # 0.04, then the running maximum -> 0.02, 0.03, 0.06, 0.06. NaN stays out of the family.
    adjusted = stats.holm([0.01, 0.04, 0.03, np.nan, 0.005])
    assert adjusted[[0, 1, 2, 4]] == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert math.isnan(adjusted[3])
    assert stats.holm([0.2, 0.6]) == pytest.approx([0.4, 0.6])
    assert stats.holm([0.5, 0.9]).tolist() == [1.0, 1.0]  # capped at 1
    assert stats.holm([0.01]).tolist() == [0.01]
    assert stats.holm([]).size == 0


def test_holm_controls_the_family_wise_error_under_the_global_null() -> None:
    rng = np.random.default_rng(4)
    p = rng.uniform(size=(20000, 5))  # 5 true nulls per family
    any_rejected = np.array([np.any(stats.holm(row) < 0.05) for row in p[:4000]])
    assert any_rejected.mean() <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / 4000)


def _sweeps(rng: np.random.Generator, sims: int, n: int, effect: float) -> np.ndarray:
    """Paired differences of simulated sweeps (sims, n): each seed has its own level shared by
    both bands (initial weights, data order), plus run noise; the true mean difference is
    ``effect``."""
    seed_level = rng.normal(0.60, 0.02, (sims, n))  # what the seed does to any band
    reference = seed_level + rng.normal(0, 0.004, (sims, n))
    band = seed_level + effect + rng.normal(0, 0.004, (sims, n))
    return band - reference


@pytest.mark.parametrize("n", [3, 5, 10])
def test_t_interval_coverage_on_simulated_sweeps(n: int) -> None:
    rng = np.random.default_rng(10 + n)
    sims = 4000
    d = _sweeps(rng, sims, n, effect=-0.012)
    lo, hi = stats.t_interval(d, 0.95)
    coverage = float(np.mean((lo <= -0.012) & (hi >= -0.012)))
    assert 0.93 <= coverage <= 0.97, coverage


@pytest.mark.parametrize(("n", "effect"), [(3, 0.01), (5, 0.01), (10, -0.01), (20, 0.01)])
def test_tost_size_at_the_margin(n: int, effect: float) -> None:
    # the true difference equals the margin: equivalence may be called at most alpha = 5% of
    # the time (up to three simulation standard errors)
    rng = np.random.default_rng(20 + n)
    sims = 20000
    d = _sweeps(rng, sims, n, effect=effect)
    result = stats.tost(d, margin=0.01, alpha=0.05)
    rate = float(np.mean(result.equivalent))
    assert rate <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / sims), rate
    # exactly: equivalence needs the one-sided test at the near edge to reject, and that test
    # has size alpha when the truth sits on that edge (the t statistic is exactly t_{n-1})
    near = result.p_upper if effect > 0 else result.p_lower
    assert np.all(~result.equivalent | (near < 0.05))
    # and where the truth is well inside the margin, equivalence is found (the test has power)
    power = float(np.mean(stats.tost(_sweeps(rng, 2000, n, 0.0), 0.01).equivalent))
    assert power > 0.5 if n >= 5 else power > 0.0
