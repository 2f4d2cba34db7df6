"""Consistency of hardness: pure functions by hand, planted structure, and the analytic null."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from runlogs import write_run
from scipy import stats

from hardstat.analysis import logs
from hardstat.analysis.consistency import (
    class_conditional_statistic,
    consistency,
    null_histogram,
    observed_histogram,
    rate_bin_edges,
    shuffled_counts,
    z_bin_edges,
)
from hardstat.analysis.stats import (
    _log_chi2_sf_series,
    benjamini_hochberg,
    binomial_tails,
    chi2_upper_tail,
    dispersion_statistic,
    pearson_dispersion,
    spearman_test,
    tarone_z,
    two_sided_binomial_p,
)
from hardstat.bands import parse_band
from hardstat.errors import ConfigError, LogError, RunError

# -- simulated logs --------------------------------------------------------------------------


def simulate_pairs(
    seed: int,
    *,
    n_ids: int,
    queue: int,
    queries: int,
    steps: int,
    propensity: np.ndarray | None = None,
    labels: np.ndarray | None = None,
    same_class: float = 0.0,
    class_shift: np.ndarray | None = None,
    first_step: int = 0,
    epoch_of_step: Callable[[int], int] | None = None,
) -> dict[str, np.ndarray]:
    """Pairs columns for ``write_run``: rows in rank order per (step, query), like the trainer.

    Each step's queue is ``queue`` distinct ids drawn from ``n_ids`` (all of them when equal);
    the queries are other draws. A pair's score is ``propensity[neg] + class_shift[label(neg)]
    + same_class * [same label] + N(0, 1)``; rank 1 = highest score. With no structure the ranks
    of each query are a uniform random permutation of its queue (the exchangeable null).
    """
    rng = np.random.default_rng(seed)
    prop = np.zeros(n_ids) if propensity is None else propensity
    cols: dict[str, list[np.ndarray]] = {c: [] for c in ("step", "epoch", "query_id", "neg_id")}
    for s in range(steps):
        step = first_step + s
        q_ids = rng.choice(n_ids, queries, replace=False)
        ids = rng.permutation(n_ids)[:queue] if queue < n_ids else rng.permutation(n_ids)
        score = prop[ids][None, :] + rng.standard_normal((queries, queue))
        if labels is not None:
            if class_shift is not None:
                score += class_shift[labels[ids]][None, :]
            score += same_class * (labels[ids][None, :] == labels[q_ids][:, None])
        order = np.argsort(-score, axis=1, kind="stable")
        cols["neg_id"].append(ids[order].ravel())
        cols["query_id"].append(np.repeat(q_ids, queue))
        cols["step"].append(np.full(queries * queue, step))
        epoch = epoch_of_step(step) if epoch_of_step else 0
        cols["epoch"].append(np.full(queries * queue, epoch))
    n = sum(len(a) for a in cols["step"])
    return {
        "step": np.concatenate(cols["step"]).astype(np.int32),
        "epoch": np.concatenate(cols["epoch"]).astype(np.int16),
        "query_id": np.concatenate(cols["query_id"]).astype(np.int32),
        "neg_id": np.concatenate(cols["neg_id"]).astype(np.int32),
        "rank": np.tile(np.arange(1, queue + 1, dtype=np.int32), n // queue),
        "similarity": np.zeros(n, np.float16),
        "in_band": np.ones(n, bool),
    }


def numpy_counts(pairs: dict[str, np.ndarray], queue: int, band: str) -> tuple[Any, Any, Any]:
    """Reference counting in NumPy: ids, m, k of the non-null negatives."""
    neg = pairs["neg_id"]
    ok = neg >= 0
    in_band = np.zeros(len(neg), bool)
    for lo, hi in parse_band(band).rank_intervals(queue):
        in_band |= (pairs["rank"] > lo) & (pairs["rank"] <= hi)
    ids, inv = np.unique(neg[ok], return_inverse=True)
    return ids, np.bincount(inv), np.bincount(inv, weights=in_band[ok]).astype(np.int64)


def connect(*paths: Path) -> Any:
    return logs.connect(logs.find_runs(list(paths)))


# -- pure functions by hand ------------------------------------------------------------------


def test_dispersion_statistic_three_negatives_by_hand() -> None:
    # p = 0.2: (2-2)^2/1.6 + (0-2)^2/1.6 + (5-4)^2/3.2 = 0 + 2.5 + 0.3125
    assert dispersion_statistic([2, 0, 5], [10, 10, 20], 0.2) == pytest.approx(2.8125)
    assert pearson_dispersion([3, 1], [2.0, 1.0], [1.25, 0.75]) == pytest.approx(0.8)
    with pytest.raises(ValueError):
        dispersion_statistic([1], [2], 1.0)


def test_tarone_z_by_hand_and_exact_null_moments() -> None:
    # sum[(k-mp)^2 - k(1-2p) - m p^2] = -1.6 + 3.6 - 2.8 = -0.8; / 0.16 = -5
    # sqrt(2 * (90 + 90 + 380)) = sqrt(1120)
    assert tarone_z([2, 0, 5], [10, 10, 20], 0.2) == pytest.approx(-5 / math.sqrt(1120))
    # one negative, m = 7, p = 0.3: the numerator has mean 0 and variance 2 m (m - 1) exactly
    m, p = 7, 0.3
    ks = np.arange(m + 1)
    pmf = stats.binom.pmf(ks, m, p)
    num = ((ks - m * p) ** 2 - ks * (1 - 2 * p) - m * p * p) / (p * (1 - p))
    assert np.sum(pmf * num) == pytest.approx(0.0, abs=1e-12)
    assert np.sum(pmf * num**2) == pytest.approx(2 * m * (m - 1))


def test_binomial_tails_match_scipy_binomtest() -> None:
    for m, p in [(10, 0.5), (64, 0.05), (200, 0.25)]:
        ks = np.arange(0, m + 1, max(1, m // 12))
        upper, lower = binomial_tails(ks, np.full(ks.size, m), p)
        for k, u, lo in zip(ks, upper, lower, strict=True):
            assert u == pytest.approx(stats.binomtest(int(k), m, p, "greater").pvalue, rel=1e-9)
            assert lo == pytest.approx(stats.binomtest(int(k), m, p, "less").pvalue, rel=1e-9)


def test_two_sided_binomial_doubles_the_smaller_tail() -> None:
    # k = 0 of 10 at p = 1/2: P(X <= 0) = 1/1024, doubled
    assert two_sided_binomial_p([0], [10], 0.5)[0] == pytest.approx(2 / 1024)
    assert two_sided_binomial_p([5], [10], 0.5)[0] == 1.0
    assert two_sided_binomial_p([10], [10], 0.5)[0] == pytest.approx(2 / 1024)


def bh_reference(p: np.ndarray, alpha: float) -> np.ndarray:
    """Slow step-up: reject the i smallest p where i is the largest with p_(i) <= i alpha / n."""
    n = len(p)
    order = sorted(range(n), key=lambda i: p[i])
    cut = 0
    for rank, i in enumerate(order, start=1):
        if p[i] <= rank * alpha / n:
            cut = rank
    rejected = np.zeros(n, bool)
    for i in order[:cut]:
        rejected[i] = True
    return rejected


def test_benjamini_hochberg_by_hand_and_against_step_up() -> None:
    p = np.array([0.01, 0.04, 0.03, 0.005, 0.5])
    # sorted 0.005, 0.01, 0.03, 0.04, 0.5 -> scaled 0.025, 0.025, 0.05, 0.05, 0.5
    assert benjamini_hochberg(p) == pytest.approx([0.025, 0.05, 0.05, 0.025, 0.5])
    assert list(benjamini_hochberg(p) <= 0.04) == [True, False, False, True, False]
    rng = np.random.default_rng(1)
    for _ in range(50):
        n = int(rng.integers(1, 40))
        p = np.concatenate([rng.uniform(size=n), rng.uniform(0, 0.01, size=n // 3)])
        p[rng.integers(0, len(p))] = p[0]  # a tie
        for alpha in (0.01, 0.05, 0.2):
            assert np.array_equal(benjamini_hochberg(p) <= alpha, bh_reference(p, alpha))


def test_chi2_upper_tail_finite_where_scipy_underflows() -> None:
    p, log10p = chi2_upper_tail(130.0, 100)
    assert p == pytest.approx(stats.chi2.sf(130.0, 100))
    assert log10p == pytest.approx(math.log10(p))
    # the series used past underflow agrees with scipy where both are finite
    for x, df in [(500.0, 100), (16000.0, 12288), (2000.0, 1001)]:
        assert _log_chi2_sf_series(x, df) == pytest.approx(stats.chi2.logsf(x, df), rel=1e-9)
    p, log10p = chi2_upper_tail(57169.8, 12288)
    assert p == 0.0 and math.isfinite(log10p) and log10p < -5000
    mpmath = pytest.importorskip("mpmath")
    exact = mpmath.log10(mpmath.gammainc(12288 / 2, 57169.8 / 2, mpmath.inf, regularized=True))
    assert log10p == pytest.approx(float(exact), rel=1e-9)


def test_spearman_matches_scipy_and_a_slow_permutation_loop() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=40)
    y = 0.3 * x + rng.normal(size=40)
    y[:4] = y[4]  # ties
    rho, p_an, p_perm = spearman_test(x, y, 300, seed=7)
    ref = stats.spearmanr(x, y)
    assert rho == pytest.approx(ref.statistic) and p_an == pytest.approx(ref.pvalue)
    # same permutations, one scipy call each
    idx = np.random.default_rng(7).permuted(np.tile(np.arange(40), (300, 1)), axis=1)
    hits = sum(abs(stats.spearmanr(x, y[i]).statistic) >= abs(rho) - 1e-12 for i in idx)
    assert p_perm == pytest.approx((hits + 1) / 301)
    # with many permutations it approaches the analytic p-value
    _, p_an, p_perm = spearman_test(x, y, 4000, seed=0)
    assert p_perm == pytest.approx(p_an, abs=0.02)
    assert spearman_test(x, y, 0, seed=0)[2] is None


def test_class_conditional_statistic_by_hand() -> None:
    # negatives 0, 1 of class 0, negative 2 of class 1; rows (negative, query class, m, k)
    neg = np.array([0, 1, 2, 0, 2])
    qcl = np.array([0, 0, 0, 1, 1])
    m = np.array([4.0, 4, 4, 2, 2])
    k = np.array([2.0, 0, 1, 1, 0])
    # cells: (q0, n0) 2/8, (q1, n0) 1/2, (q0, n1) 1/4, (q1, n1) 0/2
    # neg 0: E = 1 + 1, V = 0.75 + 0.5, k = 3 -> 0.8; neg 1: E = 1, V = 0.75, k = 0 -> 4/3;
    # neg 2: E = 1 + 0, V = 0.75, k = 1 -> 0
    x2, df, n_used, n_cells = class_conditional_statistic(neg, qcl, m, k, np.array([0, 0, 1]))
    assert x2 == pytest.approx(0.8 + 4 / 3)
    assert (df, n_used, n_cells) == (0, 3, 3)


def test_null_histogram_is_the_binomial_mixture() -> None:
    m = np.array([20] * 30 + [35] * 10 + [50] * 5)
    p = 0.1
    edges = rate_bin_edges(m, np.array([0.0, 0.6]), p)
    expected = null_histogram(m, p, edges)
    assert expected.sum() == pytest.approx(len(m))
    # brute force: every k of every negative, untrimmed
    brute = np.zeros(len(edges) - 1)
    for mi in m:
        ks = np.arange(mi + 1)
        brute += np.histogram(
            np.clip(ks / mi, edges[0], edges[-1] - 1e-12),
            bins=edges,
            weights=stats.binom.pmf(ks, mi, p),
        )[0]
    assert expected == pytest.approx(brute, abs=1e-9)
    # a seeded simulation of the null agrees within sampling error
    rng = np.random.default_rng(0)
    sims = np.mean([observed_histogram(rng.binomial(m, p), m, p, edges) for _ in range(2000)], 0)
    assert np.all(np.abs(sims - expected) <= 5 * np.sqrt(expected / 2000) + 0.01)
    z_edges = z_bin_edges(m, np.array([-3.0, 9.0]), p)
    assert null_histogram(m, p, z_edges, "z").sum() == pytest.approx(len(m))


def test_bins_align_with_the_lattice() -> None:
    m = np.full(100, 64)
    edges = rate_bin_edges(m, np.array([0.0, 0.41]), 205 / 4096)
    per_bin = np.histogram(np.arange(65) / 64, bins=edges)[0]
    assert len(set(per_bin[:-1].tolist())) == 1  # every full bin holds the same lattice points
    p = 205 / 4096
    z_lattice = (np.arange(65) - 64 * p) / math.sqrt(64 * p * (1 - p))
    z_edges = z_bin_edges(m, z_lattice[[0, 30]], p)
    counts = np.histogram(z_lattice, bins=z_edges)[0]
    counts = counts[np.argmax(counts > 0) : -1]  # bins from the lowest lattice point on
    assert len(set(counts.tolist())) == 1
    assert np.all(np.abs(np.subtract.outer(z_edges, z_lattice)) > 1e-9)  # no point on an edge


# -- planted structure through the SQL path -------------------------------------------------

N_PLANTED = 2000
HARD = np.arange(20)
EASY = np.arange(20, 40)


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """20 negatives almost always in the hardest 10%, 20 never, 1960 exchangeable."""
    prop = np.zeros(N_PLANTED)
    prop[HARD], prop[EASY] = 3.0, -3.0
    labels = (np.arange(N_PLANTED) % 10).astype(np.int16)
    pairs = simulate_pairs(
        0,
        n_ids=N_PLANTED,
        queue=256,
        queries=16,
        steps=120,
        propensity=prop,
    )
    return write_run(
        tmp_path_factory.mktemp("planted"), "planted", queue_size=256, pairs=pairs, labels=labels
    )


@pytest.fixture(scope="module")
def planted_result(planted: Path) -> Any:
    return consistency(connect(planted), band="0-10", seed=0, permutations=200)


def test_planted_hard_and_easy_negatives_are_found(planted_result: Any) -> None:
    r = planted_result
    assert r.band == "0-10" and r.kept == 26 and r.kept_fraction == 26 / 256
    assert r.n_pairs == 120 * 16 * 256 and r.n_negatives == N_PLANTED
    assert r.p_value < 1e-6 and r.dispersion_ratio > 5 and r.tarone_p_value < 1e-6
    hard, easy = set(r.hard_ids), set(r.easy_ids)
    assert len(hard & set(HARD.tolist())) >= 0.9 * len(HARD)
    assert len(hard - set(HARD.tolist())) <= 2
    assert len(easy & set(EASY.tolist())) >= 0.9 * len(EASY)
    # the planted hard negatives take band slots, so exchangeable ones sit slightly below p:
    # a handful of them are (correctly) called easy
    assert len(easy - set(EASY.tolist())) <= 10
    assert r.n_consistently_hard == len(hard) and r.n_consistently_easy == len(easy)
    # ids come most significant first
    pn = r.per_negative
    p_of = dict(zip(pn["neg_id"].to_list(), pn["p"].to_list(), strict=True))
    assert [p_of[i] for i in r.hard_ids] == sorted(p_of[i] for i in r.hard_ids)


def test_per_negative_table_matches_numpy(planted: Path, planted_result: Any) -> None:
    pn = planted_result.per_negative
    assert pn.columns == ["neg_id", "label", "m", "k", "rate", "expected", "z", "p", "q", "call"]
    import pyarrow.parquet as pq

    table = pq.read_table(planted / "pairs", columns=["neg_id", "rank"])
    pairs = {c: table.column(c).to_numpy() for c in ("neg_id", "rank")}
    ids, m, k = numpy_counts(pairs, 256, "0-10")
    assert pn["neg_id"].to_list() == ids.tolist()
    assert pn["m"].to_list() == m.tolist() and pn["k"].to_list() == k.tolist()
    assert pn["label"].to_list() == (ids % 10).tolist()
    assert planted_result.statistic == pytest.approx(dispersion_statistic(k, m, 26 / 256))
    calls = dict(zip(pn["neg_id"].to_list(), pn["call"].to_list(), strict=True))
    assert {i for i, c in calls.items() if c == "hard"} == set(planted_result.hard_ids)
    assert pn["q"].to_numpy() == pytest.approx(benjamini_hochberg(pn["p"].to_numpy()))


def test_permutation_check_destroys_the_planted_structure(planted_result: Any) -> None:
    pc = planted_result.permutation
    assert 0.9 < pc.dispersion_ratio < 1.1
    assert pc.p_value > 0.001
    assert pc.n_consistently_hard + pc.n_consistently_easy <= 2


def test_histogram_shows_the_planted_tails(planted_result: Any) -> None:
    h = planted_result.rate_histogram
    assert h["observed"].sum() == N_PLANTED
    assert h["null"].sum() == pytest.approx(N_PLANTED, rel=1e-9)
    high = h.filter(h["rate_lo"] > 0.5)
    assert high["observed"].sum() >= 18 and high["null"].sum() < 1e-6
    z = planted_result.z_histogram
    assert z["observed"].sum() == N_PLANTED and z["null"].sum() == pytest.approx(N_PLANTED)


def test_shuffle_keeps_exactly_the_band_per_query(tmp_path: Path) -> None:
    """The SQL shuffle is a permutation of each query's ranks: exactly kept_count in the band."""
    band = parse_band("0-25")  # 16 of 64
    one = write_run(
        tmp_path,
        "one",
        queue_size=64,
        pairs=simulate_pairs(5, n_ids=64, queue=64, queries=1, steps=1),
    )
    con = connect(one)
    hits = np.zeros(64)
    for seed in range(100):
        ids, m, k = shuffled_counts(con, band, 64, ["one"], seed)
        assert ids.tolist() == list(range(64)) and set(m.tolist()) == {1}
        assert k.sum() == 16  # one query: exactly its band, whatever the seed
        hits += k
    # every slot is drawn a quarter of the time: uniform over the 64 slots
    assert stats.chisquare(hits).pvalue > 1e-3
    pairs = simulate_pairs(6, n_ids=64, queue=64, queries=8, steps=10)
    many = write_run(tmp_path, "many", queue_size=64, pairs=pairs)
    _, _, k_true = numpy_counts(pairs, 64, "0-25")
    _, _, k0 = shuffled_counts(connect(many), band, 64, ["many"], 0)
    _, _, k0_again = shuffled_counts(connect(many), band, 64, ["many"], 0)
    _, _, k1 = shuffled_counts(connect(many), band, 64, ["many"], 1)
    assert k0.sum() == k1.sum() == k_true.sum() == 80 * 16
    assert np.array_equal(k0, k0_again) and not np.array_equal(k0, k1)
    assert not np.array_equal(k0, k_true)


