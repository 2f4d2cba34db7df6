"""Are hard negatives semantically close to their query? WordNet class similarity vs hardness.

Every logged (query, negative) pair with both labels known gets the **class_similarity** of the
query's class and the negative's class: a WordNet measure of the two classes
(:mod:`hardstat.analysis.wordnet`), looked up in DuckDB so the pairs stream (per run, the labels
of its train samples are a small registered table joined on ``sample_id`` and the C x C matrix a
bound list parameter indexed by ``query_label * C + negative_label``). It is never the logged
cosine ``pairs.similarity``. Only small aggregates come back to NumPy.

Pairs left out: a null ``neg_id`` (the queue's random initial keys), a sample without a label,
and **self-negatives** (``neg_id = query_id``: the query image's own key from an earlier epoch,
still in the queue; always of the query's class), which are counted
(``n_self_negatives_excluded``).

**Window.** By default the statistics use late training: the last third (rounded up) of each
run's logged steps. ``epochs=(a, b)`` / ``steps=(a, b)`` (inclusive, ``b`` None for open) select
instead, the same for every run.

**Hardness bins.** A pair's rank percentile is ``p = 100 (rank - 1) / K`` (rank 1, the hardest,
has p = 0). A bin ``lo-hi`` holds the pairs with ``lo <= p < hi``, exactly ``ceil(lo K / 100) <
rank <= ceil(hi K / 100)``, the count rule of :mod:`hardstat.bands`. Per bin (all runs pooled):
the number of pairs, the **same-class fraction**, and the mean class_similarity over the
**different-class pairs only** (so the bin means are not driven by the same-class share), each
with a 95% bootstrap interval.

**Contrasts** (:data:`CONTRASTS`, effect sizes, per run and as the mean over runs):

* ``same_class_excess``: same-class fraction in the hardest 5% minus over all ranks (the
  chance level: the class make-up of the queues these queries saw);
* ``class_similarity_gap_hard`` (the headline): mean class_similarity of different-class pairs
  in the hardest 5% minus in the 25-75% bins;
* ``class_similarity_gap_easy``: the easiest 5% minus the 50-75% bin, different-class pairs
  (positive: the easiest negatives are semantically close too, the paper's U shape).

**Intervals** (conditional on the run: they describe the steps, queries and negatives that
could have been logged from this training run, not other seeds): percentile intervals of a
bootstrap whose default design (:data:`RESAMPLING`) crosses **steps** (a logged step with its
queries: they share one queue and one encoder state) with **negatives** (images, seen by the
queries of many steps and again in later epochs): every pair is weighted ``W_step +
W_negative - 1``, independent Poisson(1) weights
(:func:`hardstat.analysis.stats.crossed_bootstrap_totals`), from per-step and per-negative sums.
Resampling queries alone ignores both dependences and is too narrow: on simulated crossed logs
its nominal 95% intervals covered the truth 35-77% of the time wherever steps or negatives had
effects, steps x negatives 92-99% in every setting (``tests/crossedlogs.py``,
``bench/bench_semantic.py``; conservative where neither has effects).
Across runs (seeds, the unit of replication for claims about the training method): the mean of
the per-run contrasts with a t-interval (n - 1 df).

**Trajectory.** The contrasts per (run, epoch) over every logged epoch (only the selected ones
when ``epochs``/``steps`` are given), point estimates (an epoch has few logged steps), and with
two or more runs their mean over runs with a t-interval.

**Rank correlation and its null.** Spearman's rho between the rank percentile and the
class_similarity over the window's pairs (ties get midranks; negative rho = harder negatives
are semantically closer), and again without same-class pairs. Its permutation p-value
(two-sided) shuffles the labels of the negatives: within each run, the labels of the distinct
``neg_id`` values are permuted, every pair of a negative gets its new label, and the statistic
is recomputed, vectorised over per-(negative, query label) sums of rank scores. The statistic
is the correlation of the rank's midrank among all pairs with the class_similarity's midrank
among the pairs kept; it equals rho exactly for all pairs, and without same-class pairs differs
from rho only in not re-ranking the ranks after the exclusion. scipy's analytic p (t
distribution, n - 2 df) treats pairs as independent, which they are not; read the permutation p.
"""

from __future__ import annotations

import contextlib
import itertools
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from fractions import Fraction
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from hardstat import display
from hardstat.analysis import logs
from hardstat.analysis.stats import (
    crossed_bootstrap_totals,
    percentile_interval_columns,
    permutation_p,
    ratio_draws,
    spearman_from_counts,
    spearman_t_pvalue,
    t_interval,
)
from hardstat.analysis.wordnet import DIAGONAL, MEASURES, similarity_for_classes
from hardstat.classes import ClassInfo, stand_in_note
from hardstat.display import json_value
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
LATE_FRACTION = Fraction(1, 3)
"""The default window: this fraction (rounded up) of each run's logged steps, the last ones."""
FEW_STEPS = 10
"""Below this many logged steps in a run's window the step factor of the bootstrap has too few
units to carry the steps' variance; the result warns."""

RESAMPLING = {
    "step-negative": "two-way bootstrap over steps (each with its queries, which share the "
    "step's queue and encoder) x negatives (images, across steps)",
    "query-negative": "two-way bootstrap over queries x negatives (ignores what the queries of a "
    "step share)",
    "step": "bootstrap over steps with their queries (ignores negatives seen at several steps)",
    "query": "bootstrap over queries only (ignores the shared queue, encoder and negatives: "
    "too narrow, for comparison)",
}
"""Resampling designs; the first is the default."""

_LABELS = "_hardstat_semantic_labels"
_SCORES = "_hardstat_semantic_scores"
_BIG = 2**31 - 1


@dataclass(frozen=True)
class Contrast:
    """An effect size: a statistic of the pairs in ``region`` minus the same of ``reference``
    (percent of the queue); ``kind`` is ``same_class`` (same-class fraction) or
    ``class_similarity`` (mean class_similarity of different-class pairs). ``text`` describes
    it, ``short`` names it in two parts (what, where)."""

    name: str
    kind: str
    region: tuple[int, int]
    reference: tuple[int, int]
    text: str
    short: tuple[str, str]


