"""Is a negative's hardness a property of the negative? Overdispersion of per-negative band counts.

For every negative (``neg_id``) of the chosen runs' logged pairs we count ``m``, its appearances
(logged query-negative pairs), and ``k``, the pairs in which its rank fell in a band of the
hardest ranks (default ``0-5``: the hardest 5% of the queue; ``Band.rank_intervals(K)``). If
hardness were exchangeable among the negatives of each query (no negative consistently harder
than another), each appearance would be in the band with probability ``p = kept_count(K) / K``
independently across queries, so ``k ~ Binomial(m, p)``. Consistent hardness shows up as
overdispersion of the ``k``:

* :func:`dispersion_statistic`: Pearson's ``X2 = sum (k - m p)^2 / (m p (1 - p))`` against
  chi-square with ``n`` degrees of freedom (Cochran 1954), and the dispersion ratio ``X2 / n``
  (the variance of the standardized residuals; 1 under the null) as effect size;
  :func:`tarone_z`, Tarone's (1979) score test against beta-binomial overdispersion, which stays
  calibrated when ``m p`` is small;
* per negative, a two-sided exact binomial test (:func:`two_sided_binomial_p`), then
  Benjamini-Hochberg (:func:`benjamini_hochberg`) -> consistently hard / easy negatives;
* a permutation check: ranks shuffled within each logged query (:func:`shuffled_counts`, a
  seeded permutation per query, streamed), same statistic;
* class-conditional consistency: the null in-band rate of a pair is the rate of its
  (query class, negative class) cell, estimated from the data;
* persistence: Spearman correlation of per-negative mean rank percentile between two halves of
  training, two epochs, or two runs, with an analytic and a permutation p-value.

The counting is one streaming DuckDB aggregation over the ``pairs`` view (logs larger than
memory work); the statistics are NumPy/SciPy on one row per negative. The checks add one
streamed pass each (the shuffle, in Arrow batches; the class counts, one DuckDB aggregation
per negative and query class). No torch.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from hardstat.analysis.stats import (
    benjamini_hochberg,
    chi2_upper_tail,
    dispersion_statistic,
    pearson_dispersion,
    spearman_test,
    tarone_z,
    two_sided_binomial_p,
)
from hardstat.bands import Band, parse_band
from hardstat.errors import ConfigError, LogError, RunError

DEFAULT_BAND = "0-5"
DEFAULT_FDR = 0.05
DEFAULT_PERMUTATIONS = 1000
_LN10 = math.log(10.0)


# -- pure functions --------------------------------------------------------------------------
def _min_per_bin(m: Any) -> int:
    """Lattice points per bin at least: 1 when every m is equal, else 3 (smooths the comb that
    several interleaved lattices make)."""
    m = np.asarray(m)
    return 1 if m.size == 0 or m.min() == m.max() else 3


def rate_bin_edges(m: Any, rates: Any, p: float, max_bins: int = 60) -> np.ndarray:
    """Histogram edges for in-band rates, aligned to the lattice ``j / median(m)``.

    Each bin holds the same number of lattice points (so discreteness does not make a comb;
    at least 3 when the m differ), and the range covers the observed rates and the null's
    bulk.
    """
    m = np.asarray(m, dtype=np.float64)
    m0 = max(1, int(np.median(m)))
    top = max(float(np.max(rates)), p + 5 * math.sqrt(p * (1 - p) / max(float(np.min(m)), 1)))
    top = min(1.0, top)
    points = math.ceil(top * m0) + 1  # lattice points 0 .. ceil(top * m0)
    per_bin = max(_min_per_bin(m), math.ceil(points / max_bins))
    n_bins = math.ceil(points / per_bin)
    return (np.arange(n_bins + 1) * per_bin - 0.5) / m0


def z_bin_edges(
    m: Any, z: Any, p: float, lo: float = -8.0, hi: float = 24.0, max_bins: int = 60
) -> np.ndarray:
    """Edges for z-scores, aligned to the lattice ``(j - m0 p) / sqrt(m0 p (1 - p))``.

    ``m0`` is the median of ``m``; each bin holds the same number of lattice points (no comb
    from discreteness; at least 3 when the m differ). The range covers the observed scores and
    [-4, 4], within [lo, hi]; scores beyond it fall into the first or last bin (see
    :func:`_bin_index`).
    """
    z = np.asarray(z, dtype=np.float64)
    m0 = max(1.0, float(np.median(np.asarray(m, dtype=np.float64))))
    step = 1.0 / math.sqrt(m0 * p * (1 - p))
    start = max(lo, min(float(z.min()), -4.0))
    stop = min(hi, max(float(z.max()), 4.0))
    per_bin = max(_min_per_bin(m), math.ceil((stop - start) / step / max_bins))
    width = per_bin * step
    first = math.floor((start / step + m0 * p) / per_bin) * per_bin  # lattice index at start
    origin = (first - m0 * p - 0.5) * step
    n_bins = max(1, math.ceil((stop - origin) / width))
    return origin + np.arange(n_bins + 1) * width


def _bin_index(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Bin of each value; values beyond the last edge go to the last bin, below to the first."""
    idx = np.searchsorted(edges, values, side="right") - 1
    return np.clip(idx, 0, len(edges) - 2)


