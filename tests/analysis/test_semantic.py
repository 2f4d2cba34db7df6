"""Semantic similarity of hard negatives: hand-computed fixtures, slow references, nulls."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any

import nltk
import numpy as np
import pyarrow as pa
import pytest
from scipy import stats

from hardstat.analysis import logs
from hardstat.analysis import semantic as S
from hardstat.analysis import stats as stats_mod
from hardstat.analysis import wordnet as W
from hardstat.bands import parse_band
from hardstat.classes import ClassInfo
from hardstat.errors import ConfigError, LogError, WordNetError

# Three classes with a hand-written similarity (query label = row, negative label = column).
SIM3 = np.array([[1.0, 0.8, 0.2], [0.8, 1.0, 0.3], [0.2, 0.3, 1.0]])
CLASSES3 = tuple(ClassInfo(i, name) for i, name in enumerate(("a", "b", "c")))


def pairs(rows: list[tuple[int, int, int | None, int]]) -> dict[str, Any]:
    """Pair columns from (step, query_id, neg_id or None, rank) rows."""
    step, query, neg, rank = zip(*rows, strict=True)
    return {
        "step": np.array(step, np.int32),
        "query_id": np.array(query, np.int32),
        "neg_id": pa.array(neg, pa.int32()),
        "rank": np.array(rank, np.int32),
        "similarity": np.zeros(len(rows), np.float16),
        "in_band": np.ones(len(rows), bool),
    }


def connect(*run_dirs: Path) -> Any:
    return logs.connect(logs.find_runs(run_dirs))


# --- the hand-computed fixture --------------------------------------------------------------

# labels of samples 0..7; sample 99 has no samples row (unknown label)
LABELS8 = np.array([0, 1, 2, 0, 1, 2, 0, 1])
HAND_ROWS = [
    # query 0 (label a): ranks 1..4 = samples 3 (a), 1 (b), 2 (c), 5 (c)
    (0, 0, 3, 1), (0, 0, 1, 2), (0, 0, 2, 3), (0, 0, 5, 4),
    # query 1 (label b): samples 4 (b), 2 (c), 6 (a), 7 (b)
    (0, 1, 4, 1), (0, 1, 2, 2), (0, 1, 6, 3), (0, 1, 7, 4),
    # query 2 (label c): sample 5 (c), a null key, sample 0 (a), sample 99 (no label)
    (0, 2, 5, 1), (0, 2, None, 2), (0, 2, 0, 3), (0, 2, 99, 4),
]  # fmt: skip


@pytest.fixture
def hand_run(make_run: Callable[..., Path]) -> Path:
    return make_run("hand", queue_size=4, pairs=pairs(HAND_ROWS), labels=LABELS8, classes=CLASSES3)


def test_hand_computed_bins(hand_run: Path) -> None:
    r = S.semantic(
        connect(hand_run), bins=[(0, 50), (50, 100)], bootstrap=0, permutations=0,
        similarity=SIM3,
    )  # fmt: skip
    hard, easy = r.bins
    # ranks 1-2 (p = 0, 25): similarities 1, .8 | 1, .3 | 1 (the null key is dropped)
    assert (hard.rank_first, hard.rank_last, hard.n_pairs, hard.n_queries) == (1, 2, 5, 3)
    assert hard.mean_similarity == pytest.approx((1 + 0.8 + 1 + 0.3 + 1) / 5)
    assert hard.same_class_fraction == pytest.approx(3 / 5)
    # ranks 3-4 (p = 50, 75): .2, .2 | .8, 1 | .2 (sample 99 has no label)
    assert (easy.rank_first, easy.rank_last, easy.n_pairs, easy.n_queries) == (3, 4, 5, 3)
    assert easy.mean_similarity == pytest.approx((0.2 + 0.2 + 0.8 + 1 + 0.2) / 5)
    assert easy.same_class_fraction == pytest.approx(1 / 5)
    assert (r.n_pairs, r.n_queries, r.n_pairs_excluding_same_class) == (10, 3, 6)
    assert r.mean_similarity == pytest.approx(6.5 / 10)
    assert r.same_class_fraction == pytest.approx(0.4)
    assert r.similarity_source == "given matrix" and r.measure == "given"
    assert np.isnan(r.diagonal)
    assert np.isnan(hard.ci_lo) and np.isnan(r.p_value)  # no bootstrap, no permutations

    # Spearman's rho against scipy on the expanded pairs (the slow reference)
    rank = [1, 2, 3, 4, 1, 2, 3, 4, 1, 3]
    sim = [1, 0.8, 0.2, 0.2, 1, 0.3, 0.8, 1, 1, 0.2]
    same = [1, 0, 0, 0, 1, 0, 0, 1, 1, 0]
    ref = stats.spearmanr(rank, sim)
    assert r.spearman_rho == pytest.approx(ref.statistic, abs=1e-12)
    assert r.p_value_analytic == pytest.approx(ref.pvalue, rel=1e-9)
    keep = [i for i, s in enumerate(same) if not s]
    ref_excl = stats.spearmanr([rank[i] for i in keep], [sim[i] for i in keep])
    assert r.spearman_rho_excluding_same_class == pytest.approx(ref_excl.statistic, abs=1e-12)
    assert r.p_value_analytic_excluding_same_class == pytest.approx(ref_excl.pvalue, rel=1e-9)


def test_result_dict_has_the_documented_keys(hand_run: Path) -> None:
    d = S.semantic(connect(hand_run), bootstrap=50, permutations=200, similarity=SIM3).to_dict()
    for key in (
        "measure", "bins", "spearman_rho", "p_value", "spearman_rho_excluding_same_class",
        "p_value_excluding_same_class", "p_value_analytic", "permutations", "bootstrap",
    ):  # fmt: skip
        assert key in d
    assert len(d["bins"]) == len(S.DEFAULT_BINS)
    for b in d["bins"]:
        assert {"lo", "hi", "n_pairs", "mean_similarity", "same_class_fraction"} <= set(b)
        assert {"ci_lo", "ci_hi", "same_class_ci_lo", "same_class_ci_hi"} <= set(b)
    # K = 4: the 0-0.1 bin holds rank 1; 0.1-1, 1-5, 5-10 are empty (nulls, not NaN)
    empty = d["bins"][1]
    assert (empty["n_pairs"], empty["mean_similarity"], empty["rank_first"]) == (0, None, 2)
    assert d["permutations"] == 200 and 0 < d["p_value"] <= 1


# --- bins -----------------------------------------------------------------------------------


def test_bins_are_the_band_count_rule() -> None:
    for k in (1, 7, 16, 100, 256, 1000, 4096):
        for lo, hi in S.DEFAULT_BINS:
            first, last = S.bin_ranks(lo, hi, k)
            # the percentile definition, in exact arithmetic
            by_percentile = [r for r in range(1, k + 1) if lo <= Fraction(100 * (r - 1), k) < hi]
            assert list(range(first, last + 1)) == by_percentile
            # the bands module's rule for the band lo-hi
            intervals = parse_band(f"{float(lo):g}-{float(hi):g}").rank_intervals(k)
            kept = [r for a, b in intervals for r in range(a + 1, b + 1)]
            assert kept == by_percentile
    assert S.bin_ranks(*S.DEFAULT_BINS[0], 4096) == (1, 5)
    assert S.bin_ranks(Fraction(0), Fraction(5), 4096) == (1, 205)


def test_bin_validation() -> None:
    assert S.bins_from_edges(["0", "0.1", "100"]) == (
        (Fraction(0), Fraction(1, 10)),
        (Fraction(1, 10), Fraction(100)),
    )
    for bad in ([(5, 1)], [(0, 101)], [(0, 10), (5, 20)], []):
        with pytest.raises(ConfigError):
            S.check_bins(bad)
    with pytest.raises(ConfigError):
        S.bins_from_edges(["0"])


# --- a random fixture against a slow reference ----------------------------------------------


def random_run(
    make: Callable[..., Path], name: str, k: int, *, seed: int, n_samples: int = 60
) -> tuple[Path, list[tuple[int, int, int | None, int]], np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n_samples)
    rows: list[tuple[int, int, int | None, int]] = []
    for step in range(3):
        for query in rng.choice(n_samples, 6, replace=False):
            negs = rng.choice(n_samples + 5, k, replace=True)  # ids >= n_samples: no label
            for rank, neg in enumerate(negs, start=1):
                null = rng.random() < 0.05
                rows.append((step, int(query), None if null else int(neg), rank))
    run = make(name, queue_size=k, pairs=pairs(rows), labels=labels, classes=CLASSES3)
    return run, rows, labels


def reference(
    runs: list[tuple[list[tuple[int, int, int | None, int]], np.ndarray, int]],
    bins: tuple[tuple[Fraction, Fraction], ...],
) -> dict[str, Any]:
    """Per-bin statistics and Spearman's rho by looping over the expanded pairs."""
    x, y, same, per_bin = [], [], [], [[] for _ in bins]
    for rows, labels, k in runs:
        for _step, query, neg, rank in rows:
            if neg is None or neg >= len(labels):
                continue
            a, b = labels[query], labels[neg]
            p = Fraction(100 * (rank - 1), k)
            x.append((rank - 1) / k)
            y.append(SIM3[a, b])
            same.append(a == b)
            for i, (lo, hi) in enumerate(bins):
                if lo <= p < hi:
                    per_bin[i].append((SIM3[a, b], a == b))
    keep = [i for i, s in enumerate(same) if not s]
    return {
        "n": [len(v) for v in per_bin],
        "mean": [np.mean([s for s, _ in v]) if v else np.nan for v in per_bin],
        "same": [np.mean([q for _, q in v]) if v else np.nan for v in per_bin],
        "rho": stats.spearmanr(x, y).statistic,
        "rho_excl": stats.spearmanr([x[i] for i in keep], [y[i] for i in keep]).statistic,
        "n_pairs": len(x),
    }


