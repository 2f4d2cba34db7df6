"""Downstream accuracy of runs: the kNN monitor over epochs and the linear probe, from ``evals``.

The trainer's weighted kNN monitor writes one ``knn`` row per evaluated epoch, ``hardstat eval
RUN --linear`` a ``linear`` row (``--knn`` another ``knn`` row at the last step); both measure
top-1 (and top-5) on the held-out split. :func:`downstream` reads them per run: several
evaluations of one kind at the same step are averaged (as in :mod:`hardstat.analysis.ablation`),
the final value of a kind is the one at its largest step. Description only: no interval (one
run is one draw; :mod:`~hardstat.analysis.ablation` compares runs over seeds). No torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import duckdb
import polars as pl

from hardstat import display
from hardstat.analysis.logs import query

KINDS = {"knn": "kNN monitor", "linear": "linear probe"}
"""Evaluation kind -> what the report calls it."""

COLUMNS = ("run", "band", "seed", "kind", "step", "epoch", "top1", "top5", "n_evals")
"""One row per (run, kind, step): accuracies as fractions, ``n_evals`` evaluations averaged."""

_SQL = """
SELECT e.run, any_value(r.band) AS band, any_value(r.seed) AS seed, e.kind, e.step,
       max(e.epoch) AS epoch, avg(e.top1) AS top1, avg(e.top5) AS top5, count(*) AS n_evals
FROM evals AS e LEFT JOIN runs AS r USING (run)
WHERE e.kind IN ('knn', 'linear')
GROUP BY e.run, e.kind, e.step
ORDER BY e.run, e.kind, e.step
"""

_SCHEMA = {
    "run": pl.String,
    "band": pl.String,
    "seed": pl.Int64,
    "kind": pl.String,
    "step": pl.Int64,
    "epoch": pl.Int64,
    "top1": pl.Float64,
    "top5": pl.Float64,
    "n_evals": pl.Int64,
}


@dataclass(frozen=True)
class Downstream:
    """The runs' evaluations (:data:`COLUMNS`) and every run's name (those without any
    evaluation too), in run order."""

    evals: pl.DataFrame
    runs: tuple[str, ...]

    @property
    def empty(self) -> bool:
        return self.evals.height == 0

    def kind(self, kind: str) -> pl.DataFrame:
        """The rows of one kind (``knn`` or ``linear``), by run and step."""
        return self.evals.filter(pl.col("kind") == kind)

    def final(self) -> pl.DataFrame:
        """One row per run: its final kNN top-1 and epoch, its best kNN top-1 and epoch, its
        final linear top-1 and top-5 (null where the run has none)."""
        knn = self.kind("knn").sort("run", "step")
        last = knn.group_by("run").agg(
            pl.col("top1").last().alias("knn_top1"), pl.col("epoch").last().alias("knn_epoch")
        )
        best = (
            knn.sort("run", "top1", "step", descending=[False, True, False])
            .group_by("run")
            .agg(
                pl.col("top1").first().alias("knn_best"),
                pl.col("epoch").first().alias("best_epoch"),
            )
        )
        lin = (
            self.kind("linear")
            .sort("run", "step")
            .group_by("run")
            .agg(
                pl.col("top1").last().alias("linear_top1"),
                pl.col("top5").last().alias("linear_top5"),
            )
        )
        frame = pl.DataFrame({"run": list(self.runs)}, schema={"run": pl.String})
        for part in (last, best, lin):
            frame = frame.join(part, on="run", how="left")
        return frame

    def final_rows(self) -> tuple[list[str], list[list[str]]]:
        """Columns and text rows of the per-run table (accuracy in %)."""
        cols = ["run", "final kNN top-1 %", "at epoch", "best kNN top-1 %", "at epoch"]
        cols += ["linear top-1 %", "linear top-5 %"]
        rows = []
        for r in self.final().iter_rows(named=True):
            rows.append(
                [
                    r["run"],
                    display.percent(r["knn_top1"], 2, symbol=False),
                    _text(r["knn_epoch"]),
                    display.percent(r["knn_best"], 2, symbol=False),
                    _text(r["best_epoch"]),
                    display.percent(r["linear_top1"], 2, symbol=False),
                    display.percent(r["linear_top5"], 2, symbol=False),
                ]
            )
        return cols, rows

    def knn_rows(self) -> tuple[list[str], list[list[str]]]:
        """Columns and text rows of the kNN monitor per epoch: one row per epoch, one column
        per run with a kNN evaluation (top-1 in %)."""
        knn = self.kind("knn")
        runs = [r for r in self.runs if r in set(knn["run"].to_list())]
        by = {(r, e): t for r, e, t in knn.select("run", "epoch", "top1").iter_rows()}
        epochs = sorted(set(knn["epoch"].drop_nulls().to_list()))
        cols = ["epoch", *(f"{r} kNN top-1 %" for r in runs)]
        rows = [
            [str(e), *(display.percent(by.get((r, e)), 2, symbol=False) for r in runs)]
            for e in epochs
        ]
        return cols, rows

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``{runs, final: [...], evals: [...]}`` (fractions; null where none)."""
        return display.json_value(
            {
                "runs": list(self.runs),
                "final": self.final().to_dicts(),
                "evals": self.evals.to_dicts(),
            }
        )


def downstream(con: duckdb.DuckDBPyConnection) -> Downstream:
    """The kNN and linear evaluations of every run on ``con`` (see the module docstring)."""
    runs = query(con, "SELECT run FROM runs ORDER BY run").column("run").to_pylist()
    table = pl.from_arrow(query(con, _SQL))
    assert isinstance(table, pl.DataFrame)
    evals = (
        table.cast({c: t for c, t in _SCHEMA.items() if c in table.columns})
        if table.height
        else pl.DataFrame(schema=_SCHEMA)
    )
    return Downstream(evals=evals.select(COLUMNS), runs=tuple(runs))


def _text(value: object) -> str:
    return display.DASH if display.missing(value) else str(value)
