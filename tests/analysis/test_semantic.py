"""Semantic analysis: hand-computed fixtures, slow references, the window, nulls."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
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

# Three classes with a hand-written class_similarity (query label = row, negative label = column).
SIM3 = np.array([[1.0, 0.8, 0.2], [0.8, 1.0, 0.3], [0.2, 0.3, 1.0]])
CLASSES3 = tuple(ClassInfo(i, name) for i, name in enumerate(("a", "b", "c")))
ALL = (0, None)  # every epoch

Row = tuple[int, int, int | None, int]  # (step, query_id, neg_id or None, rank)


def pairs(rows: list[Row], epochs: list[int] | None = None) -> dict[str, Any]:
    """Pair columns from (step, query_id, neg_id or None, rank) rows (epoch 0 unless given)."""
    step, query, neg, rank = zip(*rows, strict=True)
    out = {
        "step": np.array(step, np.int32),
        "query_id": np.array(query, np.int32),
        "neg_id": pa.array(neg, pa.int32()),
        "rank": np.array(rank, np.int32),
        "similarity": np.zeros(len(rows), np.float16),
        "in_band": np.ones(len(rows), bool),
    }
    if epochs is not None:
        out["epoch"] = np.array(epochs, np.int16)
    return out


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
    # query 6 (label a): its own image (a self-negative, left out), samples 1 (b), 3 (a), 2 (c)
    (0, 6, 6, 1), (0, 6, 1, 2), (0, 6, 3, 3), (0, 6, 2, 4),
]  # fmt: skip


@pytest.fixture
def hand_run(make_run: Callable[..., Path]) -> Path:
    return make_run("hand", queue_size=4, pairs=pairs(HAND_ROWS), labels=LABELS8, classes=CLASSES3)


def test_hand_computed_bins_and_contrasts(hand_run: Path) -> None:
    r = S.semantic(
        connect(hand_run), bins=[(0, 50), (50, 100)], bootstrap=0, permutations=0,
        class_similarity=SIM3,
    )  # fmt: skip
    hard, easy = r.bins
    # ranks 1-2 (p = 0, 25): a-a, a-b | b-b, b-c | c-c | (self left out), a-b
    assert (hard.rank_first, hard.rank_last, hard.n_pairs, hard.n_queries) == (1, 2, 6, 4)
    assert hard.same_class_fraction == pytest.approx(3 / 6)
    assert hard.n_pairs_different_class == 3
    assert hard.class_similarity_different_class == pytest.approx((0.8 + 0.3 + 0.8) / 3)
    # ranks 3-4 (p = 50, 75): a-c, a-c | b-a, b-b | c-a (sample 99 has no label) | a-a, a-c
    assert (easy.rank_first, easy.rank_last, easy.n_pairs, easy.n_queries) == (3, 4, 7, 4)
    assert easy.same_class_fraction == pytest.approx(2 / 7)
    assert easy.class_similarity_different_class == pytest.approx((0.2 + 0.2 + 0.8 + 0.2 + 0.2) / 5)
    assert (r.n_pairs, r.n_queries, r.n_steps, r.n_negatives) == (13, 4, 1, 8)
    assert r.n_self_negatives_excluded == 1 and r.n_pairs_excluding_same_class == 8
    assert r.same_class_fraction == pytest.approx(5 / 13)
    assert r.class_similarity_different_class == pytest.approx(3.5 / 8)
    assert r.class_similarity_source == "given matrix" and r.measure == "given"
    assert np.isnan(r.diagonal)
    assert np.isnan(hard.same_class_ci_lo) and np.isnan(r.p_value)  # no bootstrap, no permutations

    # contrasts, K = 4: the hardest 5% is rank 1 (p = 0), 25-75% ranks 2-3, 50-75% rank 3,
    # 95-100% no rank
    excess, gap_hard, gap_easy = (r.contrast(c.name, "hand") for c in S.CONTRASTS)
    assert (excess.value, excess.reference_value) == pytest.approx((3 / 3, 5 / 13))
    assert excess.estimate == pytest.approx(1 - 5 / 13)
    # rank 1 has no different-class pair (the self-negative is left out): no gap
    assert np.isnan(gap_hard.value) and np.isnan(gap_hard.estimate)
    # ranks 2-3 of different class: a-b .8, b-c .3, a-c .2, b-a .8, c-a .2, a-b .8
    assert gap_hard.reference_value == pytest.approx((0.8 + 0.3 + 0.2 + 0.8 + 0.2 + 0.8) / 6)
    assert np.isnan(gap_easy.value)

    # Spearman's rho against scipy on the expanded pairs (the slow reference)
    rank = [1, 2, 3, 4, 1, 2, 3, 4, 1, 3, 2, 3, 4]
    sim = [1, 0.8, 0.2, 0.2, 1, 0.3, 0.8, 1, 1, 0.2, 0.8, 1, 0.2]
    same = [1, 0, 0, 0, 1, 0, 0, 1, 1, 0, 0, 1, 0]
    ref = stats.spearmanr(rank, sim)
    assert r.spearman_rho == pytest.approx(ref.statistic, abs=1e-12)
    assert r.p_value_analytic == pytest.approx(ref.pvalue, rel=1e-9)
    keep = [i for i, s in enumerate(same) if not s]
    ref_excl = stats.spearmanr([rank[i] for i in keep], [sim[i] for i in keep])
    assert r.spearman_rho_excluding_same_class == pytest.approx(ref_excl.statistic, abs=1e-12)
    assert r.p_value_analytic_excluding_same_class == pytest.approx(ref_excl.pvalue, rel=1e-9)


def test_result_dict_has_the_documented_keys(hand_run: Path) -> None:
    d = S.semantic(
        connect(hand_run), bootstrap=50, permutations=200, class_similarity=SIM3
    ).to_dict()
    for key in (
        "measure", "runs", "class_similarity_source", "diagonal", "window", "resampling",
        "resampling_text", "bootstrap", "permutations", "seed", "run_summaries", "contrasts",
        "seed_contrasts", "contrast_definitions", "headline", "bins", "n_pairs", "n_queries",
        "n_steps", "n_negatives", "n_self_negatives_excluded", "same_class_fraction",
        "class_similarity_different_class", "trajectory", "spearman_rho", "p_value",
        "p_value_analytic", "n_pairs_excluding_same_class", "spearman_rho_excluding_same_class",
        "p_value_excluding_same_class", "p_value_analytic_excluding_same_class", "warnings",
    ):  # fmt: skip
        assert key in d, key
    assert not any("similarity" in k and "class_similarity" not in k for k in d)
    assert len(d["bins"]) == len(S.DEFAULT_BINS)
    for b in d["bins"]:
        assert {"label", "lo", "hi", "n_pairs", "same_class_fraction", "same_class_ci_lo"} <= set(b)
        assert {"class_similarity_different_class", "class_similarity_ci_lo"} <= set(b)
        assert not any("similarity" in k and "class_similarity" not in k for k in b)
    # K = 4: the 0-0.1 bin holds rank 1; 0.1-1, 1-5, 5-10 are empty (nulls, not NaN)
    empty = d["bins"][1]
    assert (empty["n_pairs"], empty["same_class_fraction"], empty["rank_first"]) == (0, None, 2)
    assert d["permutations"] == 200 and 0 < d["p_value"] <= 1
    assert d["headline"] == "class_similarity_gap_hard" and d["resampling"] == "step-negative"
    assert [c["contrast"] for c in d["contrasts"]] == [c.name for c in S.CONTRASTS]
    assert d["run_summaries"][0]["n_self_negatives_excluded"] == 1
    assert d["seed_contrasts"] == []  # one run: no interval over runs


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


@dataclass
class Fixture:
    path: Path
    rows: list[Row]
    epochs: list[int]
    labels: np.ndarray
    k: int


def random_run(
    make: Callable[..., Path], name: str, k: int, *, seed: int, n_samples: int = 60,
    steps: int = 6, per_epoch: int = 2,
) -> Fixture:  # fmt: skip
    """``steps`` logged steps (``per_epoch`` per epoch) of 6 queries x K negatives drawn from
    ``n_samples + 5`` ids (the last 5 without a label), 5% null keys, and self-negatives
    (a query's own id) now and then."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n_samples)
    rows: list[Row] = []
    epochs: list[int] = []
    for step in range(steps):
        for query in rng.choice(n_samples, 6, replace=False):
            negs = rng.choice(n_samples + 5, k, replace=True)  # ids >= n_samples: no label
            negs[rng.random(k) < 0.03] = query  # self-negatives
            for rank, neg in enumerate(negs, start=1):
                null = rng.random() < 0.05
                rows.append((3 * step, int(query), None if null else int(neg), rank))
                epochs.append(step // per_epoch)
    path = make(name, queue_size=k, pairs=pairs(rows, epochs), labels=labels, classes=CLASSES3)
    return Fixture(path, rows, epochs, labels, k)


@dataclass
class Pair:
    step: int
    epoch: int
    query: int
    neg: int
    p: Fraction  # rank percentile
    x: float  # (rank - 1) / K
    a: int  # query label
    b: int  # negative label


def expand(f: Fixture, keep_step: Callable[[int, int], bool] = lambda s, e: True) -> list[Pair]:
    """The labelled, non-self pairs of a fixture in the selected steps, one by one."""
    out = []
    for (step, query, neg, rank), epoch in zip(f.rows, f.epochs, strict=True):
        if neg is None or neg >= len(f.labels) or neg == query or not keep_step(step, epoch):
            continue
        out.append(
            Pair(step, epoch, query, neg, Fraction(100 * (rank - 1), f.k), (rank - 1) / f.k,
                 int(f.labels[query]), int(f.labels[neg]))
        )  # fmt: skip
    return out


def same_fraction(ps: list[Pair]) -> float:
    return float(np.mean([p.a == p.b for p in ps])) if ps else np.nan


def different_class_similarity(ps: list[Pair]) -> float:
    diff = [SIM3[p.a, p.b] for p in ps if p.a != p.b]
    return float(np.mean(diff)) if diff else np.nan


def within(ps: list[Pair], lo: float, hi: float) -> list[Pair]:
    return [p for p in ps if Fraction(str(lo)) <= p.p < Fraction(str(hi))]


def reference_contrasts(ps: list[Pair]) -> list[float]:
    out = []
    for c in S.CONTRASTS:
        stat = same_fraction if c.kind == "same_class" else different_class_similarity
        out.append(stat(within(ps, *c.region)) - stat(within(ps, *c.reference)))
    return out


def reference(ps: list[Pair], bins: tuple[tuple[Fraction, Fraction], ...]) -> dict[str, Any]:
    """Per-bin statistics, contrasts and Spearman's rho by looping over the expanded pairs."""
    per_bin = [within(ps, lo, hi) for lo, hi in bins]
    x = [p.x for p in ps]
    y = [SIM3[p.a, p.b] for p in ps]
    keep = [i for i, p in enumerate(ps) if p.a != p.b]
    return {
        "n": [len(v) for v in per_bin],
        "same": [same_fraction(v) for v in per_bin],
        "diff": [different_class_similarity(v) for v in per_bin],
        "contrasts": reference_contrasts(ps),
        "rho": stats.spearmanr(x, y).statistic,
        "rho_excl": stats.spearmanr([x[i] for i in keep], [y[i] for i in keep]).statistic,
        "n_pairs": len(ps),
    }


def test_matches_a_slow_reference_on_two_runs_with_different_k(
    make_run: Callable[..., Path],
) -> None:
    a = random_run(make_run, "a", 40, seed=1)
    b = random_run(make_run, "b", 25, seed=2)
    bins = S.bins_from_edges([0, 1, 5, 10, 25, 50, 75, 95, 100])
    r = S.semantic(
        connect(a.path, b.path), bins=bins, bootstrap=0, permutations=0, class_similarity=SIM3,
        epochs=ALL,
    )  # fmt: skip
    ref = reference(expand(a) + expand(b), bins)
    assert [x.n_pairs for x in r.bins] == ref["n"]
    np.testing.assert_allclose([x.same_class_fraction for x in r.bins], ref["same"], rtol=1e-12)
    got = [x.class_similarity_different_class for x in r.bins]
    np.testing.assert_allclose(got, ref["diff"], rtol=1e-12)
    assert r.n_pairs == ref["n_pairs"]
    assert r.spearman_rho == pytest.approx(ref["rho"], abs=1e-12)
    assert r.spearman_rho_excluding_same_class == pytest.approx(ref["rho_excl"], abs=1e-12)
    assert all(x.rank_first is None for x in r.bins)  # two queue sizes: no common ranks
    for f in (a, b):
        name = f.path.name
        got = [r.contrast(c.name, name).estimate for c in S.CONTRASTS]
        np.testing.assert_allclose(got, reference_contrasts(expand(f)), rtol=1e-12)
        n_self = sum(
            1
            for _, q, n, _ in f.rows
            if n == q  # every query has a label
        )
        summary = next(s for s in r.run_summaries if s.run == name)
        assert summary.n_self_negatives_excluded == n_self > 0
        assert summary.n_pairs == len(expand(f)) and summary.steps == summary.logged_steps == 6


def test_the_default_window_is_the_last_third_of_the_logged_steps(
    make_run: Callable[..., Path],
) -> None:
    f = random_run(make_run, "w", 40, seed=3, steps=7)  # steps 0, 3, ..., 18; 2 per epoch
    con = connect(f.path)
    kw: dict[str, Any] = {"bootstrap": 0, "permutations": 0, "class_similarity": SIM3}
    late = S.semantic(con, **kw)
    s = late.run_summaries[0]
    # ceil(7 / 3) = 3 steps: 12, 15, 18 (epochs 2 and 3)
    assert (s.logged_steps, s.steps, s.first_step, s.last_step) == (7, 3, 12, 18)
    assert (s.first_epoch, s.last_epoch) == (2, 3)
    assert late.n_pairs == len(expand(f, lambda step, e: step >= 12))
    assert "late training" in late.window
    got = [late.contrast(c.name, "w").estimate for c in S.CONTRASTS]
    np.testing.assert_allclose(got, reference_contrasts(expand(f, lambda st, e: st >= 12)))
    # the trajectory covers every epoch, the window's marked
    traj = [t for t in late.trajectory if t.contrast == S.HEADLINE]
    assert [(t.epoch, t.in_window) for t in traj] == [(0, False), (1, False), (2, True), (3, True)]
    for t in traj:
        ps = expand(f, lambda st, e, t=t: e == t.epoch)
        assert t.estimate == pytest.approx(reference_contrasts(ps)[1], rel=1e-12)
        assert t.n_pairs == len(ps) and t.n_steps == len({p.step for p in ps})
    # explicit epochs and steps; both must hold
    ep = S.semantic(con, **kw, epochs=(1, 2))
    assert ep.n_pairs == len(expand(f, lambda st, e: 1 <= e <= 2)) and ep.window == "epochs 1-2"
    assert [t.epoch for t in ep.trajectory if t.contrast == S.HEADLINE] == [1, 2]
    st = S.semantic(con, **kw, steps=(5, None), epochs=(0, 2))
    assert st.n_pairs == len(expand(f, lambda s, e: s >= 5 and e <= 2))
    assert st.window == "epochs 0-2 and steps 5-"
    # few steps in the window: a warning
    assert any("too few for the bootstrap over steps" in w for w in late.warnings)
    with pytest.raises(LogError, match="no run has a logged step in the window"):
        S.semantic(con, **kw, epochs=(9, None))


def test_parse_range() -> None:
    assert S.parse_range("150-199") == (150, 199)
    assert S.parse_range(" 150- ") == (150, None)
    assert S.parse_range("7") == (7, 7)
    for bad in ("a", "5-2", "-3", "1-b", ""):
        with pytest.raises(ConfigError):
            S.parse_range(bad, "epochs")


# --- bootstrap and runs ---------------------------------------------------------------------


def unit_matrices(
    ps: list[Pair], cells: tuple[tuple[Fraction, Fraction], ...]
) -> dict[str, np.ndarray]:
    """Per-step, per-(step, query) and per-negative sums, quantity-major (pairs, same-class
    pairs, class_similarity of different-class pairs) x cells, built pair by pair."""
    keys = {
        "step": sorted({p.step for p in ps}),
        "query": sorted({(p.step, p.query) for p in ps}),
        "negative": sorted({p.neg for p in ps}),
    }
    c = len(cells)
    out = {name: np.zeros((len(k), 3 * c)) for name, k in keys.items()}
    for p in ps:
        cell = next(i for i, (lo, hi) in enumerate(cells) if lo <= p.p < hi)
        unit = {"step": p.step, "query": (p.step, p.query), "negative": p.neg}
        for name in out:
            row = keys[name].index(unit[name])  # type: ignore[arg-type]
            out[name][row, cell] += 1
            out[name][row, c + cell] += p.a == p.b
            out[name][row, 2 * c + cell] += SIM3[p.a, p.b] if p.a != p.b else 0.0
    return out


@pytest.mark.parametrize(
    ("design", "factors"),
    [
        ("step-negative", ("step", "negative")),
        ("query-negative", ("query", "negative")),
        ("step", ("step",)),
        ("query", ("query",)),
    ],
)
def test_bootstrap_intervals_match_the_stats_module_on_slow_unit_sums(
    make_run: Callable[..., Path], design: str, factors: tuple[str, ...]
) -> None:
    f = random_run(make_run, "r", 40, seed=4)
    bins = S.bins_from_edges([0, 5, 50, 100])
    r = S.semantic(
        connect(f.path), bins=bins, bootstrap=300, permutations=0, class_similarity=SIM3,
        epochs=ALL, resampling=design, seed=11,
    )  # fmt: skip
    cells = S._cells(bins)
    mats = unit_matrices(expand(f), cells)
    rng = np.random.default_rng(np.random.SeedSequence(11).spawn(2)[0])  # run 0's stream
    draws = stats_mod.crossed_bootstrap_totals([mats[k] for k in factors], 300, rng)
    value, ref = S._contrast_sides(draws, cells)
    lo, hi = stats_mod.percentile_interval_columns(value - ref)
    for k, c in enumerate(S.CONTRASTS):
        rc = r.contrast(c.name, "r")
        assert (rc.ci_lo, rc.ci_hi) == pytest.approx((lo[k], hi[k]), rel=1e-9, nan_ok=True)
    for b, (b_lo, b_hi) in zip(r.bins, bins, strict=True):
        mask = S._in(cells, b_lo, b_hi)
        s_lo, s_hi = stats_mod.percentile_interval_columns(S._same_fraction(draws, mask))
        want = (float(s_lo), float(s_hi))
        assert (b.same_class_ci_lo, b.same_class_ci_hi) == pytest.approx(want, rel=1e-9)
    assert r.resampling == design and r.resampling_text == S.RESAMPLING[design]
    assert (S.RESAMPLING["query"] in r.warnings) == (design == "query")


def test_bootstrap_ci_contains_the_estimate_and_is_seeded(make_run: Callable[..., Path]) -> None:
    f = random_run(make_run, "r", 64, seed=4)
    con = connect(f.path)
    kw: dict[str, Any] = {"permutations": 0, "class_similarity": SIM3, "bootstrap": 300}
    kw["epochs"] = ALL
    a, b, c = S.semantic(con, **kw), S.semantic(con, **kw), S.semantic(con, **kw, seed=1)
    assert a.to_dict() == b.to_dict()  # same seed, same numbers
    assert a.to_dict() != c.to_dict()
    for x in a.bins:
        if x.n_pairs:
            assert x.same_class_ci_lo <= x.same_class_fraction <= x.same_class_ci_hi
            assert x.same_class_ci_lo < x.same_class_ci_hi
            if x.n_pairs_different_class > 20:
                lo, hi = x.class_similarity_ci_lo, x.class_similarity_ci_hi
                assert lo <= x.class_similarity_different_class <= hi
    for rc in a.contrasts:
        if np.isfinite(rc.ci_lo):
            assert rc.ci_lo <= rc.estimate <= rc.ci_hi


def test_several_runs_give_a_t_interval_over_runs_and_per_epoch(
    make_run: Callable[..., Path],
) -> None:
    fs = [random_run(make_run, f"s{i}", 40, seed=10 + i) for i in range(3)]
    r = S.semantic(
        connect(*(f.path for f in fs)), bootstrap=100, permutations=0, class_similarity=SIM3,
        epochs=ALL,
    )  # fmt: skip
    for k, c in enumerate(S.CONTRASTS):
        per_run = [reference_contrasts(expand(f))[k] for f in fs]
        sc = next(x for x in r.seed_contrasts if x.contrast == c.name)
        assert sc.n_runs == 3 and sc.mean == pytest.approx(np.mean(per_run), rel=1e-12)
        want = stats.t.interval(0.95, 2, loc=np.mean(per_run), scale=stats.sem(per_run))
        assert (sc.ci_lo, sc.ci_hi) == pytest.approx(want, rel=1e-9)
    means = [t for t in r.trajectory if t.run is None and t.contrast == "same_class_excess"]
    assert [t.epoch for t in means] == [0, 1, 2]
    for t in means:
        per_run = [reference_contrasts(expand(f, lambda s, e, t=t: e == t.epoch))[0] for f in fs]
        assert t.n_runs == 3 and t.estimate == pytest.approx(np.mean(per_run), rel=1e-12)
        assert t.ci_lo < t.estimate < t.ci_hi
    frame = r.trajectory_frame()
    assert set(frame["run"]) == {"s0", "s1", "s2", "mean over runs"}
    assert len(frame) == 4 * 3 and set(frame["contrast"]) == {S.HEADLINE}


# --- the permutation null -------------------------------------------------------------------


def test_label_statistic_matches_a_slow_reference(
    make_run: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    fa = random_run(make_run, "a", 24, seed=5)
    fb = random_run(make_run, "b", 16, seed=6)
    con = connect(fa.path, fb.path)
    captured: dict[str, Any] = {}
    real = S.permutation_rhos

    def spy(neg: S.NegativeSums, sim: np.ndarray, n: int, rng: Any) -> Any:
        captured.update(neg=neg, sim=sim)
        return real(neg, sim, n, rng)

    monkeypatch.setattr(S, "permutation_rhos", spy)
    r = S.semantic(con, bootstrap=0, permutations=200, class_similarity=SIM3, epochs=ALL)
    neg = captured["neg"]
    # observed labels: the statistic over all pairs is Spearman's rho itself
    t_all, t_excl = S.label_statistic(neg, captured["sim"], neg.label)
    assert t_all == pytest.approx(r.spearman_rho, abs=1e-12)
    assert t_excl == pytest.approx(r.spearman_rho_excluding_same_class, abs=0.02)

    # random relabelings within each run, against the expanded pairs
    fixtures = [fa, fb]
    rng = np.random.default_rng(0)
    for _ in range(3):
        new_labels = {}
        for s, f in enumerate(fixtures):
            ids = sorted({p.neg for p in expand(f)})
            new_labels[s] = dict(zip(ids, rng.permutation([f.labels[i] for i in ids]), strict=True))
        by_row = []  # neg rows are sorted by run, then neg_id (see _negative_sums)
        for s in range(2):
            by_row += [new_labels[s][i] for i in sorted(new_labels[s])]
        got = S.label_statistic(neg, captured["sim"], np.array(by_row))
        assert got == pytest.approx(slow_statistic(fixtures, new_labels), abs=1e-12)


def slow_statistic(
    fixtures: list[Fixture], neg_labels: dict[int, dict[int, int]]
) -> tuple[float, float]:
    """Pearson of (rank percentile midranks over all pairs, class_similarity midranks over the
    kept pairs), pair by pair."""
    x, y, same = [], [], []
    for s, f in enumerate(fixtures):
        for p in expand(f):
            b = neg_labels[s][p.neg]
            x.append(p.x)
            y.append(SIM3[p.a, b])
            same.append(p.a == b)
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
    rows: list[Row] = []
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
        bootstrap=200, permutations=200, class_similarity=SIM3, epochs=ALL,
    )  # fmt: skip
    assert r.spearman_rho < -0.5 and r.spearman_rho_excluding_same_class < -0.3
    assert r.p_value == pytest.approx(1 / 201)  # no shuffle reaches the observed |rho|
    assert r.p_value_excluding_same_class == pytest.approx(1 / 201)
    assert r.bins[0].same_class_fraction > r.same_class_fraction
    # the planted order: the hardest 5% (rank 1-2 of 30) are all of the query's class, and
    # the 25-75% bins hold the other classes, the more similar first
    excess = r.contrast("same_class_excess", "planted")
    assert excess.value == 1 and excess.ci_lo > 0.5
    assert r.warnings == ()  # 30 steps


def test_permutation_p_is_large_for_random_labels(make_run: Callable[..., Path]) -> None:
    """Ten datasets whose ranks ignore the labels: p-values spread over (0, 1]."""
    results = [
        S.semantic(
            connect(planted_run(make_run, f"null{seed}", structured=False, seed=seed)),
            bootstrap=0, permutations=200, class_similarity=SIM3, seed=seed, epochs=ALL,
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
    assert stats_mod.permutation_p(observed, perm, "two-sided") == pytest.approx(3 / 5)
    assert np.isnan(stats_mod.permutation_p(float("nan"), np.zeros(3)))
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
        assert r.class_similarity_source == "shipped table cifar10"
        assert r.measure == measure and r.diagonal == W.DIAGONAL[measure]
        assert round(r.class_similarity_different_class, 3) == want
        assert r.same_class_fraction == 0


def test_synthetic_classes_are_called_stand_ins_everywhere(
    make_run: Callable[..., Path],
) -> None:
    # synthetic:N images are shapes named after CIFAR-10's classes (issue #12, 11)
    labels = np.array([3] * 4 + [5] * 4)
    rows = [(0, q, n, rank) for q in (0, 1) for rank, n in enumerate((4, 5, 6, 7), start=1)]
    synth = make_run(
        "synth", queue_size=4, pairs=pairs(rows), labels=labels, dataset="synthetic:512"
    )
    real = make_run("real", queue_size=4, pairs=pairs(rows), labels=labels, dataset="cifar10")
    r = S.semantic(connect(synth), bootstrap=0, permutations=0)
    assert r.classes_note is not None
    assert r.classes_note.startswith("Synthetic stand-ins: run synth trained on synthetic:512")
    assert "borrow CIFAR-10's names and WordNet synsets" in r.classes_note
    assert r.to_dict()["classes_note"] == r.classes_note  # JSON
    assert r.bins_frame()["classes_note"][0] == r.classes_note  # for the chart
    from hardstat.charts.semantic import semantic_chart

    subtitle = " ".join(semantic_chart(r.bins_frame()).to_dict()["title"]["subtitle"])
    assert subtitle.startswith("Synthetic stand-ins: run synth")
    both = S.semantic(connect(synth, real), bootstrap=0, permutations=0)
    assert both.classes_note is not None and "run synth trained" in both.classes_note
    plain = S.semantic(connect(real), bootstrap=0, permutations=0)
    assert plain.classes_note is None and plain.to_dict()["classes_note"] is None
    assert "Synthetic" not in " ".join(
        semantic_chart(plain.bins_frame()).to_dict()["title"]["subtitle"]
    )


def test_errors(make_run: Callable[..., Path], hand_run: Path, tmp_path: Path) -> None:
    con = connect(hand_run)
    with pytest.raises(ConfigError, match="at least 200"):
        S.semantic(con, permutations=50, class_similarity=SIM3)
    with pytest.raises(ConfigError, match="measure"):
        S.semantic(con, measure="jcn")
    with pytest.raises(ConfigError, match="square matrix"):
        S.semantic(con, class_similarity=np.ones((2, 2)))
    with pytest.raises(ConfigError, match="between -1000 and 1000"):
        S.semantic(con, class_similarity=SIM3 * np.inf)
    with pytest.raises(ConfigError, match="resampling"):
        S.semantic(con, class_similarity=SIM3, resampling="pairs")
    with pytest.raises(ConfigError, match="epochs"):
        S.semantic(con, class_similarity=SIM3, epochs=(3, 1))
    empty = make_run("empty", queue_size=4, labels=LABELS8, classes=CLASSES3)
    with pytest.raises(LogError, match="no run has a logged step"):
        S.semantic(connect(empty), class_similarity=SIM3, permutations=0)
    unlabelled = make_run(
        "unlabelled", queue_size=4, pairs=pairs([(0, 0, 99, 1), (0, 0, None, 2)]),
        labels=LABELS8, classes=CLASSES3,
    )  # fmt: skip
    with pytest.raises(LogError, match="no logged pair in the window"):
        S.semantic(connect(unlabelled), class_similarity=SIM3, permutations=0)
    # classes without synsets and not CIFAR: WordNet cannot help, with or without a corpus
    with pytest.raises(WordNetError, match=r"class 0 \(a\) has no WordNet synset or wnid"):
        S.semantic(con, permutations=0, bootstrap=0)


def test_combinations_of_bins_and_runs_leave_the_connection_clean(hand_run: Path) -> None:
    con = connect(hand_run)
    for edges in itertools.islice(itertools.combinations([0, 10, 50, 90, 100], 3), 3):
        bins = S.bins_from_edges(edges)
        S.semantic(con, bins=bins, bootstrap=10, permutations=200, class_similarity=SIM3)
    names = {row[0] for row in con.sql("SHOW TABLES").fetchall()}
    assert not any(n.startswith("_hardstat_semantic") for n in names)