def test_shuffle_is_independent_between_queries(tmp_path: Path) -> None:
    """Every query ranks the queue identically; the shuffle must still be fresh per query."""
    queries, queue = 300, 64
    pairs = simulate_pairs(0, n_ids=queue, queue=queue, queries=1, steps=1)
    same = {c: np.tile(v, queries) for c, v in pairs.items()}
    same["query_id"] = np.repeat(np.arange(queries, dtype=np.int32), queue)
    run = write_run(tmp_path, "same", queue_size=queue, pairs=same)
    r = consistency(connect(run), band="0-25", permutations=0, class_check=False)
    assert r.dispersion_ratio > 50  # perfectly consistent hardness
    assert 0.6 < r.permutation.dispersion_ratio < 1.5 and r.permutation.p_value > 1e-3


def test_null_slots_are_excluded(tmp_path: Path) -> None:
    pairs = simulate_pairs(2, n_ids=100, queue=64, queries=4, steps=6)
    neg = pairs["neg_id"].astype(np.int64)
    neg[pairs["step"] == 0] = -1  # the queue's random initial keys
    neg[(pairs["step"] == 1) & (pairs["rank"] % 3 == 0)] = -1
    import pyarrow as pa

    pairs["neg_id"] = pa.array(neg, pa.int32(), mask=neg < 0)  # type: ignore[assignment]
    run = write_run(tmp_path, "nulls", queue_size=64, pairs=pairs)
    ids, m, k = numpy_counts({"neg_id": neg, "rank": pairs["rank"]}, 64, "0-5")
    r = consistency(connect(run), band="0-5", permutations=0)
    assert r.n_pairs == int(np.count_nonzero(neg >= 0)) == int(m.sum())
    assert r.per_negative["k"].to_list() == k.tolist()
    assert r.permutation is not None and r.permutation.df == len(ids)