CONTRASTS = (
    Contrast(
        "same_class_excess", "same_class", (0, 5), (0, 100),
        "same-class share, hardest 5% minus all ranks (chance)",
        ("same-class excess", "hardest 5% − all ranks"),
    ),
    Contrast(
        "class_similarity_gap_hard", "class_similarity", (0, 5), (25, 75),
        "class_similarity of different-class pairs, hardest 5% minus 25–75%",
        ("class_similarity gap", "hardest 5% − 25–75%"),
    ),
    Contrast(
        "class_similarity_gap_easy", "class_similarity", (95, 100), (50, 75),
        "class_similarity of different-class pairs, easiest 5% minus 50–75%",
        ("class_similarity gap", "easiest 5% − 50–75%"),
    ),
)  # fmt: skip
"""The contrasts reported per run, over runs and per epoch (independent of the bins)."""
HEADLINE = "class_similarity_gap_hard"


# --------------------------------------------------------------------------------------------
# Bins, cells and the window


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


def _cells(bins: tuple[tuple[Fraction, Fraction], ...]) -> tuple[tuple[Fraction, Fraction], ...]:
    """The finest partition of 0-100 by the bins' and the contrasts' edges: every pair falls in
    exactly one cell, and every bin and contrast region is a union of cells."""
    edges = {Fraction(0), Fraction(100)}
    edges |= {e for b in bins for e in b}
    edges |= {Fraction(e) for c in CONTRASTS for e in (*c.region, *c.reference)}
    return tuple(itertools.pairwise(sorted(edges)))


def _in(cells: tuple[tuple[Fraction, Fraction], ...], lo: Any, hi: Any) -> np.ndarray:
    """(C,) bool: the cells inside ``lo <= p < hi``."""
    a, b = _fraction(lo), _fraction(hi)
    return np.array([a <= c0 and c1 <= b for c0, c1 in cells])


def parse_range(text: str, what: str = "range") -> tuple[int, int | None]:
    """``"150-199"`` -> (150, 199), ``"150-"`` -> (150, None), ``"7"`` -> (7, 7); counted from 0,
    inclusive."""
    t = text.strip()
    try:
        if "-" in t:
            a, b = t.split("-", 1)
            lo, hi = int(a), (int(b) if b.strip() else None)
        else:
            lo = hi = int(t)
    except ValueError as e:
        raise ConfigError(f"{what} {text!r}: give A, A-B or A- (integers, counted from 0)") from e
    if lo < 0 or (hi is not None and hi < lo):
        raise ConfigError(f"{what} {text!r}: need 0 <= A <= B")
    return lo, hi


def _window_text(
    epochs: tuple[int, int | None] | None, steps: tuple[int, int | None] | None
) -> str:
    def rng(r: tuple[int, int | None]) -> str:
        return f"{r[0]}" if r[0] == r[1] else f"{r[0]}-{'' if r[1] is None else r[1]}"

    parts = [f"epochs {rng(epochs)}"] if epochs else []
    parts += [f"steps {rng(steps)}"] if steps else []
    if not parts:
        return (
            f"late training: the last {LATE_FRACTION.numerator}/{LATE_FRACTION.denominator} "
            "(rounded up) of each run's logged steps"
        )
    return " and ".join(parts)


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

    def __init__(self, neg: NegativeSums, class_similarity: np.ndarray) -> None:
        if np.any(np.diff(neg.stratum) < 0):
            raise ValueError("NegativeSums rows must be sorted by stratum")
        n_strata, n_classes = class_similarity.shape[0], neg.n.shape[1]
        self.neg, self.n_classes, self.n_groups = neg, n_classes, n_strata * n_classes
        self.m = np.concatenate([neg.n, neg.score], axis=1)
        self.sxx_total = float(neg.score_sq.sum())
        # cell (group g = stratum * C + negative label b, query label a): class_similarity[s, a, b]
        y = class_similarity.transpose(0, 2, 1).reshape(self.n_groups, n_classes)
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
    neg: NegativeSums, class_similarity: np.ndarray, labels: np.ndarray
) -> tuple[float, float]:
    """The statistic (all pairs, without same-class pairs) when negative j has ``labels[j]``:
    the correlation of the pairs' rank scores with the midranks of the class_similarity of the query
    label and the negative's label, over the pairs kept."""
    return _LabelStatistic(neg, class_similarity)(np.asarray(labels))


def permutation_rhos(
    neg: NegativeSums,
    class_similarity: np.ndarray,
    permutations: int,
    rng: np.random.Generator,
) -> tuple[tuple[float, float], np.ndarray]:
    """The statistic for the observed labels and for ``permutations`` shufflings of the
    negatives' labels within each stratum (rows of ``neg`` sorted by stratum).

    ``class_similarity[s, a, b]`` is the class_similarity of query label a and negative label
    b in stratum s. Per permutation, the pairs are summed into cells (new negative label, query
    label) with one sparse product, O(negatives x classes). Returns ``((observed_all,
    observed_excl), perm)`` with perm of shape (permutations, 2).
    """
    stat = _LabelStatistic(neg, class_similarity)
    observed = stat(neg.label)
    out = np.empty((permutations, 2))
    for i in range(permutations):
        out[i] = stat(stat.shuffled(rng))
    return observed, out


# --------------------------------------------------------------------------------------------
# Result


@dataclass(frozen=True)
class SemanticBin:
    """One hardness bin (all runs pooled): percent bounds, ranks (when every run has the same
    K), pairs, and the two statistics with their bootstrap intervals."""

    lo: float
    hi: float
    rank_first: int | None
    rank_last: int | None
    n_pairs: int
    n_queries: int
    same_class_fraction: float
    same_class_ci_lo: float
    same_class_ci_hi: float
    n_pairs_different_class: int
    class_similarity_different_class: float
    class_similarity_ci_lo: float
    class_similarity_ci_hi: float

    @property
    def label(self) -> str:
        return bin_label(Fraction(str(self.lo)), Fraction(str(self.hi)))


@dataclass(frozen=True)
class RunSummary:
    """One run's window and counts: logged steps in all and in the window (with their first and
    last step and epoch), and the window's pairs, queries, negatives and self-negatives."""

    run: str
    queue_size: int
    logged_steps: int
    steps: int
    first_step: int | None
    last_step: int | None
    first_epoch: int | None
    last_epoch: int | None
    n_pairs: int
    n_queries: int
    n_negatives: int
    n_self_negatives_excluded: int


