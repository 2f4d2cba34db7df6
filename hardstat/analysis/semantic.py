"""Are hard negatives semantically similar to their query? WordNet similarity vs hardness.

For every logged (query, negative) pair with both labels known, the class-by-class WordNet
similarity of the query's class and the negative's class (:mod:`hardstat.analysis.wordnet`) is
looked up in DuckDB, so the pairs stream: per run, the labels of its train samples are a small
registered table joined on ``sample_id`` and the C x C matrix a bound list parameter indexed by
``query_label * C + negative_label``. Only small aggregates come back to NumPy.

Hardness bins: a pair's rank percentile is ``p = 100 (rank - 1) / K`` (rank 1, the hardest,
has p = 0; the easiest has ``100 (K - 1) / K``). A bin ``lo-hi`` holds the pairs with
``lo <= p < hi``, which for integer ranks is exactly ``ceil(lo K / 100) < rank <= ceil(hi K /
100)``, the count rule of :mod:`hardstat.bands`: bin ``0-5`` holds the negatives the band ``0-5``
keeps (ranks 1..205 of K = 4096) and bin ``0-0.1`` ranks 1..5. Per bin: the number of pairs, the
mean similarity and the same-class fraction over pairs, each with a 95% percentile-bootstrap
confidence interval that resamples queries, the units ``(run, step, query_id)``, with
replacement (computed from per-query per-bin sums and counts, seeded).

Spearman's rho between the rank percentile and the similarity over all pairs (ties get
midranks; with one K per run this is rho with the rank itself; negative rho = harder negatives
are more similar), and again without same-class pairs. Its permutation p-value (two-sided)
shuffles the labels of the negatives: within each run, the labels of the distinct ``neg_id``
values are permuted, every pair of a negative gets its new label, and the statistic is
recomputed, vectorised over per-(negative, query label) sums of rank scores. The statistic is
the correlation of the rank's midrank among all pairs with the similarity's midrank among the
pairs kept; it equals rho exactly for all pairs, and without same-class pairs differs from rho
only in not re-ranking the ranks after the exclusion. scipy's analytic p (t distribution with
n - 2 degrees of freedom) is reported too; it treats pairs as independent, which they are not
(every query contributes K pairs, every negative many), so the permutation p is the one to read.
"""

from __future__ import annotations

import contextlib
import itertools
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from hardstat.analysis import logs
from hardstat.analysis.stats import (
    bootstrap_ratio_ci,
    permutation_pvalue,
    spearman_from_counts,
    spearman_t_pvalue,
)
from hardstat.analysis.wordnet import DIAGONAL, MEASURES, similarity_for_classes
from hardstat.classes import ClassInfo
from hardstat.errors import ConfigError, LogError

if TYPE_CHECKING:
    import duckdb
    import polars as pl

DEFAULT_EDGES = ("0", "0.1", "1", "5", "10", "25", "50", "75", "95", "100")
DEFAULT_BINS: tuple[tuple[Fraction, Fraction], ...] = tuple(
    (Fraction(a), Fraction(b)) for a, b in itertools.pairwise(DEFAULT_EDGES)
)
"""Hardness bins in percent of the queue, hard to easy: 0-0.1, 0.1-1, 1-5, ..., 95-100."""

MIN_PERMUTATIONS = 200
_LABELS = "_hardstat_semantic_labels"
_SCORES = "_hardstat_semantic_scores"


# --------------------------------------------------------------------------------------------
# Bins


def _fraction(x: float | str | Fraction) -> Fraction:
    # str() first, so 0.1 means 1/10 and not the nearest binary double.
    return x if isinstance(x, Fraction) else Fraction(str(x))


