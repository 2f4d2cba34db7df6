"""Band ablation: downstream accuracy of runs that differ in the band of negatives they used.

Cai et al. (2020) train MoCo v2 with the loss restricted to a band of each query's negatives
ranked by similarity (``0-5``: the hardest 5%, ``random:5``: 5% at random...) and compare the
downstream accuracy with the all-negatives baseline ``0-100``. :func:`band_ablation` reads those
numbers from the runs' ``evals`` table:

- per run: the final kNN top-1 (the kNN evaluation at the largest step), the best kNN top-1 (the
  largest over the run's kNN evaluations) and the latest linear-probe top-1 (null without one);
  several evaluations of the same kind at the same step are averaged first;
- per band: mean and sample standard deviation (ddof = 1; null with fewer than two values) over
  the band's runs (its seeds), and the difference of each mean from the ``0-100`` mean (null
  without a ``0-100`` run).

Bands are ordered ``0-100`` first, then by kept fraction (largest first), fixed ranks before
``random:`` at the same fraction, then by rank range (harder first). No torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import duckdb
import polars as pl

from hardstat.analysis.logs import query
from hardstat.bands import parse_band
from hardstat.errors import ConfigError, LogError

REFERENCE_BAND = "0-100"
"""The all-negatives band every other band is compared with."""

RUN_COLUMNS = (
    "run",
    "band",
    "kept_fraction",
    "seed",
    "knn_top1",
    "knn_top1_best",
    "knn_step",
    "linear_top1",
    "linear_step",
    "queue_size",
    "status",
    "epochs_done",
)
BAND_COLUMNS = (
    "band",
    "kept_fraction",
    "n_runs",
    "n_seeds",
    "knn_top1_mean",
    "knn_top1_std",
    "knn_top1_best_mean",
    "knn_top1_best_std",
    "diff_from_all",
    "n_linear",
    "linear_top1_mean",
    "linear_top1_std",
    "linear_diff_from_all",
)

_PER_RUN_SQL = """
WITH per_step AS (
    SELECT run, kind, step, avg(top1) AS top1
    FROM evals
    WHERE kind IN ($knn, $linear)
    GROUP BY run, kind, step
),
knn AS (
    SELECT run, arg_max(top1, step) AS knn_top1, max(top1) AS knn_top1_best,
           max(step) AS knn_step
    FROM per_step WHERE kind = $knn GROUP BY run
),
lin AS (
    SELECT run, arg_max(top1, step) AS linear_top1, max(step) AS linear_step
    FROM per_step WHERE kind = $linear GROUP BY run
)
SELECT r.run, r.band, r.kept_fraction, r.seed,
       CAST(knn.knn_top1 AS DOUBLE) AS knn_top1,
       CAST(knn.knn_top1_best AS DOUBLE) AS knn_top1_best,
       knn.knn_step,
       CAST(lin.linear_top1 AS DOUBLE) AS linear_top1,
       lin.linear_step,
       r.queue_size, r.status, r.epochs_done
FROM runs AS r
LEFT JOIN knn USING (run)
LEFT JOIN lin USING (run)
ORDER BY r.run
"""


@dataclass(frozen=True)
class BandAblation:
    """Accuracy per run and per band (columns :data:`RUN_COLUMNS` and :data:`BAND_COLUMNS`).

    ``bands`` is in display order (``0-100`` first); ``runs`` follows it, then seed and run.
    ``warnings`` are one-line notes on comparability (unfinished runs, unequal training length,
    runs without a kNN evaluation, a repeated seed, no ``0-100`` run).
    """

    runs: pl.DataFrame
    bands: pl.DataFrame
    reference: str = REFERENCE_BAND
    warnings: tuple[str, ...] = field(default=())

    @property
    def has_reference(self) -> bool:
        return self.reference in self.bands["band"].to_list()

    @property
    def has_linear(self) -> bool:
        return bool(self.runs["linear_top1"].is_not_null().any())

    def band_rows(self) -> tuple[list[str], list[list[str]]]:
        """Columns and rows of the per-band table, accuracy in %: what the CLI and the report
        show."""
        ref, linear = self.reference, self.has_linear
        cols = ["band", "kept %", "seeds", "kNN top-1 %", "best kNN %", f"Δ kNN vs {ref} (pp)"]
        if linear:
            cols += ["linear top-1 %", f"Δ linear vs {ref} (pp)"]
        rows = []
        for b in self.bands.iter_rows(named=True):
            row = [
                str(b["band"]),
                _percent(b["kept_fraction"]).rstrip("0").rstrip("."),
                str(b["n_seeds"]),
                _mean_std(b["knn_top1_mean"], b["knn_top1_std"]),
                _mean_std(b["knn_top1_best_mean"], b["knn_top1_best_std"]),
                _difference(b["diff_from_all"]),
            ]
            if linear:
                row += [
                    _mean_std(b["linear_top1_mean"], b["linear_top1_std"]),
                    _difference(b["linear_diff_from_all"]),
                ]
            rows.append(row)
        return cols, rows

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``{reference, runs: [...], bands: [...], warnings: [...]}``."""
        return {
            "reference": self.reference,
            "runs": _records(self.runs),
            "bands": _records(self.bands),
            "warnings": list(self.warnings),
        }