@dataclass(frozen=True)
class RunContrast:
    """A contrast in one run: ``estimate = value - reference_value``, bootstrap interval."""

    run: str
    contrast: str
    value: float
    reference_value: float
    estimate: float
    ci_lo: float
    ci_hi: float


@dataclass(frozen=True)
class SeedContrast:
    """A contrast over runs (seeds as units): mean of the runs' estimates, t-interval."""

    contrast: str
    n_runs: int
    mean: float
    ci_lo: float
    ci_hi: float


@dataclass(frozen=True)
class EpochContrast:
    """A contrast in one epoch: per run (``run`` set, a point estimate: ``ci_lo``/``ci_hi``
    are NaN) or the mean over ``n_runs`` runs with a t-interval (``run`` None)."""

    run: str | None
    epoch: int
    contrast: str
    n_runs: int
    n_steps: int
    n_pairs: int
    estimate: float
    ci_lo: float
    ci_hi: float
    in_window: bool


def contrast_text(kind: str, estimate: float, lo: float, hi: float) -> str:
    """A contrast with its interval: percentage points for fractions (``kind`` same_class),
    else class_similarity units."""
    if kind == "same_class":
        text = display.estimate(estimate, lo, hi, "+.2f", scale=100)
        return text if text == display.DASH else f"{text} pp"
    return display.estimate(estimate, lo, hi, "+.4f")


def _side_text(kind: str, value: float) -> str:
    return display.percent(value, 2) if kind == "same_class" else display.number(value, ".4f")


@dataclass(frozen=True)
class SemanticResult:
    """What ``hardstat analyze semantic`` reports (see the module docstring for definitions)."""

    measure: str
    runs: tuple[str, ...]
    class_similarity_source: str
    diagonal: float
    window: str
    resampling: str
    bootstrap: int
    permutations: int
    seed: int
    run_summaries: tuple[RunSummary, ...]
    contrasts: tuple[RunContrast, ...]
    seed_contrasts: tuple[SeedContrast, ...]
    bins: tuple[SemanticBin, ...]
    n_pairs: int
    n_queries: int
    n_steps: int
    n_negatives: int
    n_self_negatives_excluded: int
    same_class_fraction: float
    class_similarity_different_class: float
    trajectory: tuple[EpochContrast, ...]
    spearman_rho: float
    p_value: float
    p_value_analytic: float
    n_pairs_excluding_same_class: int
    spearman_rho_excluding_same_class: float
    p_value_excluding_same_class: float
    p_value_analytic_excluding_same_class: float
    warnings: tuple[str, ...]
    classes_note: str | None = None
    """Set when some runs' classes are synthetic stand-ins (:func:`hardstat.classes.
    stand_in_note`): every output (text, JSON, chart subtitle, report) states it first."""

    @property
    def resampling_text(self) -> str:
        return RESAMPLING[self.resampling]

    def contrast(self, name: str, run: str) -> RunContrast:
        """The contrast ``name`` of ``run``."""
        return next(c for c in self.contrasts if c.contrast == name and c.run == run)

    def contrast_rows(self) -> tuple[list[str], list[list[str]]]:
        """Columns and text rows of the effect sizes: per contrast, each run's value, reference
        and difference with its bootstrap interval, then the mean over runs with its
        t-interval (marked "(t)")."""
        rows = []
        for c in CONTRASTS:
            first = True
            for rc in (x for x in self.contrasts if x.contrast == c.name):
                rows.append(
                    [
                        ": ".join(c.short) if first else "",
                        rc.run,
                        _side_text(c.kind, rc.value),
                        _side_text(c.kind, rc.reference_value),
                        contrast_text(c.kind, rc.estimate, rc.ci_lo, rc.ci_hi),
                    ]
                )
                first = False
            for sc in (x for x in self.seed_contrasts if x.contrast == c.name):
                text = contrast_text(c.kind, sc.mean, sc.ci_lo, sc.ci_hi)
                rows.append(["", f"mean of {sc.n_runs} runs", "", "", f"{text} (t)"])
        return ["contrast", "run", "value", "reference", "difference [95% CI]"], rows

    def bin_rows(self) -> tuple[list[str], list[list[str]], list[bool]]:
        """Columns, text rows and right-alignment of the per-bin table (hard to easy, then
        all ranks); the ranks column only when every run has the same K."""
        ranks = any(b.rank_first is not None for b in self.bins)
        cols = ["bin %", *(["ranks"] if ranks else []), "pairs", "same class % [95% CI]"]
        cols += ["diff.-class pairs", "class_similarity [95% CI]"]
        rows = []
        for b in self.bins:
            row = [b.label]
            if ranks:
                empty = b.rank_first is None or b.rank_last is None or b.rank_first > b.rank_last
                one = b.rank_first == b.rank_last
                row.append(
                    display.DASH
                    if empty
                    else str(b.rank_first)
                    if one
                    else f"{b.rank_first}–{b.rank_last}"
                )
            row += [
                f"{b.n_pairs:,}",
                display.estimate(
                    b.same_class_fraction, b.same_class_ci_lo, b.same_class_ci_hi, ".2f", scale=100
                ),
                f"{b.n_pairs_different_class:,}",
                display.estimate(
                    b.class_similarity_different_class,
                    b.class_similarity_ci_lo,
                    b.class_similarity_ci_hi,
                    ".4f",
                ),
            ]
            rows.append(row)
        rows.append(
            [
                "all ranks",
                *([""] if ranks else []),
                f"{self.n_pairs:,}",
                display.percent(self.same_class_fraction, 2, symbol=False),
                f"{self.n_pairs_excluding_same_class:,}",
                display.number(self.class_similarity_different_class, ".4f"),
            ]
        )
        return cols, rows, [False, *([False] if ranks else []), True, True, True, True]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: NaN becomes None; bins carry their label, contrasts their description."""
        d = asdict(self)
        d["bins"] = [{"label": b.label, **asdict(b)} for b in self.bins]
        d["resampling_text"] = self.resampling_text
        d["contrast_definitions"] = [
            {"name": c.name, "kind": c.kind, "region": list(c.region),
             "reference": list(c.reference), "text": c.text, "short": list(c.short)}
            for c in CONTRASTS
        ]  # fmt: skip
        d["headline"] = HEADLINE
        out: dict[str, Any] = json_value(d)
        return out

    def bins_frame(self) -> pl.DataFrame:
        """One row per bin (hard to easy) plus the all-pairs values, for tables and charts."""
        import polars as pl

        rows = [{"bin": b.label, **asdict(b)} for b in self.bins]
        frame = pl.DataFrame(rows, infer_schema_length=None)
        return frame.with_columns(
            pl.lit(self.measure).alias("measure"),
            pl.lit(self.resampling).alias("resampling"),
            pl.lit(self.classes_note, dtype=pl.String).alias("classes_note"),
            pl.lit(self.same_class_fraction).alias("overall_same_class_fraction"),
            pl.lit(self.class_similarity_different_class).alias(
                "overall_class_similarity_different_class"
            ),
            pl.col(pl.Float64).fill_nan(None),
        )

    def trajectory_frame(self, contrast: str = HEADLINE) -> pl.DataFrame:
        """One row per (run, epoch) of ``contrast``, and per epoch the mean over runs (``run``
        = "mean over runs", with its t-interval) when there are several runs."""
        import polars as pl

        rows = [
            {**asdict(t), "run": t.run if t.run is not None else "mean over runs"}
            for t in self.trajectory
            if t.contrast == contrast
        ]
        schema = {
            "run": pl.String, "epoch": pl.Int64, "contrast": pl.String, "n_runs": pl.Int64,
            "n_steps": pl.Int64, "n_pairs": pl.Int64, "estimate": pl.Float64,
            "ci_lo": pl.Float64, "ci_hi": pl.Float64, "in_window": pl.Boolean,
        }  # fmt: skip
        frame = pl.DataFrame(rows, schema=schema)
        return frame.with_columns(pl.col(pl.Float64).fill_nan(None))


# --------------------------------------------------------------------------------------------
# The analysis


@dataclass(frozen=True)
class _Run:
    """One run's lookups: K, and its class-by-class class_similarity indexed by label."""

    name: str
    queue_size: int
    matrix: np.ndarray  # (C, C), NaN where a label has no class
    source: str


