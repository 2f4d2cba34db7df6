"""The pure statistics module: hand values, slow reference loops, exact enumerations."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import scipy.stats as st
from crossedlogs import coverage, crossed_log, unit_sums
from scipy import stats as sps

from hardstat.analysis import stats

# -- permutation p-values, shuffles within strata ---------------------------------------------


def test_permutation_p_by_hand() -> None:
    null = np.array([0.1, 0.5, 0.7, -0.9])
    assert stats.permutation_p(0.5, null, "greater") == pytest.approx(3 / 5)
    assert stats.permutation_p(0.5, null, "less") == pytest.approx(4 / 5)
    assert stats.permutation_p(0.5, null, "two-sided") == pytest.approx(4 / 5)
    assert stats.permutation_p(2.0, null) == pytest.approx(1 / 5)  # never 0
    assert math.isnan(stats.permutation_p(float("nan"), null))
    assert math.isnan(stats.permutation_p(0.5, np.zeros(0)))
    with pytest.raises(ValueError):
        stats.permutation_p(0.5, null, "sideways")


def test_strata_shuffle_stays_within_blocks_and_is_a_permutation() -> None:
    rng = np.random.default_rng(0)
    stratum = np.repeat(np.arange(50), rng.integers(1, 30, 50))
    sh = stats.StrataShuffle(stratum, bucket=7)  # several buckets
    for _ in range(20):
        idx = sh.draw(rng)
        assert np.array_equal(np.sort(idx), np.arange(stratum.size))
        assert np.array_equal(stratum[idx], stratum)
    with pytest.raises(ValueError, match="sorted"):
        stats.StrataShuffle(np.array([1, 0]))


def test_strata_permuter_moves_values_like_draw() -> None:
    rng = np.random.default_rng(10)
    stratum = np.repeat(np.arange(30), rng.integers(1, 12, 30))
    values = rng.integers(0, 50, stratum.size)
    sh = stats.StrataShuffle(stratum, bucket=4)
    shuffled = sh.permuter(values)
    for _ in range(10):
        out = shuffled(rng)
        for s_ in range(30):
            block = stratum == s_
            assert sorted(out[block]) == sorted(values[block])
    # the same generator state gives the same arrangement as draw()
    a = sh.permuter(values)(np.random.default_rng(3))
    b = values[sh.draw(np.random.default_rng(3))]
    assert np.array_equal(a, b)
    with pytest.raises(ValueError):
        sh.permuter(-values - 1)


def test_strata_shuffle_is_uniform_over_all_arrangements() -> None:
    """Blocks of 3 and 2: each of the 3! x 2! = 12 joint arrangements equally often."""
    stratum = np.array([0, 0, 0, 1, 1])
    sh = stats.StrataShuffle(stratum)
    rng = np.random.default_rng(1)
    draws = 24_000
    counts: dict[tuple[int, ...], int] = {}
    for _ in range(draws):
        key = tuple(sh.draw(rng).tolist())
        counts[key] = counts.get(key, 0) + 1
    assert len(counts) == 12
    observed = np.array(list(counts.values()))
    assert sps.chisquare(observed).pvalue > 0.001


# -- persistence: correlation between different items of a group ------------------------------


def _slow_pair_correlation(c: np.ndarray, group: np.ndarray, ddof: int) -> float:
    num, pairs = 0.0, 0
    for a in range(c.size):
        for b in range(c.size):
            if a != b and group[a] == group[b]:
                num += c[a] * c[b]
                pairs += 1
    return num / pairs / (float(c @ c) / (c.size - ddof))


def test_pair_correlation_matches_a_slow_loop() -> None:
    rng = np.random.default_rng(2)
    group = rng.integers(0, 15, 60)
    c = rng.normal(size=60) + 0.8 * rng.normal(size=15)[group]
    pc = stats.pair_correlation(c, group, 15, ddof=3)
    assert pc.statistic == pytest.approx(_slow_pair_correlation(c, group, 3), rel=1e-12)
    assert pc.n_pairs == sum(n * (n - 1) for n in np.bincount(group))
    assert pc.statistic > 0.2  # the planted shared component


def test_cross_pair_correlation_matches_a_slow_loop() -> None:
    rng = np.random.default_rng(3)
    gx, gy = rng.integers(0, 10, 30), rng.integers(0, 10, 25)
    cx, cy = rng.normal(size=30), rng.normal(size=25)
    num = sum(cx[a] * cy[b] for a in range(30) for b in range(25) if gx[a] == gy[b])
    pairs = sum(1 for a in range(30) for b in range(25) if gx[a] == gy[b])
    expected = num / pairs / math.sqrt(float(cx @ cx) / 30 * float(cy @ cy) / 25)
    got = stats.cross_pair_correlation(cx, gx, cy, gy, 10)
    assert got.statistic == pytest.approx(expected, rel=1e-12)
    assert got.n_pairs == pairs


def test_centre_within() -> None:
    out = stats.centre_within([1.0, 3.0, 10.0, 20.0, 30.0], [0, 0, 1, 1, 1])
    assert out.tolist() == pytest.approx([-1, 1, -10, 0, 10])


def test_strata_rotation_rotates_each_stratum_of_its_arrangement() -> None:
    rng = np.random.default_rng(11)
    stratum = np.repeat(np.arange(20), rng.integers(1, 9, 20))
    rot = stats.StrataRotation(stratum, rng)
    assert np.array_equal(stratum[rot.arranged], stratum)  # the arrangement stays in strata
    assert np.array_equal(np.sort(rot.arranged), np.arange(stratum.size))
    seen: dict[int, set[int]] = {}
    for _ in range(300):
        idx = rot.rotation(rng)
        assert np.array_equal(stratum[idx], stratum)
        # a rotation: consecutive slots of a stratum take consecutive (cyclic) sources
        for s_ in range(20):
            block = np.flatnonzero(stratum == s_)
            offset = (idx[block] - block) % block.size
            assert np.unique(offset).size == 1
            seen.setdefault(s_, set()).add(int(offset[0]))
    assert all(len(v) == np.count_nonzero(stratum == k) for k, v in seen.items())  # all offsets


def test_persistence_null_against_brute_force_enumeration() -> None:
    """On a tiny table (3 strata of 3 keys, 9 keys of 3 images), the Monte Carlo p of the
    persistence numerator over random rotations equals the exact p from all 3^3 rotations of
    the same arrangement (and is close to the p over all 6^3 permutations)."""
    c = np.array([0.9, -0.2, -0.7, 0.8, 0.1, -0.9, 0.5, -0.6, 0.1])
    group = np.array([0, 1, 2, 0, 2, 1, 0, 1, 2])  # image of each key; image 0 is hard
    stratum = np.repeat([0, 1, 2], 3)

    def numerator(g: np.ndarray, values: np.ndarray) -> float:
        s = np.bincount(g, weights=values, minlength=3)
        return float(s @ s - values @ values)

    observed = numerator(group, c)
    rot = stats.StrataRotation(stratum, np.random.default_rng(4))
    g_arr, c_arr = group[rot.arranged], c[rot.arranged]
    exact = []
    for shifts in itertools.product(range(3), repeat=3):
        idx = np.concatenate([3 * s_ + (np.arange(3) + shifts[s_]) % 3 for s_ in range(3)])
        exact.append(numerator(g_arr[idx], c_arr))
    p_exact = np.mean(np.array(exact) >= observed - 1e-12)
    rotated = rot.permuter(group)
    rng = np.random.default_rng(5)
    draws = np.array([numerator(rotated(rng), c_arr) for _ in range(20_000)])
    p_mc = np.mean(draws >= observed - 1e-12)
    assert p_mc == pytest.approx(p_exact, abs=4 * math.sqrt(p_exact * (1 - p_exact) / 20_000))
    # the full permutation group: 18 of 216 arrangements reach the observed value
    full = []
    for p0, p1, p2 in itertools.product(itertools.permutations(range(3)), repeat=3):
        idx = np.concatenate([np.array(p0), 3 + np.array(p1), 6 + np.array(p2)])
        full.append(numerator(group[idx], c))
    assert np.mean(np.array(full) >= observed - 1e-12) == pytest.approx(18 / 216)
    assert p_exact < 0.2  # the planted hard image is rare under both groups


# -- intraclass correlations -----------------------------------------------------------------


def _pairs_log(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Pair-level scores of a small crossed log: keys in strata, grouped by image."""
    n_keys = 40
    key_group = rng.integers(0, 8, n_keys)
    key_stratum = np.sort(rng.integers(0, 5, n_keys))
    key_m = rng.integers(1, 6, n_keys)
    effect = rng.normal(0, 0.5, 8)[key_group] + rng.normal(0, 0.7, n_keys) + key_stratum
    key = np.repeat(np.arange(n_keys), key_m)
    h = effect[key] + rng.normal(size=key.size)
    return {
        "key": key,
        "h": h,
        "group": key_group,
        "stratum": key_stratum,
        "m": key_m,
    }