def check_bins(bins: Sequence[tuple[Any, Any]]) -> tuple[tuple[Fraction, Fraction], ...]:
    """Validate bins (percent, ``0 <= lo < hi <= 100``, sorted, not overlapping) as Fractions."""
    out: list[tuple[Fraction, Fraction]] = []
    for lo, hi in bins:
        try:
            a, b = _fraction(lo), _fraction(hi)
        except (ValueError, ZeroDivisionError) as e:
            raise ConfigError(f"bin {lo}-{hi} is not a pair of numbers (percent)") from e
        if not 0 <= a < b <= 100:
            raise ConfigError(f"bin {lo}-{hi} must satisfy 0 <= lo < hi <= 100 (percent)")
        if out and a < out[-1][1]:
            raise ConfigError(f"bins must be sorted and not overlap (at {lo}-{hi})")
        out.append((a, b))
    if not out:
        raise ConfigError("give at least one bin")
    return tuple(out)


def bins_from_edges(edges: Sequence[Any]) -> tuple[tuple[Fraction, Fraction], ...]:
    """Contiguous bins from increasing edges, e.g. ``[0, 0.1, 1, 5, 100]``."""
    if len(edges) < 2:
        raise ConfigError("give at least two bin edges, e.g. 0,1,5,100")
    return check_bins(list(itertools.pairwise(edges)))


def bin_ranks(lo: Fraction, hi: Fraction, queue_size: int) -> tuple[int, int]:
    """Ranks ``(first, last)`` of the bin ``lo <= 100 (rank - 1) / K < hi`` (empty if first >
    last): ``ceil(lo K / 100) < rank <= ceil(hi K / 100)``."""
    return math.ceil(lo * queue_size / 100) + 1, math.ceil(hi * queue_size / 100)


def bin_label(lo: Fraction, hi: Fraction) -> str:
    def fmt(x: Fraction) -> str:
        return str(x.numerator) if x.denominator == 1 else f"{float(x):g}"

    return f"{fmt(lo)}–{fmt(hi)}"


# --------------------------------------------------------------------------------------------
# Permutation null: shuffle the labels of negatives


@dataclass(frozen=True)
class NegativeSums:
    """Per negative (one row per distinct (run, neg_id)): its run index (the stratum labels are
    permuted within), its label, and per query label a: the number of its pairs, and the sum and
    sum of squares of their rank scores (midranks of the rank among all pairs)."""

    stratum: np.ndarray  # (J,) int
    label: np.ndarray  # (J,) int, 0..C-1
    n: np.ndarray  # (J, C)
    score: np.ndarray  # (J, C)
    score_sq: np.ndarray  # (J, C)


def _cell_rho(n: np.ndarray, sx: np.ndarray, sxx: float, u: np.ndarray, n_values: int) -> float:
    """Correlation of x scores and y midranks from cell sums: ``n`` pairs, ``sx`` sum of x
    scores per cell, ``sxx`` the total of squared x scores, ``u`` each cell's y value index."""
    total = n.sum()
    if total < 2:
        return float("nan")
    cnt = np.bincount(u, weights=n, minlength=n_values)
    ry = np.cumsum(cnt) - (cnt - 1) / 2 - (total + 1) / 2  # centered midrank of each value
    mean_x = sx.sum() / total
    var_x = sxx / total - mean_x**2
    var_y = (cnt * ry**2).sum() / total
    cov = (sx * ry[u]).sum() / total  # the mean of centered y midranks is exactly 0
    return float(cov / math.sqrt(var_x * var_y)) if var_x > 0 and var_y > 0 else float("nan")


