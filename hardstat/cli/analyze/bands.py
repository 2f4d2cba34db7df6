"""``hardstat analyze bands``: downstream accuracy of runs that differ in their band."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from hardstat.cli.analyze import app
from hardstat.cli.errors import reports_errors

if TYPE_CHECKING:
    from hardstat.analysis.ablation import BandAblation


class BandsFormat(StrEnum):
    table = "table"
    json = "json"


@app.command("bands")
@reports_errors
def bands(
    runs: Annotated[
        list[str],
        typer.Argument(
            metavar="RUN...",
            help="Runs that differ in band (run directories, sweep directories or globs).",
            show_default=False,
        ),
    ],
    fmt: Annotated[
        BandsFormat, typer.Option("--format", "-f", help="table (text) or json.")
    ] = BandsFormat.table,
    out: Annotated[
        Path | None,
        typer.Option(
            help="Also write the chart (accuracy versus band) to x.html, x.png, x.svg or x.json.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Compare downstream accuracy across bands of negatives, over seeds.

    Per run: final kNN top-1 (the last kNN evaluation), best kNN top-1, latest linear-probe
    top-1 (`hardstat eval --linear`; empty without one). Per band: mean ± sample std (ddof=1)
    over its runs and the difference from the all-negatives band 0-100. Notes on comparability
    (unfinished runs, unequal epochs, repeated seeds) go to stderr.

    Example: `hardstat analyze bands runs/sweep --out bands.png`
    """
    from hardstat.charts import FORMATS

    if out is not None and out.suffix.lower() not in FORMATS:
        raise typer.BadParameter(
            f"{out.name}: use a file ending in {', '.join(FORMATS)}", param_hint="--out"
        )

    from hardstat.analysis import logs
    from hardstat.analysis.ablation import band_ablation

    con = logs.connect(logs.find_runs(runs))
    try:
        result = band_ablation(con)
    finally:
        con.close()
    if fmt is BandsFormat.json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
    else:
        typer.echo("\n".join(render(result)))
    for note in result.warnings:
        typer.echo(f"note: {note}", err=True)
    if out is not None:
        from hardstat.charts import save_chart
        from hardstat.charts.bands import bands_chart

        save_chart(bands_chart(result.runs, result.bands, reference=result.reference), out)
        typer.echo(f"wrote {out}", err=True)


def render(result: BandAblation) -> list[str]:
    """The ablation as two aligned text tables: per band, then per run (accuracy in %)."""
    from hardstat.cli.sql import format_table

    linear = result.has_linear
    cols, rows = result.band_rows()
    lines = format_table(cols, rows, [False] + [True] * (len(cols) - 1))
    run_cols = ["run", "band", "seed", "kNN top-1 %", "best kNN %"]
    run_cols += ["linear top-1 %"] if linear else []
    run_cols += ["status"]
    run_rows = []
    for r in result.runs.iter_rows(named=True):
        row = [r["run"], r["band"], _text(r["seed"]), _pct(r["knn_top1"]), _pct(r["knn_top1_best"])]
        row += [_pct(r["linear_top1"])] if linear else []
        row += [_text(r["status"])]
        run_rows.append(row)
    numeric = [False, False, True, True, True] + ([True] if linear else []) + [False]
    return [*lines, "", *format_table(run_cols, run_rows, numeric)]


def _pct(value: float | None, digits: int = 2) -> str:
    return "—" if value is None else f"{100 * value:.{digits}f}"


def _text(value: object) -> str:
    return "—" if value is None else str(value)
