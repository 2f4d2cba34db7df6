"""Band ablation: downstream accuracy of runs that differ in the band of negatives they used.

Cai et al. (2020) train MoCo v2 with the loss restricted to a band of each query's negatives
ranked by similarity (``0-5``: the hardest 5%, ``random:5``: 5% at random...) and compare the
downstream accuracy with the all-negatives baseline ``0-100``. :func:`band_ablation` reads those
numbers from the runs' ``evals`` table and compares every band with a reference band.

- Unit of replication: the seed. Runs with the same seed (same initial weights, data order and
  augmentations) are paired; the estimand of a contrast is the mean over seeds of the paired
  difference ``metric(band, seed) - metric(reference, seed)``.
- Primary metric, chosen up front: ``linear`` (the run's final linear-probe top-1) or ``knn``
  (its final kNN top-1, the kNN evaluation at the largest step). Default: linear when every run
  has one, else kNN. Several evaluations of one kind at the same step are averaged first.
- Per contrast: the per-seed differences, their mean, n, the 95% t-interval, the 90% t-interval
  (for equivalence), the two-sided paired t-test p and the TOST p at ``margin``, both
  Holm-adjusted over the table's contrasts, and a verdict (:func:`verdict`, rule :data:`RULE`).
- Per band: the realized kept fraction (negatives kept / removed out of K) and the mean of each
  metric over the band's runs (description only: no standard deviation is shown as an interval).

Runs of different datasets (or subsets, or image sizes) or queue sizes are never pooled: a
one-line error naming them; runs that record no dataset are noted. One band (one run, or runs
of a single band) has no contrast: :attr:`BandAblation.no_contrast` says so in one line, which
the CLI and the report both show.
Bands are ordered the reference first, then by kept fraction (largest first), each random
control right after the rank band whose count it matches (``random:5`` after ``0-5``,
``random=5-100`` after ``5-100``). No torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import duckdb
import numpy as np
import polars as pl

from hardstat import display
from hardstat.analysis import stats
from hardstat.analysis.logs import query
from hardstat.bands import parse_band
from hardstat.errors import ConfigError, LogError

REFERENCE_BAND = "0-100"
"""The band every other band is compared with unless another is chosen."""
MARGIN = 0.01
"""Default equivalence margin: 1 percentage point of top-1 accuracy (as a fraction)."""
ALPHA = 0.05
"""Family-wise error rate of the verdicts of one table."""

UNNAMED_DATASETS = ("custom",)
"""Dataset specs that name no dataset (``Recorder.create``'s default): runs that record one
cannot be checked to share a dataset, so the ablation notes it."""

METRICS = {"linear": "linear_top1", "knn": "knn_top1"}
"""Metric name -> per-run column."""
METRIC_LABELS = {"linear": "final linear-probe top-1", "knn": "final kNN top-1"}

VERDICTS = ("better", "worse", "equivalent", "inconclusive")

RULE = (
    "better / worse if the two-sided paired t-test p (H0: mean Δ = 0) < alpha, by the sign of "
    "the mean Δ; else equivalent if the TOST p (H0: |mean Δ| >= margin) < alpha; else "
    "inconclusive (always with fewer than 2 paired seeds)"
)
"""The declared verdict rule, applied to Holm-adjusted p-values (the CLI, the JSON and
docs/analyses.md state it)."""

RUN_COLUMNS = (
    "run",
    "band",
    "seed",
    "queue_size",
    "band_kept",
    "kept_fraction",
    "dataset",
    "knn_top1",
    "knn_step",
    "linear_top1",
    "linear_step",
    "status",
    "epochs_done",
)
BAND_COLUMNS = (
    "band",
    "queue_size",
    "kept",
    "removed",
    "kept_fraction",
    "n_runs",
    "n_knn",
    "knn_top1_mean",
    "n_linear",
    "linear_top1_mean",
)
CONTRAST_COLUMNS = (
    "band",
    "queue_size",
    "kept",
    "removed",
    "kept_fraction",
    "n_seeds",
    "mean_diff",
    "sd_diff",
    "ci95_lo",
    "ci95_hi",
    "ci90_lo",
    "ci90_hi",
    "p",
    "p_holm",
    "tost_p",
    "tost_p_holm",
    "verdict",
)
PAIR_COLUMNS = ("band", "seed", "run", "reference_run", "value", "reference_value", "diff")

_PER_RUN_SQL = """
WITH per_step AS (
    SELECT run, kind, step, avg(top1) AS top1
    FROM evals
    WHERE kind IN ($knn, $linear)
    GROUP BY run, kind, step
),
knn AS (
    SELECT run, arg_max(top1, step) AS knn_top1, max(step) AS knn_step
    FROM per_step WHERE kind = $knn GROUP BY run
),
lin AS (
    SELECT run, arg_max(top1, step) AS linear_top1, max(step) AS linear_step
    FROM per_step WHERE kind = $linear GROUP BY run
)
SELECT r.run, r.band, r.seed, r.queue_size, r.band_kept, r.kept_fraction, r.dataset,
       r.config,
       CAST(knn.knn_top1 AS DOUBLE) AS knn_top1, knn.knn_step,
       CAST(lin.linear_top1 AS DOUBLE) AS linear_top1, lin.linear_step,
       r.status, r.epochs_done
FROM runs AS r
LEFT JOIN knn USING (run)
LEFT JOIN lin USING (run)
ORDER BY r.run
"""


@dataclass(frozen=True)
class BandAblation:
    """Paired contrasts of every band with ``reference`` over seeds, and what they rest on.

    ``contrasts`` (:data:`CONTRAST_COLUMNS`, one row per band but the reference, display
    order), ``pairs`` (:data:`PAIR_COLUMNS`, the per-seed differences behind them), ``bands``
    (:data:`BAND_COLUMNS`, display order, the reference first) and ``runs``
    (:data:`RUN_COLUMNS`). Accuracies and differences are fractions (0.01 = 1 pp). ``margin``
    is the equivalence margin, ``alpha`` the family-wise error rate of the verdicts;
    ``warnings`` are one-line notes on what was left out or is not comparable.
    """

    runs: pl.DataFrame
    bands: pl.DataFrame
    contrasts: pl.DataFrame
    pairs: pl.DataFrame
    reference: str = REFERENCE_BAND
    metric: str = "knn"
    margin: float = MARGIN
    alpha: float = ALPHA
    warnings: tuple[str, ...] = field(default=())

    @property
    def has_reference(self) -> bool:
        return self.reference in self.bands["band"].to_list()

    @property
    def has_linear(self) -> bool:
        return bool(self.runs["linear_top1"].is_not_null().any())

    @property
    def metric_label(self) -> str:
        return METRIC_LABELS[self.metric]

    @property
    def no_contrast(self) -> str | None:
        """Why there is no contrast table (one line), or None when there is one."""
        if self.contrasts.height:
            return None
        bands = self.bands["band"].to_list()
        if len(bands) == 1:  # one band (one run or several): nothing to compare it with
            runs = self.runs["run"].to_list()
            which = f"the one run, {runs[0]}" if len(runs) == 1 else f"all {len(runs)} runs"
            return (
                f"no contrast: every run has band {bands[0]} ({which}); a band ablation "
                "compares runs that differ in band, paired by seed: give runs of other bands "
                "(e.g. a sweep)"
            )
        if not self.has_reference:
            return (
                f"no contrast: no run has the reference band {self.reference} "
                f"(bands here: {', '.join(bands)}); choose one with --reference"
            )
        return f"no contrast: no band but {self.reference} has a run with a value"

    def rule(self) -> str:
        """The verdict rule with this table's margin, alpha and number of tested contrasts."""
        tested = int(self.contrasts["p"].is_not_null().sum()) if self.contrasts.height else 0
        return (
            f"verdicts (p-values Holm-adjusted over the {tested} contrast"
            f"{'s' if tested != 1 else ''} with 2+ paired seeds; alpha {self.alpha:g}; margin "
            f"{display.margin_points(self.margin)}; unit: seed): {RULE}"
        )

    def contrast_rows(self) -> tuple[list[str], list[list[str]]]:
        """Columns and rows of the contrast table (differences in percentage points): what
        the CLI and the report show."""
        cols = [
            "band",
            "kept / K",
            "removed",
            "seeds",
            "Δ per seed (pp)",
            "mean Δ [95% CI] (pp)",
            "90% CI (pp)",
            "t-test (Holm)",
            "TOST (Holm)",
            "verdict",
        ]
        per_seed = {
            band: ", ".join(
                f"s{s} {display.points(d, unit=False)}" for s, d in zip(seeds, diffs, strict=True)
            )
            for band, seeds, diffs in self.pairs.group_by("band", maintain_order=True)
            .agg("seed", "diff")
            .iter_rows()
        }
        rows = []
        for c in self.contrasts.iter_rows(named=True):
            rows.append(
                [
                    c["band"],
                    _kept(c["kept"], c["queue_size"]),
                    _removed(c["removed"], c["queue_size"]),
                    str(c["n_seeds"]),
                    per_seed.get(c["band"], display.DASH),
                    display.estimate(c["mean_diff"], c["ci95_lo"], c["ci95_hi"], "+.2f", scale=100),
                    display.interval(c["ci90_lo"], c["ci90_hi"], "+.2f", scale=100),
                    _p(c["p_holm"]),
                    _p(c["tost_p_holm"]),
                    c["verdict"],
                ]
            )
        return cols, rows

    def band_rows(self) -> tuple[list[str], list[list[str]]]:
        """Columns and rows of the per-band table (accuracy in %, means over the band's runs;
        no spread is shown: the contrasts carry the uncertainty)."""
        cols = ["band", "kept / K", "kept %", "runs", "kNN runs", "mean kNN top-1 %"]
        linear = self.has_linear
        if linear:
            cols += ["linear runs", "mean linear top-1 %"]
        rows = []
        for b in self.bands.iter_rows(named=True):
            row = [
                str(b["band"]),
                _kept(b["kept"], b["queue_size"]),
                display.percent(b["kept_fraction"], 3, symbol=False),
                str(b["n_runs"]),
                str(b["n_knn"]),
                display.percent(b["knn_top1_mean"], 2, symbol=False),
            ]
            if linear:
                row += [str(b["n_linear"]), display.percent(b["linear_top1_mean"], 2, symbol=False)]
            rows.append(row)
        return cols, rows

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``{reference, metric, margin, alpha, rule, unit, contrasts: [...], bands,
        runs, warnings}``; each contrast holds its ``per_seed`` differences, ``ci95`` and
        ``ci90`` as ``[lo, hi]`` (null without an interval) and its ``verdict``."""
        per_seed: dict[str, list[dict[str, Any]]] = {}
        for row in self.pairs.iter_rows(named=True):
            per_seed.setdefault(row["band"], []).append(
                {k: row[k] for k in PAIR_COLUMNS if k != "band"}
            )
        contrasts = []
        for c in self.contrasts.iter_rows(named=True):
            contrasts.append(
                {
                    "band": c["band"],
                    "queue_size": c["queue_size"],
                    "kept": c["kept"],
                    "removed": c["removed"],
                    "kept_fraction": c["kept_fraction"],
                    "n_seeds": c["n_seeds"],
                    "per_seed": per_seed.get(c["band"], []),
                    "mean_diff": c["mean_diff"],
                    "sd_diff": c["sd_diff"],
                    "ci95": _pair(c["ci95_lo"], c["ci95_hi"]),
                    "ci90": _pair(c["ci90_lo"], c["ci90_hi"]),
                    "p": c["p"],
                    "p_holm": c["p_holm"],
                    "tost_p": c["tost_p"],
                    "tost_p_holm": c["tost_p_holm"],
                    "verdict": c["verdict"],
                }
            )
        return display.json_value(
            {
                "reference": self.reference,
                "metric": self.metric,
                "metric_label": self.metric_label,
                "margin": self.margin,
                "alpha": self.alpha,
                "unit": "seed",
                "rule": self.rule(),
                "no_contrast": self.no_contrast,
                "contrasts": contrasts,
                "bands": self.bands.to_dicts(),
                "runs": self.runs.to_dicts(),
                "warnings": list(self.warnings),
            }
        )


def band_ablation(
    con: duckdb.DuckDBPyConnection,
    *,
    reference: str | None = None,
    metric: str | None = None,
    margin: float = MARGIN,
    alpha: float = ALPHA,
) -> BandAblation:
    """Every band against ``reference`` (default ``0-100``), paired by seed (see module doc).

    ``metric``: ``linear``, ``knn`` or None (linear when every run has a linear probe, else
    kNN). ``margin``: the equivalence margin as a fraction (0.01 = 1 pp). Raises ConfigError
    for a bad option, a ``reference`` given but absent, or ``metric="linear"`` without any
    linear probe; LogError when there are no runs, runs mix datasets or queue sizes, or a band
    has one seed twice.
    """
    if metric is not None and metric not in METRICS:
        raise ConfigError(f"unknown metric {metric!r}; use {' or '.join(METRICS)}")
    if not (0 < margin < 1):
        raise ConfigError(f"margin {margin} must lie in (0, 1) (a fraction; 0.01 = 1 pp)")
    if not (0 < alpha < 1):
        raise ConfigError(f"alpha {alpha} must lie strictly between 0 and 1, e.g. 0.05")
    table = query(con, _PER_RUN_SQL, {"knn": "knn", "linear": "linear"})
    runs = pl.from_arrow(table)
    assert isinstance(runs, pl.DataFrame)
    if runs.height == 0:
        raise LogError("no runs to compare; give run directories or a sweep")
    runs = runs.with_columns(
        pl.col("band").map_elements(_canonical, return_dtype=pl.String),
        pl.col("config").str.json_path_match("$.data.subset").alias("subset"),
        pl.col("config").str.json_path_match("$.data.image_size").alias("image_size"),
    )
    _refuse_pooling(runs)

    ref = REFERENCE_BAND if reference is None else str(_canonical(reference.strip()))
    present = set(runs["band"].to_list())
    if reference is not None and ref not in present:
        raise ConfigError(
            f"--reference {reference}: no run has band {ref}; bands here: "
            f"{', '.join(sorted(present, key=str))}"
        )
    metric = _choose_metric(runs, metric)
    notes: list[str] = []
    unnamed = runs.filter(
        pl.col("dataset").is_null() | pl.col("dataset").is_in(list(UNNAMED_DATASETS))
    )["run"].to_list()
    if unnamed and runs.height > 1:
        notes.append(
            f"no dataset recorded (spec {' or '.join(map(repr, UNNAMED_DATASETS))} or none) for "
            f"{', '.join(unnamed)}: hardstat cannot check that the runs trained on one dataset, "
            "which a band ablation needs (name it: Recorder.create(dataset=...))"
        )
    if metric == "knn" and runs["linear_top1"].is_not_null().any():
        lacking = runs.filter(pl.col("linear_top1").is_null())["run"].to_list()
        notes.append(
            "metric: final kNN top-1, since not every run has a linear probe (none for "
            f"{', '.join(lacking)}); run `hardstat eval RUN --linear` (or a sweep with "
            "--eval linear) on those, or choose --metric"
        )

    bands = _per_band(runs, ref)
    order = {band: i for i, band in enumerate(bands["band"].to_list())}
    runs = (
        runs.with_columns(pl.col("band").replace_strict(order, return_dtype=pl.Int64).alias("_o"))
        .sort(["_o", "seed", "run"], nulls_last=True)
        .drop("_o")
        .select(RUN_COLUMNS)
    )
    contrasts, pairs, contrast_notes = paired_contrasts(
        runs, ref, METRICS[metric], margin=margin, alpha=alpha
    )
    kept = bands.select("band", "queue_size", "kept", "removed", "kept_fraction")
    contrasts = contrasts.join(kept, on="band", how="left")
    contrasts = contrasts.with_columns(
        pl.col("band").replace_strict(order, return_dtype=pl.Int64).alias("_o")
    )
    contrasts = contrasts.sort("_o").select(CONTRAST_COLUMNS)
    notes += _warnings(runs, ref, METRICS[metric]) + contrast_notes
    return BandAblation(
        runs=runs,
        bands=bands,
        contrasts=contrasts,
        pairs=pairs,
        reference=ref,
        metric=metric,
        margin=margin,
        alpha=alpha,
        warnings=tuple(notes),
    )


def paired_contrasts(
    runs: pl.DataFrame,
    reference: str,
    column: str,
    *,
    margin: float = MARGIN,
    alpha: float = ALPHA,
) -> tuple[pl.DataFrame, pl.DataFrame, list[str]]:
    """Paired contrasts of every band with ``reference`` on ``runs[column]`` (pure, no SQL).

    ``runs`` needs run, band, seed and ``column``, with one run per (band, seed). A band's
    seed pairs with the reference run of the same seed; runs without a value and seeds
    without a partner are left out (and named in the returned notes). Returns the contrasts
    (band, n_seeds, mean_diff, sd_diff, ci95_lo/hi, ci90_lo/hi, p, p_holm, tost_p,
    tost_p_holm, verdict; in the order bands first appear in ``runs``), the pairs
    (:data:`PAIR_COLUMNS`) and the notes.
    """
    valued = runs.filter(pl.col(column).is_not_null() & pl.col("seed").is_not_null())
    ref = valued.filter(pl.col("band") == reference).select(
        "seed", pl.col("run").alias("reference_run"), pl.col(column).alias("reference_value")
    )
    others = [b for b in dict.fromkeys(runs["band"].to_list()) if b != reference]
    notes: list[str] = []
    if not others or not (runs["band"] == reference).any():
        empty = pl.DataFrame(schema={c: _CONTRAST_SCHEMA[c] for c in _CONTRAST_SCHEMA})
        return empty, pl.DataFrame(schema=_PAIR_SCHEMA), notes
    mine = valued.filter(pl.col("band") != reference).select(
        "band", "seed", "run", pl.col(column).alias("value")
    )
    pairs = (
        mine.join(ref, on="seed", how="inner")
        .with_columns((pl.col("value") - pl.col("reference_value")).alias("diff"))
        .select(PAIR_COLUMNS)
        .sort("seed")
    )
    unpaired = dict(mine.join(ref, on="seed", how="anti").group_by("band").agg("seed").iter_rows())
    diffs = {band: d for band, d in pairs.group_by("band").agg("diff").iter_rows()}
    rows: list[dict[str, Any]] = []
    for band in others:
        if unpaired.get(band):
            seeds = sorted(unpaired[band])
            notes.append(
                f"band {band}: seed{'s' if len(seeds) > 1 else ''} "
                f"{', '.join(map(str, seeds))} without a {reference} run of the same seed "
                "(with this metric): left out of its contrast"
            )
        d = np.asarray(diffs.get(band, []), dtype=np.float64)  # (n,): one difference per seed
        n = d.size
        mean, se, _ = stats.mean_and_se(d)
        lo95, hi95 = stats.t_interval(d, 0.95)
        lo90, hi90 = stats.t_interval(d, 1 - 2 * alpha)
        test = stats.tost(d, margin, alpha)
        rows.append(
            {
                "band": band,
                "n_seeds": n,
                "mean_diff": float(mean),
                "sd_diff": float(se * math.sqrt(n)) if n >= 2 else math.nan,
                "ci95_lo": float(lo95),
                "ci95_hi": float(hi95),
                "ci90_lo": float(lo90),
                "ci90_hi": float(hi90),
                "p": float(stats.t_test_p(d)),
                "tost_p": float(test.p),
            }
        )
        if n < 2:
            notes.append(
                f"band {band}: {n} paired seed{'' if n == 1 else 's'}, so no interval and no "
                "test: inconclusive (pair at least 2 seeds; 5 or more for useful intervals)"
            )
    p_holm = stats.holm([r["p"] for r in rows])
    tost_holm = stats.holm([r["tost_p"] for r in rows])
    for r, ph, th in zip(rows, p_holm, tost_holm, strict=True):
        r["p_holm"], r["tost_p_holm"] = float(ph), float(th)
        r["verdict"] = verdict(r["mean_diff"], r["p_holm"], r["tost_p_holm"], alpha)
    contrasts = pl.DataFrame(rows, schema=_CONTRAST_SCHEMA).with_columns(
        pl.col(pl.Float64).fill_nan(None)
    )
    order = {band: i for i, band in enumerate(others)}
    pairs = pairs.sort(pl.col("band").replace_strict(order, return_dtype=pl.Int64), "seed")
    return contrasts, pairs, notes


def verdict(mean_diff: float, p_holm: float, tost_p_holm: float, alpha: float = ALPHA) -> str:
    """The declared rule (:data:`RULE`): ``better`` / ``worse`` when the Holm-adjusted t-test
    rejects a zero difference (by the sign of the mean), else ``equivalent`` when the
    Holm-adjusted TOST rejects a difference of at least the margin, else ``inconclusive``
    (also without a test: fewer than 2 paired seeds)."""
    if _finite(p_holm) and p_holm < alpha and _finite(mean_diff) and mean_diff != 0:
        return "better" if mean_diff > 0 else "worse"
    if _finite(tost_p_holm) and tost_p_holm < alpha:
        return "equivalent"
    return "inconclusive"


_CONTRAST_SCHEMA = {
    "band": pl.String,
    "n_seeds": pl.Int64,
    "mean_diff": pl.Float64,
    "sd_diff": pl.Float64,
    "ci95_lo": pl.Float64,
    "ci95_hi": pl.Float64,
    "ci90_lo": pl.Float64,
    "ci90_hi": pl.Float64,
    "p": pl.Float64,
    "tost_p": pl.Float64,
    "p_holm": pl.Float64,
    "tost_p_holm": pl.Float64,
    "verdict": pl.String,
}
_PAIR_SCHEMA = {
    "band": pl.String,
    "seed": pl.Int32,
    "run": pl.String,
    "reference_run": pl.String,
    "value": pl.Float64,
    "reference_value": pl.Float64,
    "diff": pl.Float64,
}


def _finite(x: float | None) -> bool:
    return x is not None and math.isfinite(x)


def _choose_metric(runs: pl.DataFrame, metric: str | None) -> str:
    if metric == "linear" and not runs["linear_top1"].is_not_null().any():
        raise ConfigError(
            "--metric linear: no run has a linear probe; run `hardstat eval RUN --linear` on "
            "each run (or a sweep with --eval linear), or use --metric knn"
        )
    if metric is not None:
        return metric
    return "linear" if runs["linear_top1"].is_not_null().all() else "knn"


def _refuse_pooling(runs: pl.DataFrame) -> None:
    """Runs of different datasets (subsets, image sizes) or queue sizes are different
    experiments: a one-line LogError naming each dataset (or K) with its runs."""
    data = ["dataset", "subset", "image_size"]
    for what, cols in (("datasets", data), ("queue sizes", ["queue_size"])):
        groups = runs.group_by(cols, maintain_order=True).agg("run")
        if groups.height > 1:
            parts = []
            for row in groups.iter_rows(named=True):
                words = {"dataset": "", "subset": "subset ", "image_size": "image size "}
                key = " ".join(f"{words.get(c, '')}{row[c]}" for c in cols if row[c] is not None)
                names = ", ".join(row["run"][:3]) + (", ..." if len(row["run"]) > 3 else "")
                parts.append(f"{key or 'unknown'} ({names})")
            raise LogError(
                f"the runs mix {what}: {'; '.join(parts)}; a band ablation pools neither, "
                "so analyse each set of runs separately"
            )
    repeated = (
        runs.filter(pl.col("seed").is_not_null())
        .group_by("band", "seed")
        .agg(pl.col("run").sort())
        .filter(pl.col("run").list.len() > 1)
        .sort("band", "seed")
    )
    if repeated.height:
        band, seed, names = repeated.row(0)
        raise LogError(
            f"band {band} has seed {seed} in more than one run ({', '.join(names)}); pairing "
            "by seed needs one run per band and seed, so give the runs of one sweep"
        )


def _per_band(runs: pl.DataFrame, reference: str) -> pl.DataFrame:
    grouped = runs.group_by("band").agg(
        pl.col("queue_size").first(),
        pl.col("band_kept").first().alias("kept"),
        pl.col("kept_fraction").first(),
        pl.len().alias("n_runs"),
        pl.col("knn_top1").count().alias("n_knn"),
        pl.col("knn_top1").mean().alias("knn_top1_mean"),
        pl.col("linear_top1").count().alias("n_linear"),
        pl.col("linear_top1").mean().alias("linear_top1_mean"),
    )
    grouped = grouped.with_columns(
        (pl.col("queue_size") - pl.col("kept")).alias("removed"),
        pl.col("kept").cast(pl.Int64),
        pl.col("queue_size").cast(pl.Int64),
    )
    keys = {
        band: band_order_key(band, frac, reference)
        for band, frac in grouped.select("band", "kept_fraction").iter_rows()
    }
    ranked = sorted(keys, key=keys.__getitem__)
    return (
        grouped.with_columns(
            pl.col("band")
            .replace_strict({b: i for i, b in enumerate(ranked)}, return_dtype=pl.Int64)
            .alias("_o")
        )
        .sort("_o")
        .with_columns(pl.col("removed").cast(pl.Int64))
        .select(BAND_COLUMNS)
    )


def band_order_key(
    band: str, kept_fraction: float | None, reference: str = REFERENCE_BAND
) -> tuple[Any, ...]:
    """Sort key: the reference first, then kept fraction descending; at one fraction each rank
    band (harder first) followed by its count-matched random controls (``random:p`` after
    ``0-p``, ``random=BAND`` after BAND)."""
    frac = -kept_fraction if kept_fraction is not None and math.isfinite(kept_fraction) else 0.0
    try:
        b = parse_band(band)
    except ConfigError:
        return (2, frac, (), 3, band)
    ranges: tuple[tuple[Fraction, Fraction], ...] = b.matched_band.ranges
    kind = 2 if b.count_matched else 1 if b.is_random else 0
    return (0 if band == reference else 1, frac, ranges, kind, band)


def _canonical(band: str | None) -> str | None:
    if band is None:
        return None
    try:
        return parse_band(band).spec
    except ConfigError:
        return band


def _warnings(runs: pl.DataFrame, reference: str, column: str) -> list[str]:
    notes: list[str] = []
    unfinished = runs.filter(pl.col("status") != "finished")["run"].to_list()
    if unfinished:
        notes.append(f"not finished (accuracy may be from an early epoch): {', '.join(unfinished)}")
    epochs = sorted(set(runs["epochs_done"].drop_nulls().to_list()))
    if len(epochs) > 1:
        notes.append(
            f"runs trained for different numbers of epochs ({', '.join(map(str, epochs))}); "
            "compare runs of equal length"
        )
    lacking = runs.filter(pl.col(column).is_null())["run"].to_list()
    if lacking:
        what = "linear probe" if column == "linear_top1" else "kNN evaluation"
        notes.append(f"no {what} (left out of the contrasts): {', '.join(lacking)}")
    no_seed = runs.filter(pl.col("seed").is_null())["run"].to_list()
    if no_seed:
        notes.append(f"no seed recorded (cannot be paired): {', '.join(no_seed)}")
    if reference not in runs["band"].to_list():
        notes.append(f"no {reference} run: no contrasts")
    return notes


def _p(p: float | None) -> str:
    return display.DASH if display.missing(p) else display.p_text(p)


def _kept(kept: int | None, k: int | None) -> str:
    return display.DASH if kept is None or k is None else f"{kept} / {k}"


def _removed(removed: int | None, k: int | None) -> str:
    if removed is None or not k:
        return display.DASH
    return f"{removed} ({display.percent(removed / k, 3)})"


def _pair(lo: float | None, hi: float | None) -> list[float] | None:
    return None if display.missing(lo) or display.missing(hi) else [lo, hi]  # type: ignore[list-item]