def test_nested_icc_matches_an_explicit_pairwise_loop() -> None:
    rng = np.random.default_rng(5)
    log = _pairs_log(rng)
    key, h = log["key"], log["h"]
    stratum_of_pair = log["stratum"][key]
    group_of_pair = log["group"][key]
    mu = {s: h[stratum_of_pair == s].mean() for s in np.unique(stratum_of_pair)}
    x = h - np.array([mu[s] for s in stratum_of_pair])
    variance = float(x @ x) / (x.size - len(mu))
    w_num = w_n = b_num = b_n = 0.0
    for i in range(x.size):
        for j in range(x.size):
            if i == j:
                continue
            if key[i] == key[j]:
                w_num += x[i] * x[j]
                w_n += 1
            elif group_of_pair[i] == group_of_pair[j]:
                b_num += x[i] * x[j]
                b_n += 1
    total = np.bincount(key, weights=h)
    total_sq = np.bincount(key, weights=h * h)
    r = stats.nested_icc(log["m"], total, total_sq, log["stratum"], log["group"], 8)
    assert r.variance == pytest.approx(variance, rel=1e-10)
    assert r.cov_within_key == pytest.approx(w_num / w_n, rel=1e-10)
    assert r.cov_between_keys == pytest.approx(b_num / b_n, rel=1e-10)
    assert r.within_key == pytest.approx(w_num / w_n / variance, rel=1e-10)
    assert r.between_key == pytest.approx(b_num / b_n / variance, rel=1e-10)