class _LabelStatistic:
    """The permutation statistic as a function of the negatives' labels, with everything that
    does not depend on the labels computed once. Rows of ``neg`` must be sorted by stratum."""

    def __init__(self, neg: NegativeSums, similarity: np.ndarray) -> None:
        if np.any(np.diff(neg.stratum) < 0):
            raise ValueError("NegativeSums rows must be sorted by stratum")
        n_strata, n_classes = similarity.shape[0], neg.n.shape[1]
        self.neg, self.n_classes, self.n_groups = neg, n_classes, n_strata * n_classes
        self.m = np.concatenate([neg.n, neg.score], axis=1)
        self.sxx_total = float(neg.score_sq.sum())
        # cell (group g = stratum * C + negative label b, query label a): similarity[s, a, b]
        y = similarity.transpose(0, 2, 1).reshape(self.n_groups, n_classes)
        self.kept = (~np.tile(np.eye(n_classes, dtype=bool), (n_strata, 1))).ravel()
        values, u = np.unique(y, return_inverse=True)
        self.u, self.n_values = u.ravel(), len(values)
        starts = np.flatnonzero(np.r_[True, neg.stratum[1:] != neg.stratum[:-1]])
        self.bounds = list(zip(starts, np.r_[starts[1:], len(neg.stratum)], strict=True))
        self.rows = np.arange(len(neg.stratum))

    def __call__(self, labels: np.ndarray) -> tuple[float, float]:
        from scipy import sparse

        group = self.neg.stratum * self.n_classes + labels
        onehot = sparse.csc_matrix(
            (np.ones(len(group)), group, np.arange(len(group) + 1)),
            shape=(self.n_groups, len(group)),
        )
        cells = np.asarray(onehot @ self.m)  # (group, 2C): pairs and x-score sums per cell
        n = cells[:, : self.n_classes].ravel()
        sx = cells[:, self.n_classes :].ravel()
        rho_all = _cell_rho(n, sx, self.sxx_total, self.u, self.n_values)
        sxx_kept = self.sxx_total - float(self.neg.score_sq[self.rows, labels].sum())
        k = self.kept
        rho_excl = _cell_rho(n * k, sx * k, sxx_kept, self.u, self.n_values)
        return rho_all, rho_excl

    def shuffled(self, rng: np.random.Generator) -> np.ndarray:
        """The labels permuted within each stratum."""
        idx = np.concatenate([lo + rng.permutation(hi - lo) for lo, hi in self.bounds])
        return self.neg.label[idx]


def label_statistic(
    neg: NegativeSums, similarity: np.ndarray, labels: np.ndarray
) -> tuple[float, float]:
    """The statistic (all pairs, without same-class pairs) when negative j has ``labels[j]``:
    the correlation of the pairs' rank scores with the midranks of the similarity of the query
    label and the negative's label, over the pairs kept."""
    return _LabelStatistic(neg, similarity)(np.asarray(labels))


def permutation_rhos(
    neg: NegativeSums,
    similarity: np.ndarray,
    permutations: int,
    rng: np.random.Generator,
) -> tuple[tuple[float, float], np.ndarray]:
    """The statistic for the observed labels and for ``permutations`` shufflings of the
    negatives' labels within each stratum (rows of ``neg`` sorted by stratum).

    ``similarity[s, a, b]`` is the similarity of query label a and negative label b in stratum
    s. Per permutation, the pairs are summed into cells (new negative label, query label) with
    one sparse product, O(negatives x classes). Returns ``((observed_all, observed_excl),
    perm)`` with perm of shape (permutations, 2).
    """
    stat = _LabelStatistic(neg, similarity)
    observed = stat(neg.label)
    out = np.empty((permutations, 2))
    for i in range(permutations):
        out[i] = stat(stat.shuffled(rng))
    return observed, out


# --------------------------------------------------------------------------------------------
# Result


@dataclass(frozen=True)
class SemanticBin:
    """One hardness bin: percent bounds, ranks (when every run has the same K), statistics."""

    lo: float
    hi: float
    rank_first: int | None
    rank_last: int | None
    n_pairs: int
    n_queries: int
    mean_similarity: float
    ci_lo: float
    ci_hi: float
    same_class_fraction: float
    same_class_ci_lo: float
    same_class_ci_hi: float

    @property
    def label(self) -> str:
        return bin_label(Fraction(str(self.lo)), Fraction(str(self.hi)))