def test_matches_a_slow_reference_on_two_runs_with_different_k(
    make_run: Callable[..., Path],
) -> None:
    run_a, rows_a, lab_a = random_run(make_run, "a", 40, seed=1)
    run_b, rows_b, lab_b = random_run(make_run, "b", 25, seed=2)
    bins = S.bins_from_edges([0, 1, 5, 10, 25, 50, 75, 95, 100])
    r = S.semantic(connect(run_a, run_b), bins=bins, bootstrap=0, permutations=0, similarity=SIM3)
    ref = reference([(rows_a, lab_a, 40), (rows_b, lab_b, 25)], bins)
    assert [b.n_pairs for b in r.bins] == ref["n"]
    np.testing.assert_allclose([b.mean_similarity for b in r.bins], ref["mean"], rtol=1e-12)
    np.testing.assert_allclose([b.same_class_fraction for b in r.bins], ref["same"], rtol=1e-12)
    assert r.n_pairs == ref["n_pairs"]
    assert r.spearman_rho == pytest.approx(ref["rho"], abs=1e-12)
    assert r.spearman_rho_excluding_same_class == pytest.approx(ref["rho_excl"], abs=1e-12)
    assert all(b.rank_first is None for b in r.bins)  # two queue sizes: no common ranks


# --- bootstrap ------------------------------------------------------------------------------