def test_nested_icc_recovers_planted_components_whatever_the_cadence() -> None:
    """Key and image variance components, recovered with 8 or 64 queries per key alike."""
    rng = np.random.default_rng(6)
    n_img, per_img = 4000, 5
    group = np.repeat(np.arange(n_img), per_img)
    stratum = np.sort(rng.integers(0, 400, group.size))
    image_sd, key_sd = 0.15, 0.3
    truth_w = (image_sd**2 + key_sd**2) / (image_sd**2 + key_sd**2 + 1)
    truth_b = image_sd**2 / (image_sd**2 + key_sd**2 + 1)
    effect = rng.normal(0, image_sd, n_img)[group] + rng.normal(0, key_sd, group.size) + stratum
    for q in (8, 64):
        m = np.full(group.size, q)
        noise = rng.normal(size=(group.size, q))
        h = effect[:, None] + noise
        r = stats.nested_icc(m, h.sum(1), (h * h).sum(1), stratum, group, n_img)
        assert r.within_key == pytest.approx(truth_w, abs=0.01)
        assert r.between_key == pytest.approx(truth_b, abs=0.006)


def test_icc_sums_add_over_groups() -> None:
    rng = np.random.default_rng(7)
    log = _pairs_log(rng)
    total = np.bincount(log["key"], weights=log["h"])
    total_sq = np.bincount(log["key"], weights=log["h"] ** 2)
    fitted = stats.cell_means(total / log["m"], log["m"], log["stratum"])
    sums = stats.icc_sums(log["m"], total, total_sq, fitted, log["group"], 8)
    assert sums.shape == (8, len(stats.ICC_SUM_COLUMNS))
    direct = stats.nested_icc(log["m"], total, total_sq, log["stratum"], log["group"], 8)
    again = stats.icc_from_sums(sums.sum(0), len(np.unique(log["stratum"])))
    assert again == direct