def band_ablation(con: duckdb.DuckDBPyConnection) -> BandAblation:
    """Final/best kNN and linear top-1 per run, and their mean ± std per band (see module doc)."""
    table = query(con, _PER_RUN_SQL, {"knn": "knn", "linear": "linear"})
    runs = pl.from_arrow(table)
    assert isinstance(runs, pl.DataFrame)
    if runs.height == 0:
        raise LogError("no runs to compare; give run directories or a sweep")
    runs = runs.with_columns(pl.col("band").map_elements(_canonical, return_dtype=pl.String))
    bands = _per_band(runs)
    order = {band: i for i, band in enumerate(bands["band"].to_list())}
    runs = (
        runs.with_columns(pl.col("band").replace_strict(order, return_dtype=pl.Int64).alias("_o"))
        .sort(["_o", "seed", "run"], nulls_last=True)
        .drop("_o")
        .select(RUN_COLUMNS)
    )
    return BandAblation(runs=runs, bands=bands, warnings=tuple(_warnings(runs)))


def _per_band(runs: pl.DataFrame) -> pl.DataFrame:
    grouped = runs.group_by("band").agg(
        pl.col("kept_fraction").mean(),
        pl.len().alias("n_runs"),
        pl.col("knn_top1").count().alias("n_seeds"),
        pl.col("knn_top1").mean().alias("knn_top1_mean"),
        pl.col("knn_top1").std(ddof=1).alias("knn_top1_std"),
        pl.col("knn_top1_best").mean().alias("knn_top1_best_mean"),
        pl.col("knn_top1_best").std(ddof=1).alias("knn_top1_best_std"),
        pl.col("linear_top1").count().alias("n_linear"),
        pl.col("linear_top1").mean().alias("linear_top1_mean"),
        pl.col("linear_top1").std(ddof=1).alias("linear_top1_std"),
    )
    keys = {
        band: band_order_key(band, frac)
        for band, frac in grouped.select("band", "kept_fraction").iter_rows()
    }
    grouped = grouped.with_columns(
        pl.col("band")
        .replace_strict(
            {b: i for i, b in enumerate(sorted(keys, key=keys.__getitem__))},
            return_dtype=pl.Int64,
        )
        .alias("_o")
    ).sort("_o")
    ref = grouped.filter(pl.col("band") == REFERENCE_BAND)
    ref_knn = ref["knn_top1_mean"][0] if ref.height else None
    ref_lin = ref["linear_top1_mean"][0] if ref.height else None
    return grouped.with_columns(
        (pl.col("knn_top1_mean") - pl.lit(ref_knn, dtype=pl.Float64)).alias("diff_from_all"),
        (pl.col("linear_top1_mean") - pl.lit(ref_lin, dtype=pl.Float64)).alias(
            "linear_diff_from_all"
        ),
    ).select(BAND_COLUMNS)


def band_order_key(band: str, kept_fraction: float | None) -> tuple[Any, ...]:
    """Sort key: ``0-100`` first, then kept fraction descending, fixed before random, ranges."""
    frac = -kept_fraction if kept_fraction is not None and math.isfinite(kept_fraction) else 0.0
    try:
        b = parse_band(band)
    except ConfigError:
        return (2, frac, 1, (), band)
    ranges: tuple[tuple[Fraction, Fraction], ...] = b.ranges
    return (0 if band == REFERENCE_BAND else 1, frac, int(b.is_random), ranges, band)


def _canonical(band: str | None) -> str | None:
    if band is None:
        return None
    try:
        return parse_band(band).spec
    except ConfigError:
        return band


def _warnings(runs: pl.DataFrame) -> list[str]:
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
    no_knn = runs.filter(pl.col("knn_top1").is_null())["run"].to_list()
    if no_knn:
        notes.append(f"no kNN evaluation (left out of the kNN means): {', '.join(no_knn)}")
    repeated = runs.group_by("band", "seed").agg(pl.col("run")).filter(pl.col("run").list.len() > 1)
    for band, seed, names in repeated.sort("band", "seed").iter_rows():
        notes.append(f"band {band} has seed {seed} more than once: {', '.join(sorted(names))}")
    queue_sizes = runs.group_by("band").agg(pl.col("queue_size").n_unique().alias("k"))
    for band in sorted(queue_sizes.filter(pl.col("k") > 1)["band"].to_list()):
        notes.append(f"band {band} mixes queue sizes; its kept_fraction is a mean")
    if REFERENCE_BAND not in runs["band"].to_list():
        notes.append(f"no {REFERENCE_BAND} run: diff_from_all is null")
    return notes


def _records(df: pl.DataFrame) -> list[dict[str, Any]]:
    rows = df.to_dicts()
    for row in rows:
        for k, v in row.items():
            if isinstance(v, float) and not math.isfinite(v):
                row[k] = None
    return rows


def _percent(value: float | None) -> str:
    """A fraction in percent, two decimals; None or NaN is a dash."""
    return "—" if value is None or value != value else f"{100 * value:.2f}"


def _mean_std(mean: float | None, std: float | None) -> str:
    if mean is None or mean != mean:
        return "—"
    if std is None or std != std:
        return _percent(mean)
    return f"{_percent(mean)} ± {_percent(std)}"


def _difference(value: float | None) -> str:
    """A difference of fractions in percentage points, signed."""
    return "—" if value is None or value != value else f"{100 * value:+.2f}"