def _scores(k: np.ndarray, m: np.ndarray, p: float, kind: str) -> np.ndarray:
    if kind == "rate":
        return k / m
    return (k - m * p) / np.sqrt(m * p * (1 - p))


def null_histogram(m: Any, p: float, edges: np.ndarray, kind: str = "rate") -> np.ndarray:
    """Expected number of negatives per bin of ``kind`` ('rate' k/m or 'z') under the null.

    The null is the mixture over negatives of ``Binomial(m_i, p)``, computed exactly: each
    distinct ``m`` contributes its binomial pmf (support trimmed where the mass is below 1e-15),
    weighted by how many negatives have that ``m``, binned as the observed scores are.
    """
    from scipy.stats import binom

    values, counts = np.unique(np.asarray(m, dtype=np.int64), return_counts=True)
    expected = np.zeros(len(edges) - 1)
    for mi, ci in zip(values.tolist(), counts.tolist(), strict=True):
        lo = int(binom.ppf(1e-15, mi, p))
        hi = int(binom.isf(1e-15, mi, p)) + 1
        ks = np.arange(max(lo - 1, 0), min(hi + 1, mi) + 1)
        pmf = binom.pmf(ks, mi, p)
        scores = _scores(ks.astype(np.float64), np.full(ks.size, float(mi)), p, kind)
        np.add.at(expected, _bin_index(scores, edges), ci * pmf)
    return expected


def observed_histogram(
    k: Any, m: Any, p: float, edges: np.ndarray, kind: str = "rate"
) -> np.ndarray:
    """Number of negatives per bin of ``kind`` ('rate' or 'z'), binned as :func:`null_histogram`."""
    scores = _scores(np.asarray(k, dtype=np.float64), np.asarray(m, dtype=np.float64), p, kind)
    return np.bincount(_bin_index(scores, edges), minlength=len(edges) - 1).astype(np.int64)


# -- results ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class PermutationCheck:
    """The statistic after shuffling ranks within each logged (run, step, query): a null draw."""

    seed: int
    statistic: float
    df: int
    dispersion_ratio: float
    p_value: float
    log10_p_value: float
    n_consistently_hard: int
    n_consistently_easy: int


@dataclass(frozen=True)
class ClassConditional:
    """Overdispersion beyond the class: null rate of a pair = rate of its (query, negative) cell."""

    n_negatives: int
    n_cells: int
    statistic: float
    df: int
    dispersion_ratio: float
    p_value: float
    log10_p_value: float
    n_unlabelled: int


@dataclass(frozen=True)
class Temporal:
    """Spearman correlation of per-negative mean rank percentile between two parts of the log."""

    mode: str  # 'halves', 'epochs' or 'runs'
    first: str
    second: str
    n_negatives: int
    rho: float
    p_value: float
    p_permutation: float | None
    permutations: int