def test_additive_fit_by_hand() -> None:
    """Block 0 is a 2 x 2 table (class x key step) of one value each: the additive fit of
    [[1, 2], [3, 6]] is row mean + column mean - grand mean."""
    values = np.array([1.0, 2.0, 3.0, 6.0, 5.0])
    weights = np.ones(5)
    block = np.array([0, 0, 0, 0, 1])
    cls = np.array([0, 0, 1, 1, 0])
    age = np.array([0, 1, 0, 1, 0])
    fitted, n_params = stats.additive_fit(values, weights, block, cls, age)
    grand = 3.0
    rows, cols = [1.5, 4.5], [2.0, 4.0]
    expected = [rows[0] + cols[0] - grand, rows[0] + cols[1] - grand]
    expected += [rows[1] + cols[0] - grand, rows[1] + cols[1] - grand, 5.0]
    assert fitted == pytest.approx(expected)
    assert n_params == (2 + 1) + (2 + 1) - 2  # cells (block, class) + (block, step) - blocks


# -- per-group scores, bootstrap, jackknife ---------------------------------------------------


def test_factorize_equals_np_unique_on_each_path() -> None:
    """Sorted codes, a dense range (presence table) and a sparse one (np.unique): the same
    distinct codes and inverse as ``np.unique``."""
    rng = np.random.default_rng(4)
    cases = [
        np.sort(rng.integers(-5, 40, 1000)),  # sorted
        rng.integers(-3, 500, 2000),  # dense
        rng.integers(0, 2**40, 3000) * 7 - 2**41,  # sparse: far more values than codes
        rng.integers(0, 3, 5000).astype(np.uint8),
        np.array([3, 3, 3]),
        np.array([2**62, -(2**62), 0]),
        np.array([7]),
        np.zeros(0, np.int64),
    ]
    for codes in cases:
        uniq, inverse = stats.factorize(codes)
        want_u, want_i = np.unique(codes.astype(np.int64), return_inverse=True)
        assert np.array_equal(uniq, want_u) and np.array_equal(inverse, want_i.ravel())
        assert inverse.dtype == np.int64 and np.array_equal(uniq[inverse], codes)
    with pytest.raises(TypeError, match="integer codes"):
        stats.factorize(np.array([0.5, 1.0]))


def test_additive_fit_is_the_same_for_any_block_coding() -> None:
    """Blocks coded as large sparse numbers, in any order, fit as dense ids do."""
    rng = np.random.default_rng(8)
    n = 400
    block, first, second = rng.integers(0, 6, n), rng.integers(0, 3, n), rng.integers(0, 4, n)
    w, v = rng.integers(1, 5, n).astype(float), rng.normal(size=n)
    dense = stats.AdditiveFit(w, block, first, second)
    sparse = stats.AdditiveFit(w, block * (1 << 40) + 12345, first, second)
    assert dense.n_params == sparse.n_params
    assert np.allclose(dense.fitted(v), sparse.fitted(v), rtol=0, atol=1e-12)


def test_stratum_normal_scores_by_hand() -> None:
    values = np.array([0.3, 0.1, 0.2, 5.0, 5.0, 7.0])
    stratum = np.array([0, 0, 0, 1, 1, 1])
    g, var = stats.stratum_normal_scores(values, stratum)
    ppf = sps.norm.ppf
    assert g[:3] == pytest.approx([ppf(2.5 / 3), ppf(0.5 / 3), ppf(1.5 / 3)])
    # ties share their average rank (1.5)
    assert g[3:] == pytest.approx([ppf(1 / 3), ppf(1 / 3), ppf(2.5 / 3)])
    grid = ppf((np.arange(1, 4) - 0.5) / 3)
    assert var == pytest.approx(np.full(6, np.mean(grid**2)))