@dataclass(frozen=True)
class SemanticResult:
    """What ``hardstat analyze semantic`` reports (see the module docstring for definitions)."""

    measure: str
    runs: tuple[str, ...]
    similarity_source: str
    diagonal: float
    bins: tuple[SemanticBin, ...]
    n_pairs: int
    n_queries: int
    mean_similarity: float
    same_class_fraction: float
    spearman_rho: float
    p_value: float
    p_value_analytic: float
    n_pairs_excluding_same_class: int
    spearman_rho_excluding_same_class: float
    p_value_excluding_same_class: float
    p_value_analytic_excluding_same_class: float
    permutations: int
    bootstrap: int
    seed: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: NaN becomes None, bins become a list of dicts with their label."""
        d = asdict(self)
        d["runs"] = list(self.runs)
        d["bins"] = [{"label": b.label, **asdict(b)} for b in self.bins]
        return _nan_to_none(d)

    def bins_frame(self) -> pl.DataFrame:
        """One row per bin (hard to easy) plus the all-pairs values, for tables and charts."""
        import polars as pl

        rows = [{"bin": b.label, **asdict(b)} for b in self.bins]
        frame = pl.DataFrame(rows, infer_schema_length=None)
        return frame.with_columns(
            pl.lit(self.measure).alias("measure"),
            pl.lit(self.mean_similarity).alias("overall_similarity"),
            pl.lit(self.same_class_fraction).alias("overall_same_class_fraction"),
            pl.col(pl.Float64).fill_nan(None),
        )


def _nan_to_none(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _nan_to_none(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_nan_to_none(v) for v in x]
    return x


# --------------------------------------------------------------------------------------------
# The analysis


@dataclass(frozen=True)
class _Run:
    """One run's lookups: K, and its class-by-class similarity indexed by label."""

    name: str
    queue_size: int
    matrix: np.ndarray  # (C, C), NaN where a label has no class
    source: str


def _run_similarities(
    con: duckdb.DuckDBPyConnection,
    queue_sizes: dict[str, int],
    measure: str,
    matrix: np.ndarray | None,
) -> list[_Run]:
    classes = logs.query(
        con, "SELECT run, label, name, synset, wnid FROM classes ORDER BY run, label"
    ).to_pylist()
    by_run: dict[str, list[ClassInfo]] = {r: [] for r in queue_sizes}
    for row in classes:
        if row["run"] in by_run:
            by_run[row["run"]].append(
                ClassInfo(int(row["label"]), row["name"], row["synset"], row["wnid"])
            )
    cache: dict[tuple[ClassInfo, ...], tuple[np.ndarray, str]] = {}
    out = []
    for run, k in queue_sizes.items():
        infos = by_run[run]
        if not infos:
            raise LogError(f"run {run} has no classes table; the semantic analysis needs it")
        labels = [c.label for c in infos]
        if len(set(labels)) != len(labels):
            raise LogError(f"run {run} lists a class label twice in its classes table")
        size = max(labels) + 1
        if matrix is not None:
            if matrix.ndim != 2 or not matrix.shape[0] == matrix.shape[1] >= size:
                raise ConfigError(
                    f"the similarity matrix is {matrix.shape}, run {run} has labels up to "
                    f"{size - 1}; give a square matrix indexed by label"
                )
            full = np.full(matrix.shape, np.nan)
            idx = np.asarray(labels)
            full[np.ix_(idx, idx)] = np.asarray(matrix, dtype=np.float64)[np.ix_(idx, idx)]
            out.append(_Run(run, k, full, "given matrix"))
            continue
        key = tuple(infos)
        if key not in cache:
            sim = similarity_for_classes(infos, measure)
            full = np.full((size, size), np.nan)
            idx = np.asarray(labels)
            full[np.ix_(idx, idx)] = sim.matrix
            cache[key] = (full, sim.source)
        out.append(_Run(run, k, *cache[key]))
    return out


def _bin_case(bins: tuple[tuple[Fraction, Fraction], ...]) -> str:
    """SQL mapping p.rank to its bin index (-1 outside every bin); cut ranks are parameters."""
    whens = " ".join(
        f"WHEN p.rank > $lo{i} AND p.rank <= $hi{i} THEN {i}" for i in range(len(bins))
    )
    return f"CASE {whens} ELSE -1 END"


def _bin_params(bins: tuple[tuple[Fraction, Fraction], ...], k: int) -> dict[str, int]:
    out = {}
    for i, (lo, hi) in enumerate(bins):
        first, last = bin_ranks(lo, hi, k)
        out[f"lo{i}"], out[f"hi{i}"] = first - 1, last
    return out


