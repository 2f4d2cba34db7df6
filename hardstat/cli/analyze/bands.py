"""``hardstat analyze bands``: downstream accuracy of runs that differ in their band."""

from __future__ import annotations

import json
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated

import typer

from hardstat.cli.analyze import app
from hardstat.cli.errors import reports_errors
from hardstat.cli.options import (
    ChartOption,
    Command,
    Format,
    FormatOption,
    OutAlias,
    RunsArgument,
    chart_path,
)

if TYPE_CHECKING:
    from hardstat.analysis.ablation import BandAblation


class Metric(StrEnum):
    linear = "linear"
    knn = "knn"


@app.command("bands", cls=Command)
@reports_errors
def bands(
    runs: RunsArgument,
    reference: Annotated[
        str,
        typer.Option(help="The band every other band is compared with."),
    ] = "0-100",
    metric: Annotated[
        Metric | None,
        typer.Option(
            help="Primary metric: linear (final linear-probe top-1) or knn (final kNN top-1). "
            "Default: linear when every run has a linear probe, else knn.",
            show_default=False,
        ),
    ] = None,
    margin: Annotated[
        float,
        typer.Option(
            help="Equivalence margin in percentage points of top-1 accuracy (TOST), > 0.",
        ),
    ] = 1.0,
    fmt: FormatOption = Format.table,
    chart: ChartOption = None,
    out: OutAlias = None,
) -> None:
    """Compare downstream accuracy across bands of negatives, paired by seed.

    The seed is the unit: each band's run of seed s is compared with the reference band's run
    of seed s (same initial weights, data order and augmentations). Per band: the per-seed
    differences, their mean with a 95% t-interval, the 90% t-interval, a paired t-test and a
    TOST at --margin, both Holm-adjusted over the table, and a verdict: better / worse when
    the adjusted t-test p < 0.05 (by the sign), else equivalent when the adjusted TOST p <
    0.05, else inconclusive (also with fewer than 2 paired seeds). Also: each band's realized
    kept fraction (kept / K) and mean accuracy, and one row per run. Runs of different datasets
    or queue sizes are refused (analyse them separately); notes on what was left out go to
    stderr.

    Example: `hardstat analyze bands runs/sweep --metric linear --chart bands.png`
    """
    out = chart_path(chart, out)
    if not 0 < margin < 100:
        raise typer.BadParameter(
            f"{margin} pp: give the margin in percentage points, between 0 and 100, e.g. 1",
            param_hint="--margin",
        )

    from hardstat.analysis import logs
    from hardstat.analysis.ablation import REFERENCE_BAND, band_ablation
    from hardstat.errors import ConfigError

    con = logs.connect(logs.find_runs(runs))
    try:
        result = band_ablation(
            con,
            reference=None if reference == REFERENCE_BAND else reference,
            metric=None if metric is None else metric.value,
            margin=margin / 100,
        )
    finally:
        con.close()
    if out is not None and result.no_contrast is not None:
        raise ConfigError(f"no chart to write to {out}: {result.no_contrast}")
    if fmt is Format.json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
    else:
        typer.echo("\n".join(render(result)))
    for note in result.warnings:
        typer.echo(f"note: {note}", err=True)
    if out is not None:
        from hardstat.charts import save_chart
        from hardstat.charts.bands import bands_chart

        figure = bands_chart(
            result.contrasts,
            result.pairs,
            reference=result.reference,
            metric=result.metric_label,
            margin=result.margin,
        )
        save_chart(figure, out)
        typer.echo(f"wrote {out}", err=True)


def render(result: BandAblation) -> list[str]:
    """The ablation as text: the contrasts (or one line saying why there are none) with the
    verdict rule, the per-band table, then one row per run (accuracy in %)."""
    from hardstat.cli.sql import format_table

    lines: list[str] = []
    if result.no_contrast is not None:
        lines.append(result.no_contrast)
    else:
        lines.append(
            f"{result.metric_label}: band minus {result.reference}, paired by seed "
            "(percentage points)"
        )
        cols, rows = result.contrast_rows()
        numeric = [False, True, True, True, False, True, True, True, True, False]
        lines += format_table(cols, rows, numeric)
        lines.append(f"{result.rule()}.")
    if result.bands.height > 1:  # one band: its means would only repeat the runs below
        cols, rows = result.band_rows()
        lines += ["", "per band (means over the band's runs; kept / K: negatives kept per query)"]
        lines += format_table(cols, rows, [False] + [True] * (len(cols) - 1))
    linear = result.has_linear
    run_cols = ["run", "band", "seed", "kNN top-1 %"]
    run_cols += ["linear top-1 %"] if linear else []
    run_cols += ["status"]
    run_rows = []
    for r in result.runs.iter_rows(named=True):
        row = [r["run"], r["band"], _text(r["seed"]), _pct(r["knn_top1"])]
        row += [_pct(r["linear_top1"])] if linear else []
        row += [_text(r["status"])]
        run_rows.append(row)
    numeric = [False, False, True, True] + ([True] if linear else []) + [False]
    return [*lines, "", *format_table(run_cols, run_rows, numeric)]


def _pct(value: float | None, digits: int = 2) -> str:
    return "—" if value is None else f"{100 * value:.{digits}f}"


def _text(value: object) -> str:
    return "—" if value is None else str(value)