def test_stratum_normal_scores_sum_is_standard_normal_under_the_null() -> None:
    rng = np.random.default_rng(8)
    n_img, per_img, size = 3000, 5, 25
    group = rng.permutation(np.repeat(np.arange(n_img), per_img))
    stratum = np.arange(group.size) // size
    g, var = stats.stratum_normal_scores(rng.normal(size=group.size), stratum)
    z = np.bincount(group, weights=g) / np.sqrt(np.bincount(group, weights=var))
    assert abs(z.mean()) < 0.05
    assert z.std() == pytest.approx(1.0, abs=0.04)
    assert np.mean(np.abs(z) > 1.96) < 0.06


def test_bootstrap_sums_resamples_units() -> None:
    rng = np.random.default_rng(9)
    x = np.c_[np.arange(1.0, 6.0), np.ones(5)]
    draws = stats.bootstrap_sums(x, 400, rng, chunk=7)
    assert draws.shape == (400, 2)
    assert np.all(draws[:, 1] == 5)  # five units drawn every time
    assert draws[:, 0].mean() == pytest.approx(15, abs=0.5)
    assert set(np.unique(draws[:, 0])) <= set(range(5, 26))


def test_bootstrap_normal_interval() -> None:
    draws = np.array([1.0, 2.0, 3.0, 4.0])
    lo, hi = stats.bootstrap_normal_interval(10.0, draws)
    half = sps.norm.ppf(0.975) * draws.std(ddof=1)
    assert (lo, hi) == pytest.approx((10 - half, 10 + half))
    assert all(math.isnan(v) for v in stats.bootstrap_normal_interval(1.0, [np.nan, 2.0]))


def test_percentile_and_jackknife_intervals() -> None:
    assert stats.percentile_interval(np.arange(101.0), 0.9) == pytest.approx((5.0, 95.0))
    assert stats.percentile_interval(np.array([np.nan])) != stats.percentile_interval([1.0])
    # jackknife of the mean of 3 values equals the t-interval of the mean
    x = np.array([1.0, 2.0, 6.0])
    loo = np.array([(x.sum() - v) / 2 for v in x])
    se, lo, hi = stats.jackknife_interval(x.mean(), loo)
    assert se == pytest.approx(x.std(ddof=1) / math.sqrt(3))
    q = sps.t.ppf(0.975, 2)
    assert (lo, hi) == pytest.approx((x.mean() - q * se, x.mean() + q * se))


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


# -- crossed bootstrap over steps x negatives (semantic analysis) ------------------------------


def test_crossed_bootstrap_matches_a_slow_pair_loop() -> None:
    rng = np.random.default_rng(0)
    step, _query, neg, value = crossed_log(rng, steps=4, queries=2, queue=3, pool=5, shift=2)
    values = np.stack([np.ones_like(value), value, value**2], axis=1)  # (pairs, M = 3)
    _, s_idx = np.unique(step, return_inverse=True)
    _, n_idx = np.unique(neg, return_inverse=True)
    by_step = np.zeros((s_idx.max() + 1, 3))
    by_neg = np.zeros((n_idx.max() + 1, 3))
    np.add.at(by_step, s_idx, values)
    np.add.at(by_neg, n_idx, values)
    got = stats.crossed_bootstrap_totals([by_step, by_neg], 40, np.random.default_rng(5), chunk=16)

    # the same weights, drawn in the documented order, applied pair by pair
    draw = np.random.default_rng(5)
    want = []
    for start in range(0, 40, 16):
        c = min(16, 40 - start)
        w_step = draw.poisson(1.0, (c, by_step.shape[0]))
        w_neg = draw.poisson(1.0, (c, by_neg.shape[0]))
        for r in range(c):
            total = np.zeros(3)
            for p in range(len(value)):
                total += (w_step[r, s_idx[p]] + w_neg[r, n_idx[p]] - 1) * values[p]
            want.append(total)
    np.testing.assert_allclose(got, np.array(want), rtol=1e-12)

    # one factor: the Poisson bootstrap of units
    got1 = stats.crossed_bootstrap_totals([by_step], 10, np.random.default_rng(2))
    w = np.random.default_rng(2).poisson(1.0, (10, by_step.shape[0]))
    np.testing.assert_allclose(got1, w @ by_step, rtol=1e-12)