# Pairs of one run whose query and negative both have a known label: the labels come from a
# registered (sample_id, label) table of the run's train split (a join on sample_id only, so the
# optimizer cannot pair the two label lookups with each other), the similarity from the run's
# C x C matrix bound as a flat list parameter and indexed by query_label * C + neg_label.
_FROM = f"""
    FROM pairs p
    JOIN {_LABELS} ql ON ql.sample_id = p.query_id
    JOIN {_LABELS} nl ON nl.sample_id = p.neg_id
    WHERE p.run = $run
"""
_SIMILARITY = "list_extract($similarity, ql.label * $classes + nl.label + 1)"


def semantic(
    con: duckdb.DuckDBPyConnection,
    measure: str = "wup",
    bins: Sequence[tuple[Any, Any]] = DEFAULT_BINS,
    bootstrap: int = 1000,
    permutations: int = 1000,
    seed: int = 0,
    *,
    similarity: np.ndarray | None = None,
) -> SemanticResult:
    """WordNet similarity of query and negative classes by hardness bin, with bootstrap CIs
    over queries and Spearman's rho of rank and similarity with a label-permutation p-value.

    ``con`` is a :func:`hardstat.analysis.logs.connect` connection (all its runs are pooled).
    ``similarity`` replaces the WordNet matrix: ``similarity[a, b]`` for query label a and
    negative label b (a test hook, and for custom class similarities; the result's ``measure``
    is then ``"given"``). ``permutations`` is 0
    (no permutation test) or at least 200. Raises LogError when no pair has both labels.
    """
    if measure not in MEASURES and similarity is None:
        raise ConfigError(f"measure must be one of {', '.join(MEASURES)}, got {measure!r}")
    if permutations != 0 and permutations < MIN_PERMUTATIONS:
        raise ConfigError(f"use 0 or at least {MIN_PERMUTATIONS} permutations (got {permutations})")
    if bootstrap < 0:
        raise ConfigError(f"bootstrap replicates must be >= 0 (got {bootstrap})")
    bin_spec = check_bins(bins)
    run_rows = logs.query(con, "SELECT run, queue_size FROM runs ORDER BY run").to_pylist()
    queue_sizes = {r["run"]: int(r["queue_size"]) for r in run_rows if r["queue_size"]}
    if not queue_sizes:
        raise LogError("no run with a queue size in its manifest; nothing to analyse")
    runs = _run_similarities(con, queue_sizes, measure, similarity)
    try:
        name = "given" if similarity is not None else measure
        return _analyse(con, runs, name, bin_spec, bootstrap, permutations, seed)
    finally:
        for name in (_LABELS, _SCORES):
            with contextlib.suppress(Exception):  # a name that was not registered
                con.unregister(name)


def _register_labels(con: duckdb.DuckDBPyConnection, run: _Run) -> None:
    table = logs.query(
        con,
        "SELECT sample_id, min(label) AS label FROM samples WHERE run = $run AND split = $split "
        "GROUP BY sample_id",
        {"run": run.name, "split": "train"},
    )
    label = table["label"].to_numpy()
    size = run.matrix.shape[0]
    known = (label >= 0) & (label < size)
    known[known] = ~np.isnan(np.diag(run.matrix))[label[known]]  # labels with a class row
    con.register(_LABELS, table.filter(pa.array(known)))


def _run_params(run: _Run) -> dict[str, Any]:
    flat = run.matrix.ravel()
    return {
        "run": run.name,
        "classes": run.matrix.shape[0],
        "similarity": [None if math.isnan(v) else float(v) for v in flat],
    }