def test_bootstrap_ratio_ci_matches_explicit_resampling() -> None:
    rng = np.random.default_rng(3)
    den = rng.integers(0, 5, (30, 4)).astype(float)
    num = den * rng.random((30, 4))
    ((lo, hi),) = stats_mod.bootstrap_ratio_ci([num], den, 100, np.random.default_rng(7), chunk=16)
    # the same draws, resampled unit by unit
    draw = np.random.default_rng(7)
    ratios = []
    for start in range(0, 100, 16):
        c = min(16, 100 - start)
        for idx in draw.integers(0, 30, size=(c, 30)):
            ratios.append([num[idx, b].sum() / den[idx, b].sum() for b in range(4)])
    ref = np.percentile(np.array(ratios), [2.5, 97.5], axis=0)
    np.testing.assert_allclose(lo, ref[0], rtol=1e-12)
    np.testing.assert_allclose(hi, ref[1], rtol=1e-12)


def test_bootstrap_ci_contains_the_estimate_and_is_seeded(make_run: Callable[..., Path]) -> None:
    run, _, _ = random_run(make_run, "r", 64, seed=4)
    con = connect(run)
    kw: dict[str, Any] = {"permutations": 0, "similarity": SIM3, "bootstrap": 300}
    a, b, c = S.semantic(con, **kw), S.semantic(con, **kw), S.semantic(con, **kw, seed=1)
    assert a.to_dict() == b.to_dict()  # same seed, same numbers
    assert a.to_dict() != c.to_dict()
    for x in a.bins:
        if x.n_pairs:
            assert x.ci_lo <= x.mean_similarity <= x.ci_hi
            assert x.same_class_ci_lo <= x.same_class_fraction <= x.same_class_ci_hi
            assert x.ci_lo < x.ci_hi


# --- the permutation null -------------------------------------------------------------------