def test_crossed_bootstrap_variance_is_the_sum_of_the_factors_terms() -> None:
    rng = np.random.default_rng(1)
    step, _query, neg, value = crossed_log(rng, steps=6, queries=3, queue=8, pool=20, shift=4)
    by_step, by_neg = unit_sums(step, value), unit_sums(neg, value)
    draws = stats.crossed_bootstrap_totals([by_step, by_neg], 40_000, rng)
    assert draws.mean(axis=0) == pytest.approx(by_step.sum(axis=0), rel=0.02)
    want = (by_step[:, 1] ** 2).sum() + (by_neg[:, 1] ** 2).sum()  # Poisson(1): variance 1
    assert draws[:, 1].var() == pytest.approx(want, rel=0.03)


def test_crossed_bootstrap_refuses_factors_with_different_totals() -> None:
    with pytest.raises(ValueError, match="same column totals"):
        factors = [np.ones((3, 2)), np.ones((2, 2))]
        stats.crossed_bootstrap_totals(factors, 5, np.random.default_rng())
    with pytest.raises(ValueError, match="at least one"):
        stats.crossed_bootstrap_totals([], 5, np.random.default_rng())


def test_percentile_interval_columns_and_ratio_draws() -> None:
    draws = np.array([[1.0, np.nan], [2.0, 1.0], [3.0, np.nan], [4.0, 2.0], [5.0, np.nan]])
    lo, hi = stats.percentile_interval_columns(draws, 0.5)
    assert (lo[0], hi[0]) == (2.0, 4.0)  # numpy's linear percentiles 25 and 75 of 1..5
    assert np.isnan(lo[1]) and np.isnan(hi[1])  # 2 of 5 finite < 90%
    lo, hi = stats.percentile_interval_columns(draws, 0.5, min_finite=0.4)
    assert (lo[1], hi[1]) == (1.25, 1.75)
    assert stats.percentile_interval_columns(np.zeros((4, 2, 3)))[0].shape == (2, 3)
    r = stats.ratio_draws(np.array([1.0, 2.0, 3.0]), np.array([2.0, 0.0, -1.0]))
    assert r[0] == 0.5 and np.isnan(r[1]) and np.isnan(r[2])


def test_two_way_bootstrap_covers_where_one_way_designs_do_not() -> None:
    """Crossed logs with step, query and negative effects (negatives shared by neighbouring
    steps and recurring as the pool wraps). Resampling queries only, or negatives beside
    queries, ignores the steps' shared queue and encoder; resampling steps only ignores that
    a negative's effect reaches across steps. Steps x negatives covers both (150 logs each,
    150 replicates: a coverage of 0.95 is estimated to +-0.018; seeded, so the numbers are
    fixed: 0.95 and 0.94 against 0.52 and 0.45 for queries only; bench/bench_semantic.py
    runs more logs and designs)."""
    both = {d: c for d, (c, _) in coverage(150, 150, seed=0).items()}
    assert both["step x negative"] >= 0.90
    assert both["query"] < 0.75 and both["query x negative"] < 0.8
    negatives = coverage(150, 150, seed=1, sd_step=0.0, sd_query=0.0, sd_neg=0.5)
    neg = {d: c for d, (c, _) in negatives.items()}
    assert neg["step x negative"] >= 0.90
    assert neg["query"] < 0.75 and neg["step"] < 0.8