def _analyse(
    con: duckdb.DuckDBPyConnection,
    runs: list[_Run],
    measure: str,
    bins: tuple[tuple[Fraction, Fraction], ...],
    bootstrap: int,
    permutations: int,
    seed: int,
) -> SemanticResult:
    per_query: list[dict[str, np.ndarray]] = []
    joint: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
    unit_offset = 0
    for run in runs:
        _register_labels(con, run)
        params = _run_params(run)
        # 1. per query and bin: pairs, similarity sum, same-class count (bins and bootstrap)
        t = logs.query(
            con,
            f"""
            SELECT p.step, p.query_id, {_bin_case(bins)} AS bin, count(*) AS n,
                   sum({_SIMILARITY}) AS sum_sim,
                   count(*) FILTER (WHERE ql.label = nl.label) AS n_same
            {_FROM}
            GROUP BY ALL
            """,
            {**params, **_bin_params(bins, run.queue_size)},
        )
        keys = np.stack([t["step"].to_numpy(), t["query_id"].to_numpy()]).astype(np.int64)
        units = np.unique(keys, axis=1, return_inverse=True)[1].ravel() if t.num_rows else keys[0]
        per_query.append(
            {
                "unit": units + unit_offset,
                "bin": t["bin"].to_numpy().astype(np.intp),
                **{c: t[c].to_numpy().astype(np.float64) for c in ("n", "sum_sim", "n_same")},
            }
        )
        unit_offset += int(units.max()) + 1 if len(units) else 0
        # 2. joint distribution of (rank, similarity, same class) for Spearman's rho
        t = logs.query(
            con,
            f"""
            SELECT p.rank, {_SIMILARITY} AS similarity, ql.label = nl.label AS same,
                   count(*) AS n
            {_FROM}
            GROUP BY ALL
            """,
            params,
        )
        joint.append(
            (
                (t["rank"].to_numpy() - 1) / run.queue_size,  # comparable across K
                t["similarity"].to_numpy(),
                t["same"].to_numpy(zero_copy_only=False).astype(bool),
                t["n"].to_numpy().astype(np.float64),
            )
        )
    x, y, same, cnt = (np.concatenate([j[i] for j in joint]) for i in range(4))
    n_all = int(cnt.sum())
    if n_all == 0:
        raise LogError(
            "no logged pair has a known query and negative label (pairs joined to samples of "
            "the train split); check that the runs logged pairs and wrote their samples table"
        )
    rho_all = spearman_from_counts(x, y, cnt)
    rho_excl = spearman_from_counts(x[~same], y[~same], cnt[~same])
    n_excl = int(cnt[~same].sum())

    # 3. per bin, with bootstrap over queries
    q = {k: np.concatenate([d[k] for d in per_query]) for k in per_query[0]}
    n_units = unit_offset
    dense = {name: np.zeros((n_units, len(bins) + 1)) for name in ("n", "sum_sim", "n_same")}
    for name, arr in dense.items():
        arr[q["unit"], q["bin"]] = q[name]  # bin -1 (outside every bin): last column, dropped
    n_b, s_b, q_b = (dense[k][:, : len(bins)] for k in ("n", "sum_sim", "n_same"))
    seeds = np.random.SeedSequence(seed).spawn(2)
    (sim_lo, sim_hi), (same_lo, same_hi) = bootstrap_ratio_ci(
        [s_b, q_b], n_b, bootstrap, np.random.default_rng(seeds[0])
    )
    totals_n = n_b.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_sim = s_b.sum(axis=0) / totals_n
        same_frac = q_b.sum(axis=0) / totals_n
    ks = {r.queue_size for r in runs}
    out_bins = []
    for i, (lo, hi) in enumerate(bins):
        first, last = bin_ranks(lo, hi, next(iter(ks))) if len(ks) == 1 else (None, None)
        out_bins.append(
            SemanticBin(
                lo=float(lo),
                hi=float(hi),
                rank_first=first,
                rank_last=last,
                n_pairs=int(totals_n[i]),
                n_queries=int(np.count_nonzero(n_b[:, i])),
                mean_similarity=float(mean_sim[i]),
                ci_lo=float(sim_lo[i]),
                ci_hi=float(sim_hi[i]),
                same_class_fraction=float(same_frac[i]),
                same_class_ci_lo=float(same_lo[i]),
                same_class_ci_hi=float(same_hi[i]),
            )
        )

    # 4. permutation null: shuffle the labels of the negatives within each run
    p_all = p_excl = float("nan")
    if permutations:
        neg = _negative_sums(con, runs, x, cnt)
        size = max(r.matrix.shape[0] for r in runs)
        stacked = np.zeros((len(runs), size, size))
        for s, run in enumerate(runs):
            c = run.matrix.shape[0]
            stacked[s, :c, :c] = np.nan_to_num(run.matrix)
        (t_all, t_excl), perm = permutation_rhos(
            neg, stacked, permutations, np.random.default_rng(seeds[1])
        )
        p_all = permutation_pvalue(t_all, perm[:, 0])
        p_excl = permutation_pvalue(t_excl, perm[:, 1])

    return SemanticResult(
        measure=measure,
        runs=tuple(r.name for r in runs),
        similarity_source="; ".join(dict.fromkeys(r.source for r in runs)),
        diagonal=DIAGONAL.get(measure, float("nan")),  # NaN for a given matrix
        bins=tuple(out_bins),
        n_pairs=n_all,
        n_queries=n_units,
        mean_similarity=float((y * cnt).sum()) / n_all,
        same_class_fraction=float(cnt[same].sum()) / n_all,
        spearman_rho=rho_all,
        p_value=p_all,
        p_value_analytic=spearman_t_pvalue(rho_all, n_all),
        n_pairs_excluding_same_class=n_excl,
        spearman_rho_excluding_same_class=rho_excl,
        p_value_excluding_same_class=p_excl,
        p_value_analytic_excluding_same_class=spearman_t_pvalue(rho_excl, n_excl),
        permutations=permutations,
        bootstrap=bootstrap,
        seed=seed,
    )