def _run_class_similarities(
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
        idx = np.asarray(labels)
        if matrix is not None:
            if matrix.ndim != 2 or not matrix.shape[0] == matrix.shape[1] >= size:
                raise ConfigError(
                    f"the class_similarity matrix is {matrix.shape}, run {run} has labels up "
                    f"to {size - 1}; give a square matrix indexed by label"
                )
            given = np.asarray(matrix, dtype=np.float64)[np.ix_(idx, idx)]
            if not np.all(np.abs(given) < 1000):
                raise ConfigError("class_similarity values must be finite, between -1000 and 1000")
            full = np.full(matrix.shape, np.nan)
            full[np.ix_(idx, idx)] = given
            out.append(_Run(run, k, full, "given matrix"))
            continue
        key = tuple(infos)
        if key not in cache:
            sim = similarity_for_classes(infos, measure)
            full = np.full((size, size), np.nan)
            full[np.ix_(idx, idx)] = sim.matrix
            cache[key] = (full, sim.source)
        out.append(_Run(run, k, *cache[key]))
    return out


def _cell_case(n_cells: int) -> str:
    """SQL mapping p.rank to its cell index; the cut ranks are parameters."""
    whens = " ".join(f"WHEN p.rank > $lo{i} AND p.rank <= $hi{i} THEN {i}" for i in range(n_cells))
    return f"CASE {whens} ELSE -1 END"


def _cell_params(cells: tuple[tuple[Fraction, Fraction], ...], k: int) -> dict[str, int]:
    out = {}
    for i, (lo, hi) in enumerate(cells):
        first, last = bin_ranks(lo, hi, k)
        out[f"lo{i}"], out[f"hi{i}"] = first - 1, last
    return out


@dataclass(frozen=True)
class _Span:
    """Inclusive step and epoch bounds of a selection (SQL parameters)."""

    first_step: int = -_BIG
    last_step: int = _BIG
    first_epoch: int = -_BIG
    last_epoch: int = _BIG

    def params(self) -> dict[str, int]:
        return asdict(self)

    def contains(self, step: np.ndarray, epoch: np.ndarray) -> np.ndarray:
        return (
            (step >= self.first_step) & (step <= self.last_step)
            & (epoch >= self.first_epoch) & (epoch <= self.last_epoch)
        )  # fmt: skip


def _spans(
    con: duckdb.DuckDBPyConnection,
    run: str,
    epochs: tuple[int, int | None] | None,
    steps: tuple[int, int | None] | None,
) -> tuple[_Span, _Span, np.ndarray, np.ndarray]:
    """The run's window and trajectory spans, and its logged (step, epoch) arrays."""
    t = logs.query(
        con,
        "SELECT step, min(epoch) AS epoch FROM pairs WHERE run = $run GROUP BY step ORDER BY step",
        {"run": run},
    )
    step = t["step"].to_numpy().astype(np.int64)
    epoch = t["epoch"].to_numpy().astype(np.int64)
    if epochs is None and steps is None:
        n_late = math.ceil(len(step) * LATE_FRACTION)
        first = int(step[-n_late]) if len(step) else _BIG
        return _Span(first_step=first), _Span(), step, epoch
    e0, e1 = epochs if epochs is not None else (-_BIG, _BIG)
    s0, s1 = steps if steps is not None else (-_BIG, _BIG)
    span = _Span(s0, _BIG if s1 is None else s1, e0, _BIG if e1 is None else e1)
    return span, span, step, epoch


# Pairs of one run in a span whose query and negative both have a known label: the labels come
# from a registered (sample_id, label) table of the run's train split (a join on sample_id only,
# so the optimizer cannot pair the two label lookups with each other), the class_similarity from
# the run's C x C matrix bound as a flat list parameter indexed by query_label * C + neg_label.
_FROM = f"""
    FROM pairs p
    JOIN {_LABELS} ql ON ql.sample_id = p.query_id
    JOIN {_LABELS} nl ON nl.sample_id = p.neg_id
    WHERE p.run = $run AND p.step BETWEEN $first_step AND $last_step
      AND p.epoch BETWEEN $first_epoch AND $last_epoch
"""
_NOT_SELF = "AND p.neg_id <> p.query_id"
_CLASS_SIMILARITY = "list_extract($class_similarity, ql.label * $classes + nl.label + 1)"
# The class_similarity sum is exact (DECIMAL, 15 decimals: integer arithmetic), so it does not
# depend on the order in which DuckDB's threads add; with ORDER BY ALL every result, and so every
# NumPy sum over its rows, is the same from one call to the next.
_SUMS = f"""count(*) AS n, count(*) FILTER (WHERE ql.label = nl.label) AS n_same,
    CAST(coalesce(sum(CAST({_CLASS_SIMILARITY} AS DECIMAL(18, 15)))
                  FILTER (WHERE ql.label <> nl.label), 0) AS DOUBLE) AS sum_diff"""
_QUANTITIES = ("n", "n_same", "sum_diff")
"""Per cell: pairs, same-class pairs, sum of class_similarity over different-class pairs.
Sums are laid out quantity-major: column ``q * C + cell``."""


def check_options(
    measure: str = "wup",
    bootstrap: int = 1000,
    permutations: int = 1000,
    *,
    resampling: str = "step-negative",
    epochs: tuple[int, int | None] | None = None,
    steps: tuple[int, int | None] | None = None,
) -> None:
    """Validate the analysis options (one-line ConfigErrors, in the CLI's words), before any
    work: the CLI, the report and :func:`semantic` call this."""
    if measure not in MEASURES:
        raise ConfigError(f"--measure {measure!r}: use one of {', '.join(MEASURES)}")
    if permutations != 0 and permutations < MIN_PERMUTATIONS:
        raise ConfigError(
            f"--permutations {permutations}: give 0 (no permutation test) or at least "
            f"{MIN_PERMUTATIONS}, e.g. 1000"
        )
    if bootstrap < 0:
        raise ConfigError(f"--bootstrap {bootstrap}: give 0 (no intervals) or more, e.g. 1000")
    if resampling not in RESAMPLING:
        raise ConfigError(f"--resampling {resampling!r}: use one of {', '.join(RESAMPLING)}")
    for name, r in (("epochs", epochs), ("steps", steps)):
        if r is not None and (r[0] < 0 or (r[1] is not None and r[1] < r[0])):
            raise ConfigError(f"--{name} {r}: need 0 <= first <= last")


def semantic(
    con: duckdb.DuckDBPyConnection,
    measure: str = "wup",
    bins: Sequence[tuple[Any, Any]] = DEFAULT_BINS,
    bootstrap: int = 1000,
    permutations: int = 1000,
    seed: int = 0,
    *,
    epochs: tuple[int, int | None] | None = None,
    steps: tuple[int, int | None] | None = None,
    resampling: str = "step-negative",
    class_similarity: np.ndarray | None = None,
) -> SemanticResult:
    """WordNet class_similarity of query and negative classes by hardness: per-bin statistics,
    contrasts per run and over runs with bootstrap and t-intervals, their per-epoch trajectory,
    and Spearman's rho of rank and class_similarity with a label-permutation p-value.

    ``con`` is a :func:`hardstat.analysis.logs.connect` connection (all its runs). ``epochs``
    and ``steps`` are inclusive ranges (``(a, None)``: from a on); neither: late training (the
    last third of each run's logged steps). ``resampling`` is one of :data:`RESAMPLING`.
    ``class_similarity`` replaces the WordNet matrix: ``class_similarity[a, b]`` for query label
    a and negative label b (a test hook, and for custom class similarities; the result's
    ``measure`` is then ``"given"``). ``permutations`` is 0 (no permutation test) or at least
    200. Raises LogError when no pair in the window has both labels.
    """
    check_options(
        measure if class_similarity is None else MEASURES[0],
        bootstrap,
        permutations,
        resampling=resampling,
        epochs=epochs,
        steps=steps,
    )
    bin_spec = check_bins(bins)
    run_rows = logs.query(con, "SELECT run, queue_size FROM runs ORDER BY run").to_pylist()
    queue_sizes = {r["run"]: int(r["queue_size"]) for r in run_rows if r["queue_size"]}
    if not queue_sizes:
        raise LogError("no run with a queue size in its manifest; nothing to analyse")
    runs = _run_class_similarities(con, queue_sizes, measure, class_similarity)
    try:
        name = "given" if class_similarity is not None else measure
        result = _analyse(
            con, runs, name, bin_spec, bootstrap, permutations, seed, epochs, steps, resampling
        )
        datasets = logs.query(con, "SELECT run, dataset FROM runs ORDER BY run").to_pylist()
        note = stand_in_note({r["run"]: r["dataset"] for r in datasets if r["run"] in result.runs})
        return replace(result, classes_note=note) if note else result
    finally:
        for table in (_LABELS, _SCORES):
            with contextlib.suppress(Exception):  # a name that was not registered
                con.unregister(table)


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


def _run_params(run: _Run, span: _Span) -> dict[str, Any]:
    flat = run.matrix.ravel()
    return {
        "run": run.name,
        "classes": run.matrix.shape[0],
        "class_similarity": json_value(flat),  # NaN (no class) -> null
        **span.params(),
    }


def _unit_sums(unit: np.ndarray, cell: np.ndarray, values: np.ndarray, n_cells: int) -> np.ndarray:
    """(U, 3 C) sums per unit (``unit`` renumbered 0..U-1) and cell, quantity-major; ``values``
    (rows, 3)."""
    n_units = int(unit.max()) + 1 if len(unit) else 0
    out = np.zeros((n_units, len(_QUANTITIES) * n_cells))
    for q in range(len(_QUANTITIES)):
        np.add.at(out, (unit, q * n_cells + cell), values[:, q])
    return out


def _renumber(*keys: np.ndarray) -> np.ndarray:
    """Dense unit index 0..U-1 of rows keyed by the given columns."""
    if not len(keys[0]):
        return np.zeros(0, np.intp)
    return np.unique(np.stack(keys), axis=1, return_inverse=True)[1].ravel()


def _same_fraction(tot: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Same-class fraction of the cells in ``mask`` from sums (..., 3 C)."""
    c = len(mask)
    return ratio_draws(tot[..., c : 2 * c][..., mask].sum(-1), tot[..., :c][..., mask].sum(-1))


def _different_class_similarity(tot: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Mean class_similarity of the different-class pairs of the cells in ``mask``."""
    c = len(mask)
    different = tot[..., :c] - tot[..., c : 2 * c]
    return ratio_draws(tot[..., 2 * c :][..., mask].sum(-1), different[..., mask].sum(-1))


def _contrast_sides(
    tot: np.ndarray, cells: tuple[tuple[Fraction, Fraction], ...]
) -> tuple[np.ndarray, np.ndarray]:
    """Each contrast's two sides from sums (..., 3 C): (value, reference), each (..., n)."""
    values, refs = [], []
    for c in CONTRASTS:
        stat = _same_fraction if c.kind == "same_class" else _different_class_similarity
        values.append(stat(tot, _in(cells, *c.region)))
        refs.append(stat(tot, _in(cells, *c.reference)))
    return np.stack(values, axis=-1), np.stack(refs, axis=-1)


@dataclass
class _RunSums:
    """What one run contributes: window totals, bootstrap replicate totals, per-query sums (for
    the bins' query counts), per-epoch totals of the trajectory span, and its summary."""

    total: np.ndarray  # (3 C,)
    draws: np.ndarray | None  # (B, 3 C)
    query_sums: np.ndarray  # (Q, 3 C)
    epochs: np.ndarray  # (E,)
    epoch_totals: np.ndarray  # (E, 3 C)
    epoch_steps: np.ndarray  # (E,)
    epoch_in_window: np.ndarray  # (E,) bool
    summary: RunSummary
    step_units: int


def _run_sums(
    con: duckdb.DuckDBPyConnection,
    run: _Run,
    cells: tuple[tuple[Fraction, Fraction], ...],
    window: _Span,
    trajectory: _Span,
    logged: tuple[np.ndarray, np.ndarray],
    bootstrap: int,
    resampling: str,
    rng: np.random.Generator,
) -> _RunSums:
    n_cells = len(cells)
    cell_params = _cell_params(cells, run.queue_size)
    # 1. per (step, query, self-negative?, cell) over the trajectory span
    t = logs.query(
        con,
        f"""
        SELECT p.step, p.epoch, p.query_id, p.neg_id = p.query_id AS self,
               {_cell_case(n_cells)} AS cell, {_SUMS}
        {_FROM}
        GROUP BY ALL
        ORDER BY ALL
        """,
        {**_run_params(run, trajectory), **cell_params},
    )
    step = t["step"].to_numpy().astype(np.int64)
    epoch = t["epoch"].to_numpy().astype(np.int64)
    query = t["query_id"].to_numpy().astype(np.int64)
    self_neg = t["self"].to_numpy(zero_copy_only=False).astype(bool)
    cell = t["cell"].to_numpy().astype(np.intp)
    values = np.stack([t[q].to_numpy().astype(np.float64) for q in _QUANTITIES], axis=1)
    in_window = window.contains(step, epoch)
    n_self = int(values[in_window & self_neg, 0].sum())
    keep = ~self_neg
    w = keep & in_window
    query_sums = _unit_sums(_renumber(step[w], query[w]), cell[w], values[w], n_cells)
    step_sums = _unit_sums(_renumber(step[w]), cell[w], values[w], n_cells)
    # trajectory: per epoch
    epochs_all = np.unique(epoch[keep])
    e_idx = np.searchsorted(epochs_all, epoch[keep])
    epoch_totals = _unit_sums(e_idx, cell[keep], values[keep], n_cells)  # (E, 3 C)
    epoch_steps = np.array([len(np.unique(step[keep][e_idx == i])) for i in range(len(epochs_all))])
    epoch_in_window = np.isin(epochs_all, epoch[w])

    # 2. per (negative, cell) over the window
    t = logs.query(
        con,
        f"""
        SELECT p.neg_id, {_cell_case(n_cells)} AS cell, {_SUMS}
        {_FROM} {_NOT_SELF}
        GROUP BY ALL
        ORDER BY ALL
        """,
        {**_run_params(run, window), **cell_params},
    )
    neg_values = np.stack([t[q].to_numpy().astype(np.float64) for q in _QUANTITIES], axis=1)
    neg_sums = _unit_sums(
        _renumber(t["neg_id"].to_numpy().astype(np.int64)),
        t["cell"].to_numpy().astype(np.intp),
        neg_values,
        n_cells,
    )
    total = step_sums.sum(axis=0) if len(step_sums) else np.zeros(3 * n_cells)
    draws = None
    if bootstrap and len(step_sums):
        factors = {
            "step-negative": [step_sums, neg_sums],
            "query-negative": [query_sums, neg_sums],
            "step": [step_sums],
            "query": [query_sums],
        }[resampling]
        draws = crossed_bootstrap_totals(factors, bootstrap, rng)
    logged_step, logged_epoch = logged
    sel = window.contains(logged_step, logged_epoch)
    summary = RunSummary(
        run=run.name,
        queue_size=run.queue_size,
        logged_steps=len(logged_step),
        steps=int(sel.sum()),
        first_step=int(logged_step[sel].min()) if sel.any() else None,
        last_step=int(logged_step[sel].max()) if sel.any() else None,
        first_epoch=int(logged_epoch[sel].min()) if sel.any() else None,
        last_epoch=int(logged_epoch[sel].max()) if sel.any() else None,
        n_pairs=int(total[:n_cells].sum()),
        n_queries=len(query_sums),
        n_negatives=len(neg_sums),
        n_self_negatives_excluded=n_self,
    )
    return _RunSums(
        total=total,
        draws=draws,
        query_sums=query_sums,
        epochs=epochs_all,
        epoch_totals=epoch_totals,
        epoch_steps=epoch_steps,
        epoch_in_window=epoch_in_window,
        summary=summary,
        step_units=len(step_sums),
    )


def _analyse(
    con: duckdb.DuckDBPyConnection,
    runs: list[_Run],
    measure: str,
    bins: tuple[tuple[Fraction, Fraction], ...],
    bootstrap: int,
    permutations: int,
    seed: int,
    epochs: tuple[int, int | None] | None,
    steps: tuple[int, int | None] | None,
    resampling: str,
) -> SemanticResult:
    cells = _cells(bins)
    n_cells = len(cells)
    seeds = np.random.SeedSequence(seed).spawn(len(runs) + 1)
    warnings: list[str] = []
    sums: list[_RunSums] = []
    used: list[_Run] = []
    windows: list[_Span] = []
    joint: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
    for i, run in enumerate(runs):
        window, span, *logged = _spans(con, run.name, epochs, steps)
        if not window.contains(*logged).any():
            warnings.append(f"run {run.name} has no logged step in the window; left out")
            continue
        _register_labels(con, run)
        rs = _run_sums(
            con, run, cells, window, span, (logged[0], logged[1]), bootstrap, resampling,
            np.random.default_rng(seeds[i]),
        )  # fmt: skip
        sums.append(rs)
        used.append(run)
        windows.append(window)
        # joint distribution of (rank, class_similarity, same class) for Spearman's rho
        t = logs.query(
            con,
            f"""
            SELECT p.rank, {_CLASS_SIMILARITY} AS class_similarity,
                   ql.label = nl.label AS same, count(*) AS n
            {_FROM} {_NOT_SELF}
            GROUP BY ALL
            ORDER BY ALL
            """,
            _run_params(run, window),
        )
        joint.append(
            (
                (t["rank"].to_numpy() - 1) / run.queue_size,  # comparable across K
                t["class_similarity"].to_numpy(),
                t["same"].to_numpy(zero_copy_only=False).astype(bool),
                t["n"].to_numpy().astype(np.float64),
            )
        )
    if not joint:
        raise LogError(f"no run has a logged step in the window ({_window_text(epochs, steps)})")
    x, y, same, cnt = (np.concatenate([j[i] for j in joint]) for i in range(4))
    n_all = int(cnt.sum())
    if n_all == 0:
        raise LogError(
            "no logged pair in the window has a known query and negative label (pairs joined "
            "to samples of the train split); check that the runs logged pairs and wrote their "
            "samples table"
        )
    rho_all = spearman_from_counts(x, y, cnt)
    rho_excl = spearman_from_counts(x[~same], y[~same], cnt[~same])
    n_excl = int(cnt[~same].sum())

    for rs in sums:
        if rs.summary.n_pairs == 0:
            warnings.append(f"run {rs.summary.run} has no labelled pair in the window")
        elif resampling in ("step-negative", "step") and rs.step_units < FEW_STEPS:
            warnings.append(
                f"run {rs.summary.run} has {rs.step_units} logged step(s) in the window: too "
                "few for the bootstrap over steps, its intervals may be too narrow (widen the "
                "window with epochs/steps)"
            )
    if resampling == "query":
        warnings.append(RESAMPLING["query"])

    # per run: contrasts with bootstrap intervals
    contrasts: list[RunContrast] = []
    estimates = np.full((len(sums), len(CONTRASTS)), np.nan)
    for r, rs in enumerate(sums):
        value, ref = _contrast_sides(rs.total, cells)  # (n,)
        lo = hi = np.full(len(CONTRASTS), np.nan)
        if rs.draws is not None:
            dv, dr = _contrast_sides(rs.draws, cells)  # (B, n)
            lo, hi = percentile_interval_columns(dv - dr)
        estimates[r] = value - ref
        for k, c in enumerate(CONTRASTS):
            contrasts.append(
                RunContrast(
                    rs.summary.run,
                    c.name,
                    float(value[k]),
                    float(ref[k]),
                    float(value[k] - ref[k]),
                    float(lo[k]),
                    float(hi[k]),
                )
            )
    seed_contrasts: list[SeedContrast] = []
    if len(sums) >= 2:
        for k, c in enumerate(CONTRASTS):
            e = estimates[:, k][np.isfinite(estimates[:, k])]
            t_lo, t_hi = t_interval(e)
            mean = float(e.mean()) if len(e) else float("nan")
            seed_contrasts.append(SeedContrast(c.name, len(e), mean, float(t_lo), float(t_hi)))

    # pooled bins: totals and replicate totals add over runs (independent weights)
    total = np.sum([rs.total for rs in sums], axis=0)
    draws = None
    if bootstrap and all(rs.draws is not None for rs in sums if rs.step_units):
        draws = np.sum([rs.draws for rs in sums if rs.draws is not None], axis=0)
    ks = {r.queue_size for r in used}
    out_bins = []
    for lo_b, hi_b in bins:
        mask = _in(cells, lo_b, hi_b)
        first, last = bin_ranks(lo_b, hi_b, next(iter(ks))) if len(ks) == 1 else (None, None)
        n_b = int(total[:n_cells][mask].sum())
        n_same = int(total[n_cells : 2 * n_cells][mask].sum())
        s_lo = s_hi = d_lo = d_hi = float("nan")
        if draws is not None:
            (s_lo, d_lo), (s_hi, d_hi) = percentile_interval_columns(
                np.stack([_same_fraction(draws, mask), _different_class_similarity(draws, mask)], 1)
            )
        out_bins.append(
            SemanticBin(
                lo=float(lo_b),
                hi=float(hi_b),
                rank_first=first,
                rank_last=last,
                n_pairs=n_b,
                n_queries=sum(
                    int(np.count_nonzero(rs.query_sums[:, :n_cells][:, mask].sum(1))) for rs in sums
                ),
                same_class_fraction=float(_same_fraction(total, mask)),
                same_class_ci_lo=float(s_lo),
                same_class_ci_hi=float(s_hi),
                n_pairs_different_class=n_b - n_same,
                class_similarity_different_class=float(_different_class_similarity(total, mask)),
                class_similarity_ci_lo=float(d_lo),
                class_similarity_ci_hi=float(d_hi),
            )
        )

    trajectory = _trajectory(sums, cells)

    # permutation null: shuffle the labels of the negatives within each run
    p_all = p_excl = float("nan")
    if permutations:
        neg = _negative_sums(con, used, windows, x, cnt)
        size = max(r.matrix.shape[0] for r in used)
        stacked = np.zeros((len(used), size, size))
        for s, run in enumerate(used):
            c = run.matrix.shape[0]
            stacked[s, :c, :c] = np.nan_to_num(run.matrix)
        (t_all, t_excl), perm = permutation_rhos(
            neg, stacked, permutations, np.random.default_rng(seeds[-1])
        )
        p_all = permutation_p(t_all, perm[:, 0], "two-sided")
        p_excl = permutation_p(t_excl, perm[:, 1], "two-sided")

    summaries = tuple(rs.summary for rs in sums)
    every = np.ones(n_cells, bool)
    return SemanticResult(
        measure=measure,
        runs=tuple(r.name for r in used),
        class_similarity_source="; ".join(dict.fromkeys(r.source for r in used)),
        diagonal=DIAGONAL.get(measure, float("nan")),  # NaN for a given matrix
        window=_window_text(epochs, steps),
        resampling=resampling,
        bootstrap=bootstrap,
        permutations=permutations,
        seed=seed,
        run_summaries=summaries,
        contrasts=tuple(contrasts),
        seed_contrasts=tuple(seed_contrasts),
        bins=tuple(out_bins),
        n_pairs=n_all,
        n_queries=sum(s.n_queries for s in summaries),
        n_steps=sum(rs.step_units for rs in sums),
        n_negatives=sum(s.n_negatives for s in summaries),
        n_self_negatives_excluded=sum(s.n_self_negatives_excluded for s in summaries),
        same_class_fraction=float(_same_fraction(total, every)),
        class_similarity_different_class=float(_different_class_similarity(total, every)),
        trajectory=trajectory,
        spearman_rho=rho_all,
        p_value=p_all,
        p_value_analytic=spearman_t_pvalue(rho_all, n_all),
        n_pairs_excluding_same_class=n_excl,
        spearman_rho_excluding_same_class=rho_excl,
        p_value_excluding_same_class=p_excl,
        p_value_analytic_excluding_same_class=spearman_t_pvalue(rho_excl, n_excl),
        warnings=tuple(warnings),
    )


def _trajectory(
    sums: list[_RunSums], cells: tuple[tuple[Fraction, Fraction], ...]
) -> tuple[EpochContrast, ...]:
    """Per (run, epoch) contrasts, then per epoch the mean over runs (two or more)."""
    nan = float("nan")
    out: list[EpochContrast] = []
    by_epoch: dict[int, list[tuple[np.ndarray, bool, int, int]]] = {}
    for rs in sums:
        value, ref = _contrast_sides(rs.epoch_totals, cells)  # (E, n)
        est = value - ref
        n_pairs = rs.epoch_totals[:, : len(cells)].sum(axis=1)
        for e, epoch in enumerate(rs.epochs):
            inw = bool(rs.epoch_in_window[e])
            by_epoch.setdefault(int(epoch), []).append(
                (est[e], inw, int(rs.epoch_steps[e]), int(n_pairs[e]))
            )
            for k, c in enumerate(CONTRASTS):
                out.append(
                    EpochContrast(
                        rs.summary.run,
                        int(epoch),
                        c.name,
                        1,
                        int(rs.epoch_steps[e]),
                        int(n_pairs[e]),
                        float(est[e, k]),
                        nan,
                        nan,
                        inw,
                    )
                )
    if len(sums) >= 2:
        for epoch in sorted(by_epoch):
            rows = by_epoch[epoch]
            ests = np.array([r[0] for r in rows])  # (runs, n)
            inw = any(r[1] for r in rows)
            n_steps, n_pairs_e = sum(r[2] for r in rows), sum(r[3] for r in rows)
            for k, c in enumerate(CONTRASTS):
                e = ests[:, k][np.isfinite(ests[:, k])]
                if len(e) < 2:
                    continue
                lo, hi = t_interval(e)
                out.append(
                    EpochContrast(
                        None,
                        epoch,
                        c.name,
                        len(e),
                        n_steps,
                        n_pairs_e,
                        float(e.mean()),
                        float(lo),
                        float(hi),
                        inw,
                    )
                )
    return tuple(out)


def _negative_sums(
    con: duckdb.DuckDBPyConnection,
    runs: list[_Run],
    windows: list[_Span],
    x: np.ndarray,
    cnt: np.ndarray,
) -> NegativeSums:
    """Per (run, neg_id) and query label: pairs, and sums of the rank's centered midrank
    among all pairs of the window (pooled over runs by rank percentile)."""
    uniq, inverse = np.unique(x, return_inverse=True)
    totals = np.bincount(inverse, weights=cnt, minlength=len(uniq))
    score_of_x = np.cumsum(totals) - (totals - 1) / 2 - (totals.sum() + 1) / 2
    size = max(r.matrix.shape[0] for r in runs)
    parts = []
    for s, (run, window) in enumerate(zip(runs, windows, strict=True)):
        ranks = np.arange(1, run.queue_size + 1)
        pos = np.clip(np.searchsorted(uniq, (ranks - 1) / run.queue_size), 0, len(uniq) - 1)
        # ranks absent from the pairs get a neighbour's score but never join a pair
        con.register(
            _SCORES,
            pa.table(
                {
                    "rank": pa.array(ranks, pa.int32()),
                    # half-integers: exact as DECIMAL, so the sums do not depend on the order
                    "score": pa.array(score_of_x[pos], pa.float64()).cast(pa.decimal128(18, 1)),
                }
            ),
        )
        _register_labels(con, run)
        t = logs.query(
            con,
            f"""
            SELECT p.neg_id, nl.label AS neg_label, ql.label AS query_label, count(*) AS n,
                   CAST(sum(sc.score) AS DOUBLE) AS s,
                   CAST(sum(sc.score * sc.score) AS DOUBLE) AS ss
            FROM pairs p
            JOIN {_LABELS} ql ON ql.sample_id = p.query_id
            JOIN {_LABELS} nl ON nl.sample_id = p.neg_id
            JOIN {_SCORES} sc ON sc.rank = p.rank
            WHERE p.run = $run AND p.step BETWEEN $first_step AND $last_step
              AND p.epoch BETWEEN $first_epoch AND $last_epoch {_NOT_SELF}
            GROUP BY ALL
            ORDER BY ALL
            """,
            {"run": run.name, **window.params()},
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