@dataclass(frozen=True)
class ConsistencyResult:
    """Consistency of hardness over the chosen runs' logs (see the module docstring)."""

    runs: tuple[str, ...]
    band: str
    queue_size: int
    kept: int
    kept_fraction: float
    n_pairs: int
    n_negatives: int
    median_appearances: float
    statistic: float
    df: int
    dispersion_ratio: float
    p_value: float
    log10_p_value: float
    tarone_z: float
    tarone_p_value: float
    tarone_log10_p_value: float
    fdr: float
    n_consistently_hard: int
    n_consistently_easy: int
    hard_ids: tuple[int, ...]
    easy_ids: tuple[int, ...]
    permutation: PermutationCheck | None
    class_conditional: ClassConditional | None
    temporal: Temporal | None
    rate_histogram: pl.DataFrame = field(repr=False)
    z_histogram: pl.DataFrame = field(repr=False)
    per_negative: pl.DataFrame = field(repr=False)
    notes: tuple[str, ...] = ()

    def summary_rows(self, *, ids: bool = False) -> list[tuple[str, str]]:
        """(name, value) lines summarising the result, for the CLI table and the report; with
        ``ids`` the most significant hard and easy negative ids are listed too."""
        rows = [
            ("runs", ", ".join(self.runs)),
            (
                "pairs, negatives",
                f"{self.n_pairs:,} pairs of {self.n_negatives:,} negatives "
                f"(median {self.median_appearances:,.0f} appearances)",
            ),
            (
                "overdispersion",
                f"X2 = {self.statistic:,.1f} on {self.df:,} df, ratio "
                f"{self.dispersion_ratio:.3f}, {format_p(self.p_value, self.log10_p_value)}",
            ),
            (
                "Tarone Z",
                f"{self.tarone_z:,.2f}, {format_p(self.tarone_p_value, self.tarone_log10_p_value)}",
            ),
            (
                f"per negative (BH {self.fdr:g})",
                f"{self.n_consistently_hard:,} consistently hard, {self.n_consistently_easy:,} "
                "consistently easy (two-sided exact binomial)",
            ),
        ]
        if ids:
            rows += [("hardest", _id_list(self.hard_ids)), ("easiest", _id_list(self.easy_ids))]
        if self.permutation is not None:
            pc = self.permutation
            rows.append(
                (
                    "ranks shuffled",
                    f"ratio {pc.dispersion_ratio:.3f}, {format_p(pc.p_value, pc.log10_p_value)}, "
                    f"{pc.n_consistently_hard} hard, {pc.n_consistently_easy} easy (should be "
                    f"~1, not significant; seed {pc.seed})",
                )
            )
        if self.class_conditional is not None:
            c = self.class_conditional
            rows.append(
                (
                    "beyond class",
                    f"X2 = {c.statistic:,.1f} on {c.df:,} df ({c.n_cells} class cells), ratio "
                    f"{c.dispersion_ratio:.3f}, {format_p(c.p_value, c.log10_p_value)}",
                )
            )
        if self.temporal is not None:
            t = self.temporal
            perm = (
                f", {format_p(t.p_permutation)} ({t.permutations} permutations)"
                if t.p_permutation is not None
                else ""
            )
            rows.append(
                (
                    f"persistence ({t.mode})",
                    f"Spearman rho = {t.rho:.3f} over {t.n_negatives:,} negatives in {t.first} "
                    f"and {t.second}; {format_p(t.p_value)} (analytic){perm}",
                )
            )
        return rows

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (histograms as records; per_negative left out)."""
        out: dict[str, Any] = {}
        for name in self.__dataclass_fields__:
            if name in ("rate_histogram", "z_histogram", "per_negative"):
                continue
            value = getattr(self, name)
            if isinstance(value, PermutationCheck | ClassConditional | Temporal):
                value = {k: _json_value(getattr(value, k)) for k in value.__dataclass_fields__}
            out[name] = _json_value(value)
        out["rate_histogram"] = self.rate_histogram.to_dicts()
        out["z_histogram"] = self.z_histogram.to_dicts()
        return out


def _json_value(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, tuple):
        return list(value)
    return value


# -- SQL -------------------------------------------------------------------------------------
def _band_predicate(column: str, intervals: Sequence[tuple[int, int]]) -> tuple[str, list[int]]:
    """``(col > ? AND col <= ?) OR ...`` for the kept rank intervals, values bound."""
    text = " OR ".join(f"({column} > ? AND {column} <= ?)" for _ in intervals)
    return f"({text})", [v for lo, hi in intervals for v in (lo, hi)]


def _in_list(column: str, values: Sequence[Any]) -> tuple[str, list[Any]]:
    return f"{column} IN ({', '.join('?' for _ in values)})", list(values)


def _fetch(con: Any, sql: str, params: Sequence[Any]) -> dict[str, np.ndarray]:
    import duckdb

    from hardstat.analysis.logs import translate_error

    try:
        arrow = con.sql(sql, params=list(params)).to_arrow_table()
    except duckdb.Error as e:
        raise translate_error(e) from e
    return {name: arrow.column(name).to_numpy(zero_copy_only=False) for name in arrow.column_names}


@dataclass(frozen=True)
class _Split:
    mode: str
    first: str
    second: str
    part0: tuple[str, list[Any]]  # SQL predicate and its parameters
    part1: tuple[str, list[Any]]


def _resolve_runs(
    con: Any, runs: Sequence[str] | None, against: str | None
) -> tuple[list[str], int, dict[str, int]]:
    table = _fetch(con, "SELECT run, queue_size, dataset FROM runs ORDER BY run", [])
    names = [str(r) for r in table["run"]]
    sizes = {str(r): int(k) for r, k in zip(table["run"], table["queue_size"], strict=True)}
    datasets = {str(r): d for r, d in zip(table["run"], table["dataset"], strict=True)}
    if against is not None and against not in sizes:
        raise RunError(f"run {against!r} (--against) is not among the runs ({', '.join(names)})")
    if runs is None:
        chosen = [r for r in names if r != against]
    else:
        chosen = list(dict.fromkeys(runs))
        missing = [r for r in chosen if r not in sizes]
        if missing:
            raise RunError(
                f"run {missing[0]!r} is not among the connected runs ({', '.join(names)})"
            )
    if not chosen:
        raise RunError("no runs to analyse besides the --against run; give at least one run")
    if against in chosen:
        raise RunError(f"run {against!r} is both analysed and the --against run; pick another")
    ks = sorted({sizes[r] for r in chosen})
    if len(ks) > 1:
        raise RunError(
            f"the runs have different queue sizes ({', '.join(map(str, ks))}); analyse runs of "
            "one queue size together"
        )
    ds = sorted({str(datasets[r]) for r in [*chosen, *([against] if against else [])]})
    if len(ds) > 1:
        raise RunError(
            f"the runs use different datasets ({', '.join(ds)}), so their sample_ids are not the "
            "same images; analyse runs of one dataset together"
        )
    return chosen, ks[0], sizes


def _resolve_split(
    con: Any,
    chosen: list[str],
    epochs: tuple[int, int] | None,
    against: str | None,
    notes: list[str],
) -> _Split | None:
    if against is not None:
        return _Split(
            "runs",
            ", ".join(chosen),
            against,
            _in_list("run", chosen),
            ("run = ?", [against]),
        )
    where, params = _in_list("run", chosen)
    if epochs is not None:
        a, b = epochs
        if a == b:
            raise ConfigError(f"--epochs {a},{b} names one epoch twice; give two different epochs")
        present = {
            int(e)
            for e in _fetch(
                con,
                f"SELECT DISTINCT epoch FROM pairs WHERE neg_id IS NOT NULL AND {where}",
                params,
            )["epoch"]
        }
        for e in (a, b):
            if e not in present:
                have = ", ".join(map(str, sorted(present))) or "none"
                raise ConfigError(
                    f"epoch {e} has no logged pairs (logged epochs: {have}); pick two of those"
                )
        return _Split("epochs", f"epoch {a}", f"epoch {b}", ("epoch = ?", [a]), ("epoch = ?", [b]))
    steps = np.sort(
        _fetch(
            con,
            f"SELECT DISTINCT step FROM pairs WHERE neg_id IS NOT NULL AND {where}",
            params,
        )["step"]
    )
    if len(steps) < 2:
        notes.append("persistence not tested: fewer than two logged steps hold negatives")
        return None
    cut = int(steps[(len(steps) - 1) // 2])
    n_first = int(np.count_nonzero(steps <= cut))
    return _Split(
        "halves",
        _steps_text(steps[:n_first]),
        _steps_text(steps[n_first:]),
        ("step <= ?", [cut]),
        ("step > ?", [cut]),
    )


def _steps_text(steps: np.ndarray) -> str:
    lo, hi = int(steps[0]), int(steps[-1])
    return f"step {lo} (1 logged)" if lo == hi else f"steps {lo}-{hi} ({len(steps)} logged)"


# -- the analysis ----------------------------------------------------------------------------
def consistency(
    con: Any,
    band: str = DEFAULT_BAND,
    runs: Sequence[str] | None = None,
    fdr: float = DEFAULT_FDR,
    seed: int = 0,
    permutations: int = DEFAULT_PERMUTATIONS,
    *,
    epochs: tuple[int, int] | None = None,
    against: str | None = None,
    permutation_check: bool = True,
    class_check: bool = True,
    temporal_check: bool = True,
    progress: Callable[[str], None] | None = None,
) -> ConsistencyResult:
    """Is hardness a consistent property of the negative, beyond chance?

    ``con`` is a connection from :func:`hardstat.analysis.logs.connect`. ``band`` is a range
    band spec (``random:`` bands are refused); ``runs`` restricts the analysis to these run
    names (default: every run on the connection except ``against``). Persistence is measured
    between two halves of the logged steps (default), two ``epochs``, or the analysed runs and
    the run ``against``. ``permutations`` is the number of shuffles for the Spearman
    permutation p-value; ``seed`` seeds it and the rank shuffle of the permutation check.
    """
    say = progress or (lambda _msg: None)
    if not 0 < fdr < 1:
        raise ConfigError(f"--fdr {fdr} must lie strictly between 0 and 1, e.g. 0.05")
    if permutations < 0:
        raise ConfigError(f"--permutations {permutations} must be 0 (none) or more, e.g. 1000")
    if epochs is not None and against is not None:
        raise ConfigError("give either --epochs or --against, not both")
    b = parse_band(band)
    if b.is_random:
        raise ConfigError(
            f"band {b.spec} keeps random negatives; consistency needs ranks, e.g. --band 0-5"
        )
    chosen, k_size, sizes = _resolve_runs(con, runs, against)
    b.check(k_size)
    kept = b.kept_count(k_size)
    if kept >= k_size:
        raise ConfigError(
            f"band {b.spec} keeps every negative of the queue; pick a narrower band, e.g. 0-5"
        )
    p = kept / k_size
    notes: list[str] = []
    split = _resolve_split(con, chosen, epochs, against, notes) if temporal_check else None

    # One streaming aggregation: per negative m, k (and per part m, rank sum).
    band_sql, band_params = _band_predicate("rank", b.rank_intervals(k_size))
    versus = against if split is not None else None  # the against run only feeds its part
    scanned = [*chosen, versus] if versus is not None else list(chosen)
    if versus is None:
        selects = ["count(*) AS m", f"count(*) FILTER (WHERE {band_sql}) AS k"]
        params: list[Any] = list(band_params)
    else:
        main_sql, main_params = _in_list("run", chosen)
        selects = [
            f"count(*) FILTER (WHERE {main_sql}) AS m",
            f"count(*) FILTER (WHERE {main_sql} AND {band_sql}) AS k",
        ]
        params = [*main_params, *main_params, *band_params]
    if split is not None:
        for i, (pred, pp) in enumerate((split.part0, split.part1)):
            selects += [
                f"count(*) FILTER (WHERE {pred}) AS m{i}",
                f"sum(rank) FILTER (WHERE {pred})::DOUBLE AS rank_sum{i}",
            ]
            params += [*pp, *pp]
    run_where, run_params = "", list[Any]()
    if len(scanned) < len(sizes):  # not every run on the connection: filter on run
        filt, run_params = _in_list("run", scanned)
        run_where = f" AND {filt}"
    sql = (
        f"SELECT neg_id, {', '.join(selects)} FROM pairs "
        f"WHERE neg_id IS NOT NULL{run_where} GROUP BY neg_id ORDER BY neg_id"
    )
    say(f"counting appearances per negative in {', '.join(chosen)} (band {b.spec}) ...")
    counts = _fetch(con, sql, [*params, *run_params])
    keep = counts["m"] > 0
    neg_id = counts["neg_id"][keep].astype(np.int64)
    m = counts["m"][keep].astype(np.int64)
    k = counts["k"][keep].astype(np.int64)
    n = int(neg_id.size)
    if n == 0:
        raise LogError(
            f"the logs of {', '.join(chosen)} hold no pairs with a negative's sample_id; "
            "train with rank logging on (--log) past the first K/batch steps"
        )

    # Overdispersion.
    x2 = dispersion_statistic(k, m, p)
    p_value, log10_p = chi2_upper_tail(x2, n)
    tz = tarone_z(k, m, p)
    from scipy.stats import norm

    tz_p = float(norm.sf(tz)) if math.isfinite(tz) else float("nan")
    tz_log10_p = float(norm.logsf(tz)) / _LN10 if math.isfinite(tz) else float("nan")
    median_m = float(np.median(m))
    if median_m * p < 5:
        notes.append(
            f"median expected in-band count m*p is {median_m * p:.2g} (< 5): the chi-square "
            "reference is approximate; Tarone's Z is the more reliable test here"
        )

    # Per-negative exact tests and BH.
    expected = m * p
    z = (k - expected) / np.sqrt(expected * (1 - p))
    p_neg = two_sided_binomial_p(k, m, p)
    q_neg = benjamini_hochberg(p_neg)
    hard = (q_neg <= fdr) & (k > expected)
    easy = (q_neg <= fdr) & (k < expected)
    hard_ids = _by_significance(neg_id, p_neg, -z, hard)
    easy_ids = _by_significance(neg_id, p_neg, z, easy)

    labels = _labels(con, chosen, neg_id)

    # Permutation check.
    perm: PermutationCheck | None = None
    if permutation_check:
        say("permutation check: shuffling ranks within each logged query ...")
        perm = _permutation_check(
            con, b, k_size, chosen, len(chosen) < len(sizes), seed, neg_id, m, p, fdr
        )

    # Class-conditional.
    cls: ClassConditional | None = None
    if class_check:
        if labels is None or not np.any(labels >= 0):
            notes.append("class-conditional test skipped: the runs have no samples table")
        else:
            say("class-conditional test: counting per negative and query class ...")
            cls = _class_conditional(con, chosen, b, k_size, neg_id, labels, notes)

    # Persistence.
    temporal: Temporal | None = None
    if split is not None:
        temporal = _temporal(counts, keep, split, k_size, sizes, against, permutations, seed, notes)

    edges = rate_bin_edges(m, k / m, p)
    rate_histogram = pl.DataFrame(
        {
            "rate_lo": np.maximum(edges[:-1], 0.0),
            "rate_hi": np.minimum(edges[1:], 1.0),
            "observed": observed_histogram(k, m, p, edges, "rate"),
            "null": null_histogram(m, p, edges, "rate"),
        }
    )
    z_edges = z_bin_edges(m, z, p)
    z_histogram = pl.DataFrame(
        {
            "z_lo": z_edges[:-1],
            "z_hi": z_edges[1:],
            "observed": observed_histogram(k, m, p, z_edges, "z"),
            "null": null_histogram(m, p, z_edges, "z"),
        }
    )
    call = [("hard" if h else "easy" if e else None) for h, e in zip(hard, easy, strict=True)]
    per_negative = pl.DataFrame(
        {
            "neg_id": neg_id,
            "label": pl.Series(
                "label",
                labels if labels is not None else np.full(n, -1),
                dtype=pl.Int64,
            ),
            "m": m,
            "k": k,
            "rate": k / m,
            "expected": expected,
            "z": z,
            "p": p_neg,
            "q": q_neg,
            "call": pl.Series("call", call, dtype=pl.String),
        }
    ).with_columns(pl.when(pl.col("label") >= 0).then(pl.col("label")).alias("label"))
    return ConsistencyResult(
        runs=tuple(chosen),
        band=b.spec,
        queue_size=k_size,
        kept=kept,
        kept_fraction=p,
        n_pairs=int(m.sum()),
        n_negatives=n,
        median_appearances=median_m,
        statistic=x2,
        df=n,
        dispersion_ratio=x2 / n,
        p_value=p_value,
        log10_p_value=log10_p,
        tarone_z=tz,
        tarone_p_value=tz_p,
        tarone_log10_p_value=tz_log10_p,
        fdr=fdr,
        n_consistently_hard=int(hard.sum()),
        n_consistently_easy=int(easy.sum()),
        hard_ids=hard_ids,
        easy_ids=easy_ids,
        permutation=perm,
        class_conditional=cls,
        temporal=temporal,
        rate_histogram=rate_histogram,
        z_histogram=z_histogram,
        per_negative=per_negative,
        notes=tuple(notes),
    )


def _by_significance(
    ids: np.ndarray, p: np.ndarray, tiebreak: np.ndarray, mask: np.ndarray
) -> tuple[int, ...]:
    """Ids where ``mask``, most significant first (p ascending, then ``tiebreak`` ascending)."""
    sel = np.flatnonzero(mask)
    order = np.lexsort((tiebreak[sel], p[sel]))
    return tuple(int(i) for i in ids[sel][order])


def _labels(con: Any, chosen: list[str], neg_id: np.ndarray) -> np.ndarray | None:
    """Class label of each negative (-1 where unknown), or None without a samples table."""
    where, params = _in_list("run", chosen)
    lab = _fetch(
        con,
        "SELECT sample_id, min(label) AS label FROM samples "
        f"WHERE split = 'train' AND {where} GROUP BY sample_id ORDER BY sample_id",
        params,
    )
    if lab["sample_id"].size == 0:
        return None
    ids = lab["sample_id"].astype(np.int64)
    pos = np.clip(np.searchsorted(ids, neg_id), 0, ids.size - 1)
    found = ids[pos] == neg_id
    return np.where(found, lab["label"].astype(np.int64)[pos], -1)


def query_permutation(seed: int, run: str, step: int, query_id: int, queue_size: int) -> np.ndarray:
    """The seeded random permutation of ranks 1..K of one logged query (0-based, length K).

    Seeded by ``(seed, crc32(run), step, query_id)``, so a query's shuffle depends on nothing
    else: not on which other runs are analysed, nor on the order rows are read in.
    """
    key = [seed, zlib.crc32(run.encode()), step, query_id]
    return np.random.default_rng(key).permutation(queue_size)


def shuffled_counts(
    con: Any,
    band: Band,
    queue_size: int,
    runs: Sequence[str],
    seed: int,
    *,
    filter_runs: bool = True,
    batch_rows: int = 1 << 20,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-negative (neg_id, m, k) after shuffling the ranks within each logged query.

    Each logged (run, step, query_id) gets its own seeded uniformly random permutation of its
    ranks (:func:`query_permutation`); a pair is in the band when its permuted rank is. So every
    query keeps exactly ``kept_count`` negatives, a uniformly random subset, independently of
    the other queries: hardness is exchangeable by construction. Null slots take part in the
    shuffle (they hold ranks) and are left out of the counts.

    Streams (run, step, query_id, rank, neg_id) from DuckDB in Arrow batches of ``batch_rows``
    and counts with NumPy: memory stays bounded by the batch, whatever the log's size. The
    trainer stores the rows of a query contiguously, so a batch holds few query segments; the
    permutations are drawn per segment. (A SQL ``row_number() OVER (PARTITION BY run, step,
    query_id ORDER BY hash(...))`` does the same about 10x slower, and DuckDB's
    multi-argument ``hash`` orders are not independent between queries.)
    """
    import pyarrow.compute as pc

    in_band_rank = np.zeros(queue_size, bool)  # in_band_rank[r - 1]: is rank r in the band
    for lo, hi in band.rank_intervals(queue_size):
        in_band_rank[lo:hi] = True
    names = list(runs)
    cases = " ".join("WHEN ? THEN ?" for _ in names)
    params: list[Any] = [v for i, r in enumerate(names) for v in (r, i)]
    where, run_params = _in_list("run", names) if filter_runs else ("", [])
    sql = (
        f"SELECT CASE run {cases} END AS run_index, step, query_id, rank, neg_id FROM pairs"
        f"{' WHERE ' + where if where else ''}"
    )
    import duckdb

    from hardstat.analysis.logs import translate_error

    try:
        reader = con.sql(sql, params=[*params, *run_params]).to_arrow_reader(batch_rows)
    except duckdb.Error as e:
        raise translate_error(e) from e
    m = np.zeros(0, np.int64)
    k = np.zeros(0, np.int64)
    cache: dict[tuple[int, int, int], np.ndarray] = {}
    for batch in reader:
        n = batch.num_rows
        if n == 0:
            continue
        run_i, step, qid, rank = (batch.column(i).to_numpy(zero_copy_only=False) for i in range(4))
        neg_col = batch.column(4)
        valid = pc.is_valid(neg_col).to_numpy(zero_copy_only=False)
        neg = pc.fill_null(neg_col, 0).to_numpy(zero_copy_only=False).astype(np.int64)
        if rank.min() < 1 or rank.max() > queue_size:
            raise LogError(
                f"a logged rank lies outside 1..{queue_size} (the queue size); the log is "
                "corrupt or of another run"
            )
        # Segments of consecutive rows of one query, and a permutation mask per segment.
        change = (run_i[1:] != run_i[:-1]) | (step[1:] != step[:-1]) | (qid[1:] != qid[:-1])
        starts = np.concatenate([[0], np.flatnonzero(change) + 1])
        index: dict[tuple[int, int, int], int] = {}
        rows: list[np.ndarray] = []
        seg_row = np.empty(starts.size, np.int64)
        for j, key in enumerate(
            zip(run_i[starts].tolist(), step[starts].tolist(), qid[starts].tolist(), strict=True)
        ):
            u = index.get(key)
            if u is None:
                mask = cache.get(key)
                if mask is None:
                    if len(cache) >= 4096:
                        cache.clear()
                    perm = query_permutation(seed, names[key[0]], key[1], key[2], queue_size)
                    mask = cache[key] = in_band_rank[perm]
                u = index[key] = len(rows)
                rows.append(mask)
            seg_row[j] = u
        masks = np.stack(rows)
        segment = np.repeat(seg_row, np.diff(np.append(starts, n)))
        hit = masks[segment, rank - 1] & valid
        top = int(neg.max()) + 1
        if top > m.size:
            m = np.pad(m, (0, top - m.size))
            k = np.pad(k, (0, top - k.size))
        m += np.bincount(neg[valid], minlength=m.size)
        k += np.bincount(neg[hit], minlength=k.size)
    ids = np.flatnonzero(m)
    return ids.astype(np.int64), m[ids], k[ids]