def _negative_sums(
    con: duckdb.DuckDBPyConnection, runs: list[_Run], x: np.ndarray, cnt: np.ndarray
) -> NegativeSums:
    """Per (run, neg_id) and query label: pairs, and sums of the rank's centered midrank
    among all pairs (pooled over runs by rank percentile)."""
    uniq, inverse = np.unique(x, return_inverse=True)
    totals = np.bincount(inverse, weights=cnt, minlength=len(uniq))
    score_of_x = np.cumsum(totals) - (totals - 1) / 2 - (totals.sum() + 1) / 2
    size = max(r.matrix.shape[0] for r in runs)
    parts = []
    for s, run in enumerate(runs):
        ranks = np.arange(1, run.queue_size + 1)
        pos = np.clip(np.searchsorted(uniq, (ranks - 1) / run.queue_size), 0, len(uniq) - 1)
        # ranks absent from the pairs get a neighbour's score but never join a pair
        con.register(
            _SCORES,
            pa.table(
                {
                    "rank": pa.array(ranks, pa.int32()),
                    "score": pa.array(score_of_x[pos], pa.float64()),
                }
            ),
        )
        _register_labels(con, run)
        t = logs.query(
            con,
            f"""
            SELECT p.neg_id, nl.label AS neg_label, ql.label AS query_label, count(*) AS n,
                   sum(sc.score) AS s, sum(sc.score * sc.score) AS ss
            FROM pairs p
            JOIN {_LABELS} ql ON ql.sample_id = p.query_id
            JOIN {_LABELS} nl ON nl.sample_id = p.neg_id
            JOIN {_SCORES} sc ON sc.rank = p.rank
            WHERE p.run = $run
            GROUP BY ALL
            """,
            {"run": run.name},
        )
        neg_id = t["neg_id"].to_numpy().astype(np.int64)
        uniq_neg, unit = np.unique(neg_id, return_inverse=True)
        qlab = t["query_label"].to_numpy().astype(np.intp)
        sums = {name: np.zeros((len(uniq_neg), size)) for name in ("n", "s", "ss")}
        for name, arr in sums.items():
            arr[unit, qlab] = t[name].to_numpy()
        label = np.zeros(len(uniq_neg), dtype=np.int64)
        label[unit] = t["neg_label"].to_numpy()
        parts.append((np.full(len(uniq_neg), s), label, sums["n"], sums["s"], sums["ss"]))
    return NegativeSums(*(np.concatenate([p[i] for p in parts]) for i in range(5)))