def test_band_unions_count_every_interval(tmp_path: Path) -> None:
    pairs = simulate_pairs(3, n_ids=80, queue=64, queries=4, steps=5)
    run = write_run(tmp_path, "u", queue_size=64, pairs=pairs)
    r = consistency(connect(run), band="0-5,50-55", permutation_check=False, permutations=0)
    _, _, k = numpy_counts(pairs, 64, "0-5,50-55")
    assert r.kept == 8 and r.per_negative["k"].to_list() == k.tolist()


# -- the analytic null -----------------------------------------------------------------------


def simulate_null_pairs(
    seed: int, n_ids: int = 96, queue: int = 64, queries: int = 8, steps: int = 40
) -> dict[str, np.ndarray]:
    """Exchangeable hardness, vectorised: each step's queue is a random ``queue`` of ``n_ids``
    ids and each query ranks it in uniformly random order (m ~ 213, m p ~ 53 for band 0-25)."""
    rng = np.random.default_rng(seed)
    ids = np.argsort(rng.random((steps, n_ids)), axis=1)[:, :queue]
    order = np.argsort(rng.random((steps, queries, queue)), axis=2)
    neg = np.take_along_axis(np.broadcast_to(ids[:, None, :], order.shape), order, axis=2)
    n = steps * queries * queue
    q_ids = np.argsort(rng.random((steps, n_ids)), axis=1)[:, :queries]
    return {
        "step": np.repeat(np.arange(steps, dtype=np.int32), queries * queue),
        "epoch": np.zeros(n, np.int16),
        "query_id": np.repeat(q_ids.ravel(), queue).astype(np.int32),
        "neg_id": neg.ravel().astype(np.int32),
        "rank": np.tile(np.arange(1, queue + 1, dtype=np.int32), n // queue),
        "similarity": np.zeros(n, np.float16),
        "in_band": np.ones(n, bool),
    }


def null_statistic(pairs: dict[str, np.ndarray]) -> tuple[float, int, float]:
    ids, m, k = numpy_counts(pairs, 64, "0-25")
    x2 = dispersion_statistic(k, m, 0.25)
    return x2, len(ids), chi2_upper_tail(x2, len(ids))[0]


def test_null_false_positive_rate_and_sql_agreement(tmp_path: Path) -> None:
    """Exchangeable random ranks: the overdispersion test rejects at its nominal rate."""
    n_logs = 1000
    p_values, tarone_p = [], []
    for seed in range(n_logs):
        pairs = simulate_null_pairs(1000 + seed)
        x2, n, p = null_statistic(pairs)
        p_values.append(p)
        _, m, k = numpy_counts(pairs, 64, "0-25")
        tarone_p.append(stats.norm.sf(tarone_z(k, m, 0.25)))
        if seed < 3:  # the SQL path on the same logs gives the same numbers
            run = write_run(tmp_path, f"null{seed}", queue_size=64, pairs=pairs)
            r = consistency(connect(run), band="0-25", permutations=0)
            assert r.n_negatives == n and r.statistic == pytest.approx(x2, rel=1e-12)
            assert r.p_value == pytest.approx(p, rel=1e-9)
            assert r.per_negative["m"].to_list() == m.tolist()
            assert r.per_negative["k"].to_list() == k.tolist()
    rate = float(np.mean(np.array(p_values) < 0.05))
    assert 0.02 <= rate <= 0.08, rate
    assert 0.02 <= float(np.mean(np.array(tarone_p) < 0.05)) <= 0.08
    assert stats.kstest(p_values, "uniform").pvalue > 1e-3


# -- class-conditional ----------------------------------------------------------------------


def test_hardness_by_class_only_is_explained_by_class(tmp_path: Path) -> None:
    n_ids = 128
    labels = (np.arange(n_ids) % 4).astype(np.int16)
    pairs = simulate_pairs(
        11,
        n_ids=n_ids,
        queue=n_ids,
        queries=8,
        steps=60,
        labels=labels,
        class_shift=np.array([0.8, 0.3, 0.0, -0.4]),
        same_class=0.7,
    )
    run = write_run(tmp_path, "classes", queue_size=n_ids, pairs=pairs, labels=labels)
    r = consistency(connect(run), band="0-10", permutations=0)
    assert r.p_value < 1e-6 and r.dispersion_ratio > 2
    c = r.class_conditional
    assert c is not None and c.n_cells == 16 and c.df == n_ids - 16
    assert c.p_value > 0.01 and 0.75 < c.dispersion_ratio < 1.3
    # planted hardness beyond class stays significant beyond class
    assert r.permutation is not None and r.permutation.p_value > 0.001


def test_class_conditional_keeps_per_negative_hardness(planted_result: Any) -> None:
    c = planted_result.class_conditional
    assert c is not None and c.p_value < 1e-6 and c.n_cells == 100


def test_no_samples_table_skips_the_class_test(tmp_path: Path) -> None:
    run = write_run(
        tmp_path,
        "nolabels",
        queue_size=64,
        pairs=simulate_pairs(1, n_ids=80, queue=64, queries=4, steps=4),
    )
    r = consistency(connect(run), band="0-10", permutation_check=False, permutations=0)
    assert r.class_conditional is None and any("samples" in n for n in r.notes)
    assert r.per_negative["label"].null_count() == r.n_negatives


# -- persistence -----------------------------------------------------------------------------


def test_persistent_hardness_correlates_between_halves(tmp_path: Path) -> None:
    prop = np.random.default_rng(0).normal(0, 0.5, 300)
    pairs = simulate_pairs(4, n_ids=300, queue=128, queries=8, steps=40, propensity=prop)
    run = write_run(tmp_path, "persist", queue_size=128, pairs=pairs)
    r = consistency(connect(run), band="0-5", permutations=1000, permutation_check=False)
    t = r.temporal
    assert t is not None and t.mode == "halves" and "steps 0-19" in t.first
    assert t.n_negatives == 300 and t.rho > 0.7
    assert t.p_value < 1e-10 and t.p_permutation == pytest.approx(1 / 1001)


def test_independent_halves_give_uniform_p(tmp_path: Path) -> None:
    p_an, p_perm = [], []
    for seed in range(6):
        rng = np.random.default_rng(100 + seed)
        # a fresh propensity in each half: hardness that does not persist
        a = simulate_pairs(
            seed, n_ids=150, queue=64, queries=4, steps=20, propensity=rng.normal(0, 0.5, 150)
        )
        b = simulate_pairs(
            seed + 50,
            n_ids=150,
            queue=64,
            queries=4,
            steps=20,
            first_step=20,
            propensity=rng.normal(0, 0.5, 150),
        )
        pairs = {c: np.concatenate([a[c], b[c]]) for c in a}
        run = write_run(tmp_path, f"indep{seed}", queue_size=64, pairs=pairs)
        t = consistency(
            connect(run),
            band="0-5",
            permutations=500,
            seed=seed,
            permutation_check=False,
            class_check=False,
        ).temporal
        assert t is not None and t.n_negatives >= 140
        p_an.append(t.p_value)
        p_perm.append(t.p_permutation)
    assert min(p_an) > 0.005 and 0.15 < float(np.mean(p_an)) < 0.85
    assert np.allclose(p_an, p_perm, atol=0.08)


def test_epochs_and_against_splits(tmp_path: Path) -> None:
    prop = np.random.default_rng(1).normal(0, 0.5, 200)
    pairs = simulate_pairs(
        6,
        n_ids=200,
        queue=64,
        queries=4,
        steps=30,
        propensity=prop,
        epoch_of_step=lambda s: s // 10,
    )
    run = write_run(tmp_path, "s0", queue_size=64, pairs=pairs)
    r = consistency(
        connect(run), band="0-5", epochs=(0, 2), permutations=200, permutation_check=False
    )
    assert r.temporal is not None and r.temporal.mode == "epochs"
    assert (r.temporal.first, r.temporal.second) == ("epoch 0", "epoch 2")
    assert r.temporal.rho > 0.3 and r.temporal.p_value < 1e-4
    with pytest.raises(ConfigError, match="epoch 7 has no logged pairs"):
        consistency(connect(run), epochs=(0, 7))
    other = write_run(
        tmp_path,
        "s1",
        queue_size=64,
        pairs=simulate_pairs(7, n_ids=200, queue=64, queries=4, steps=30, propensity=prop),
    )
    con = connect(run, other)
    r2 = consistency(con, band="0-5", against="s1", permutations=200, permutation_check=False)
    assert r2.runs == ("s0",) and r2.n_pairs == 30 * 4 * 64
    assert r2.temporal is not None and r2.temporal.mode == "runs" and r2.temporal.second == "s1"
    assert r2.temporal.rho > 0.5
    # both runs pooled: counts add up
    pooled = consistency(con, band="0-5", permutation_check=False, permutations=0)
    assert pooled.n_pairs == 2 * 30 * 4 * 64 and pooled.runs == ("s0", "s1")
    assert consistency(con, runs=["s1"], permutation_check=False).n_pairs == 30 * 4 * 64


# -- errors ----------------------------------------------------------------------------------


def test_bad_inputs_raise_one_line_errors(tmp_path: Path) -> None:
    pairs = simulate_pairs(1, n_ids=80, queue=64, queries=4, steps=4)
    a = write_run(tmp_path, "a", queue_size=64, pairs=pairs)
    b = write_run(
        tmp_path,
        "b",
        queue_size=128,
        pairs=simulate_pairs(1, n_ids=200, queue=128, queries=2, steps=2),
    )
    con = connect(a)
    cases: list[tuple[dict[str, Any], type[Exception], str]] = [
        ({"band": "random:5"}, ConfigError, "keeps random negatives"),
        ({"band": "0-100"}, ConfigError, "keeps every negative"),
        ({"band": "0.5-1"}, ConfigError, "keeps no negative"),
        ({"band": "5-"}, ConfigError, "malformed band"),
        ({"fdr": 1.5}, ConfigError, "between 0 and 1"),
        ({"permutations": -1}, ConfigError, r"0 \(none\) or more"),
        ({"runs": ["zzz"]}, RunError, "not among"),
        ({"against": "a"}, RunError, "besides"),
        ({"epochs": (0, 1), "against": "a"}, ConfigError, "either --epochs or --against"),
    ]
    for kwargs, error, text in cases:
        with pytest.raises(error, match=text) as info:
            consistency(con, **kwargs)
        assert "\n" not in str(info.value)
    with pytest.raises(RunError, match="different queue sizes"):
        consistency(connect(a, b))
    empty = write_run(tmp_path, "empty", queue_size=64)
    with pytest.raises(LogError, match="no pairs"):
        consistency(connect(empty))