def _permutation_check(
    con: Any,
    b: Band,
    k_size: int,
    chosen: list[str],
    filter_runs: bool,
    seed: int,
    neg_id: np.ndarray,
    m: np.ndarray,
    p: float,
    fdr: float,
) -> PermutationCheck:
    ids, ms, kp = shuffled_counts(con, b, k_size, chosen, seed, filter_runs=filter_runs)
    if not np.array_equal(ids, neg_id) or not np.array_equal(ms, m):
        raise LogError("the pairs changed while being read; rerun the analysis")
    x2 = dispersion_statistic(kp, m, p)
    pv, lp = chi2_upper_tail(x2, m.size)
    q = benjamini_hochberg(two_sided_binomial_p(kp, m, p))
    expected = m * p
    return PermutationCheck(
        seed=seed,
        statistic=x2,
        df=int(m.size),
        dispersion_ratio=x2 / m.size,
        p_value=pv,
        log10_p_value=lp,
        n_consistently_hard=int(np.count_nonzero((q <= fdr) & (kp > expected))),
        n_consistently_easy=int(np.count_nonzero((q <= fdr) & (kp < expected))),
    )


def class_conditional_statistic(
    neg_index: np.ndarray,
    query_label: np.ndarray,
    m: np.ndarray,
    k: np.ndarray,
    neg_label: np.ndarray,
) -> tuple[float, int, int, int]:
    """X2 against cell rates ``p[query class, negative class]`` estimated from the counts.

    Inputs are rows of (negative index, query class, m, k) and each negative's class. A
    negative's null is a sum of Binomial(m_c, p[c, label]) over query classes c, with mean
    ``E = sum m_c p`` and variance ``V = sum m_c p (1 - p)``. Negatives with ``V = 0`` (all
    their cells at rate 0 or 1) carry no information and are left out. Returns
    ``(X2, df, n_negatives, n_cells)`` with ``df = n_negatives - n_cells`` (cells with
    0 < p < 1, each estimated).
    """
    n_classes = int(max(query_label.max(), neg_label.max())) + 1
    nl = neg_label[neg_index]
    cell_m = np.zeros((n_classes, n_classes))
    cell_k = np.zeros((n_classes, n_classes))
    np.add.at(cell_m, (query_label, nl), m)
    np.add.at(cell_k, (query_label, nl), k)
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = np.where(cell_m > 0, cell_k / cell_m, 0.0)
    pr = rate[query_label, nl]
    n_neg = neg_label.size
    e = np.bincount(neg_index, weights=m * pr, minlength=n_neg)
    v = np.bincount(neg_index, weights=m * pr * (1 - pr), minlength=n_neg)
    kk = np.bincount(neg_index, weights=k, minlength=n_neg)
    use = v > 0
    n_cells = int(np.count_nonzero((rate > 0) & (rate < 1) & (cell_m > 0)))
    n_used = int(np.count_nonzero(use))
    x2 = pearson_dispersion(kk[use], e[use], v[use]) if n_used else float("nan")
    return x2, n_used - n_cells, n_used, n_cells