def test_label_statistic_matches_a_slow_reference(
    make_run: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    run_a, rows_a, lab_a = random_run(make_run, "a", 24, seed=5)
    run_b, rows_b, lab_b = random_run(make_run, "b", 16, seed=6)
    con = connect(run_a, run_b)
    captured: dict[str, Any] = {}
    real = S.permutation_rhos

    def spy(neg: S.NegativeSums, sim: np.ndarray, n: int, rng: Any) -> Any:
        captured.update(neg=neg, sim=sim)
        return real(neg, sim, n, rng)

    monkeypatch.setattr(S, "permutation_rhos", spy)
    r = S.semantic(con, bootstrap=0, permutations=200, similarity=SIM3)
    neg = captured["neg"]
    # observed labels: the statistic over all pairs is Spearman's rho itself
    t_all, t_excl = S.label_statistic(neg, captured["sim"], neg.label)
    assert t_all == pytest.approx(r.spearman_rho, abs=1e-12)
    assert t_excl == pytest.approx(r.spearman_rho_excluding_same_class, abs=0.02)

    # random relabelings within each run, against the expanded pairs
    runs = [("a", rows_a, lab_a, 24), ("b", rows_b, lab_b, 16)]
    rng = np.random.default_rng(0)
    for _ in range(3):
        new_labels = {}
        for s, (_, rows, labels, _) in enumerate(runs):
            ids = sorted({n for _, _, n, _ in rows if n is not None and n < len(labels)})
            new_labels[s] = dict(zip(ids, rng.permutation([labels[i] for i in ids]), strict=True))
        by_row = []  # neg rows are sorted by run, then neg_id (see _negative_sums)
        for s in range(2):
            by_row += [new_labels[s][i] for i in sorted(new_labels[s])]
        got = S.label_statistic(neg, captured["sim"], np.array(by_row))
        assert got == pytest.approx(slow_statistic(runs, new_labels), abs=1e-12)


def slow_statistic(
    runs: list[tuple[str, list[tuple[int, int, int | None, int]], np.ndarray, int]],
    neg_labels: dict[int, dict[int, int]],
) -> tuple[float, float]:
    """Pearson of (rank percentile midranks over all pairs, similarity midranks over the kept
    pairs), pair by pair."""
    x, y, same = [], [], []
    for s, (_, rows, labels, k) in enumerate(runs):
        for _step, query, neg, rank in rows:
            if neg is None or neg >= len(labels):
                continue
            a, b = labels[query], neg_labels[s][neg]
            x.append((rank - 1) / k)
            y.append(SIM3[a, b])
            same.append(a == b)
    rx = stats.rankdata(x)
    x_arr, y_arr, keep = np.array(rx), np.array(y), ~np.array(same)
    rho_all = np.corrcoef(x_arr, stats.rankdata(y_arr))[0, 1]
    rho_excl = np.corrcoef(x_arr[keep], stats.rankdata(y_arr[keep]))[0, 1]
    return rho_all, rho_excl


def planted_run(make: Callable[..., Path], name: str, *, structured: bool, seed: int = 0) -> Path:
    """30 queries x K = 30 negatives from 90 samples of 3 classes; with structure, the hardest
    negatives are of the query's class, then of the most similar class, then the rest."""
    rng = np.random.default_rng(seed)
    labels = np.repeat([0, 1, 2], 30)
    rows: list[tuple[int, int, int | None, int]] = []
    for step, query in enumerate(rng.choice(90, 30, replace=False)):
        negs = rng.choice(np.delete(np.arange(90), query), 30, replace=False)
        if structured:
            a = labels[query]
            key = [(-SIM3[a, labels[n]], rng.random()) for n in negs]
            negs = negs[sorted(range(30), key=lambda i: key[i])]
        rows += [(step, int(query), int(n), rank) for rank, n in enumerate(negs, start=1)]
    return make(name, queue_size=30, pairs=pairs(rows), labels=labels, classes=CLASSES3)


def test_permutation_p_is_small_for_planted_structure(make_run: Callable[..., Path]) -> None:
    r = S.semantic(
        connect(planted_run(make_run, "planted", structured=True)),
        bootstrap=0, permutations=200, similarity=SIM3,
    )  # fmt: skip
    assert r.spearman_rho < -0.5 and r.spearman_rho_excluding_same_class < -0.3
    assert r.p_value == pytest.approx(1 / 201)  # no shuffle reaches the observed |rho|
    assert r.p_value_excluding_same_class == pytest.approx(1 / 201)
    assert r.bins[0].same_class_fraction > r.same_class_fraction


def test_permutation_p_is_large_for_random_labels(make_run: Callable[..., Path]) -> None:
    """Ten datasets whose ranks ignore the labels: p-values spread over (0, 1]."""
    results = [
        S.semantic(
            connect(planted_run(make_run, f"null{seed}", structured=False, seed=seed)),
            bootstrap=0, permutations=200, similarity=SIM3, seed=seed,
        )
        for seed in range(10)
    ]  # fmt: skip
    # under the null p is uniform (checked on 400 such datasets while writing this test: 3.8%
    # below 0.05, 10% below 0.1, permutation SD of rho 0.0323 vs 0.0322 across datasets)
    for key in ("p_value", "p_value_excluding_same_class"):
        ps = [getattr(r, key) for r in results]
        assert min(ps) > 0.005  # P(any of 10 below 0.005 | null) = 5%
        assert sum(p < 0.05 for p in ps) <= 2  # P(3+ of 10 below 0.05 | null) = 1.2%
        assert max(ps) > 0.5
    assert all(abs(r.spearman_rho) < 0.1 for r in results)


def test_pvalue_helpers() -> None:
    observed, perm = 0.5, np.array([0.1, -0.6, 0.5, 0.2])
    assert stats_mod.permutation_pvalue(observed, perm) == pytest.approx(3 / 5)
    assert np.isnan(stats_mod.permutation_pvalue(float("nan"), np.zeros(3)))
    for rho, n in ((0.3, 20), (-0.05, 1000), (0.0, 5)):
        t = rho * np.sqrt((n - 2) / (1 - rho**2))
        assert stats_mod.spearman_t_pvalue(rho, n) == pytest.approx(2 * stats.t.sf(abs(t), n - 2))


def test_spearman_from_counts_equals_scipy_on_expanded_pairs() -> None:
    rng = np.random.default_rng(8)
    x = rng.integers(0, 6, 40).astype(float)
    y = rng.choice([0.2, 0.5, 0.5, 1.0], 40)
    w = rng.integers(0, 4, 40)
    expanded = stats.spearmanr(np.repeat(x, w), np.repeat(y, w)).statistic
    assert stats_mod.spearman_from_counts(x, y, w) == pytest.approx(expanded, abs=1e-12)


# --- WordNet tables and errors --------------------------------------------------------------


def test_cifar10_runs_use_the_shipped_table_without_a_corpus(
    make_run: Callable[..., Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(nltk.data, "path", [])
    monkeypatch.delenv("NLTK_DATA", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    labels = np.array([3] * 4 + [5] * 4)  # cats and dogs
    rows = [(0, q, n, rank) for q in (0, 1) for rank, n in enumerate((4, 5, 6, 7), start=1)]
    run = make_run("c10", queue_size=4, pairs=pairs(rows), labels=labels)  # CIFAR-10 classes
    for measure, want in (("wup", 0.857), ("path", 0.2), ("lch", 2.028)):
        r = S.semantic(connect(run), measure, bootstrap=0, permutations=0)
        assert r.similarity_source == "shipped table cifar10"
        assert r.measure == measure and r.diagonal == W.DIAGONAL[measure]
        assert round(r.mean_similarity, 3) == want and r.same_class_fraction == 0


def test_errors(make_run: Callable[..., Path], hand_run: Path, tmp_path: Path) -> None:
    con = connect(hand_run)
    with pytest.raises(ConfigError, match="at least 200"):
        S.semantic(con, permutations=50, similarity=SIM3)
    with pytest.raises(ConfigError, match="measure"):
        S.semantic(con, measure="jcn")
    with pytest.raises(ConfigError, match="square matrix"):
        S.semantic(con, similarity=np.ones((2, 2)))
    empty = make_run("empty", queue_size=4, labels=LABELS8, classes=CLASSES3)
    with pytest.raises(LogError, match="no logged pair"):
        S.semantic(connect(empty), similarity=SIM3, permutations=0)
    # classes without synsets and not CIFAR: WordNet cannot help, with or without a corpus
    with pytest.raises(WordNetError, match=r"class 0 \(a\) has no WordNet synset or wnid"):
        S.semantic(con, permutations=0, bootstrap=0)


def test_combinations_of_bins_and_runs_leave_the_connection_clean(hand_run: Path) -> None:
    con = connect(hand_run)
    for edges in itertools.islice(itertools.combinations([0, 10, 50, 90, 100], 3), 3):
        S.semantic(con, bins=S.bins_from_edges(edges), bootstrap=0, permutations=0, similarity=SIM3)
    names = {row[0] for row in con.sql("SHOW TABLES").fetchall()}
    assert not any(n.startswith("_hardstat_semantic") for n in names)