def _class_conditional(
    con: Any,
    chosen: list[str],
    b: Band,
    k_size: int,
    neg_id: np.ndarray,
    labels: np.ndarray,
    notes: list[str],
) -> ClassConditional | None:
    band_sql, band_params = _band_predicate("p.rank", b.rank_intervals(k_size))
    where, params = _in_list("p.run", chosen)
    lab_where, lab_params = _in_list("run", chosen)
    sql = (
        "WITH lab AS (SELECT sample_id, min(label) AS label FROM samples "
        f"WHERE split = 'train' AND {lab_where} GROUP BY sample_id) "
        "SELECT p.neg_id, l.label AS query_label, count(*) AS m, "
        f"count(*) FILTER (WHERE {band_sql}) AS k "
        "FROM pairs p JOIN lab l ON p.query_id = l.sample_id "
        f"WHERE p.neg_id IS NOT NULL AND {where} GROUP BY ALL"
    )
    res = _fetch(con, sql, [*lab_params, *band_params, *params])
    ids = res["neg_id"].astype(np.int64)
    pos = np.searchsorted(neg_id, ids)
    labelled = labels[pos] >= 0
    n_unlabelled = int(np.count_nonzero(labels < 0))
    neg_index = pos[labelled]
    # Re-index to labelled negatives only.
    used_negs, neg_index = np.unique(neg_index, return_inverse=True)
    x2, df, n_used, n_cells = class_conditional_statistic(
        neg_index,
        res["query_label"].astype(np.int64)[labelled],
        res["m"].astype(np.float64)[labelled],
        res["k"].astype(np.float64)[labelled],
        labels[used_negs],
    )
    if df <= 0 or not math.isfinite(x2):
        notes.append("class-conditional test skipped: no more negatives than estimated cells")
        return None
    pv, lp = chi2_upper_tail(x2, df)
    return ClassConditional(
        n_negatives=n_used,
        n_cells=n_cells,
        statistic=x2,
        df=df,
        dispersion_ratio=x2 / df,
        p_value=pv,
        log10_p_value=lp,
        n_unlabelled=n_unlabelled,
    )


def _temporal(
    counts: dict[str, np.ndarray],
    keep: np.ndarray,
    split: _Split,
    k_size: int,
    sizes: dict[str, int],
    against: str | None,
    permutations: int,
    seed: int,
    notes: list[str],
) -> Temporal | None:
    m0, m1 = counts["m0"].astype(np.float64), counts["m1"].astype(np.float64)
    both = (m0 > 0) & (m1 > 0)
    if against is None:
        both &= keep
    k1 = sizes[against] if against is not None else k_size
    n_both = int(np.count_nonzero(both))
    if n_both < 3:
        notes.append(
            f"persistence not tested: {n_both} negatives appear in both {split.first} and "
            f"{split.second} (a negative stays in the queue for K/batch steps only; log more "
            "steps or epochs)"
        )
        return None
    x = (counts["rank_sum0"][both] / m0[both] - 1) / (k_size - 1)
    y = (counts["rank_sum1"][both] / m1[both] - 1) / (k1 - 1)
    rho, p_an, p_perm = spearman_test(x, y, permutations, seed)
    return Temporal(
        mode=split.mode,
        first=split.first,
        second=split.second,
        n_negatives=n_both,
        rho=rho,
        p_value=p_an,
        p_permutation=p_perm,
        permutations=permutations,
    )


def format_p(p: float, log10_p: float = float("nan")) -> str:
    """``p = 0.012``, ``p = 3.10e-05``, ``p = 10^-2876.5`` (underflowed to 0 with its log10
    known) or ``p < 1e-300``."""
    if p != p:  # nan
        return "p = n/a"
    if p == 0.0:
        return f"p = 10^{log10_p:.1f}" if math.isfinite(log10_p) else "p < 1e-300"
    return f"p = {p:.2e}" if p < 1e-3 else f"p = {p:.3f}"


def _id_list(ids: tuple[int, ...], limit: int = 10) -> str:
    if not ids:
        return "-"
    more = f", ... ({len(ids) - limit} more)" if len(ids) > limit else ""
    return ", ".join(map(str, ids[:limit])) + more
