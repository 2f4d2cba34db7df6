"""``hardstat analyze consistency``."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from hardstat.cli.analyze import app
from hardstat.cli.errors import reports_errors

if TYPE_CHECKING:
    from hardstat.analysis.consistency import ConsistencyResult


class OutputFormat(StrEnum):
    table = "table"
    json = "json"


_TESTS = "Tests"
_OUTPUT = "Output"


def parse_epochs(value: str | None) -> tuple[int, int] | None:
    """``"A,B"`` -> (A, B); a malformed value is a usage error."""
    if value is None:
        return None
    parts = [p.strip() for p in value.split(",")]
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        raise typer.BadParameter(
            f"{value!r} is not two epochs; give them as A,B, e.g. --epochs 0,99",
            param_hint="'--epochs'",
        )
    return int(parts[0]), int(parts[1])


@app.command("consistency")
@reports_errors
def consistency(
    runs: Annotated[
        list[Path],
        typer.Argument(
            metavar="RUN",
            help="Run directories, sweep directories holding runs, or globs.",
            show_default=False,
        ),
    ],
    band: Annotated[
        str,
        typer.Option(
            help="Ranks that count as hard, in percent of the queue: 0-5 (hardest 5%), "
            "0-1, 0-5,50-55... (random: bands have no ranks and are refused).",
            rich_help_panel=_TESTS,
        ),
    ] = "0-5",
    fdr: Annotated[
        float,
        typer.Option(
            help="Benjamini-Hochberg false discovery rate for the per-negative calls.",
            rich_help_panel=_TESTS,
        ),
    ] = 0.05,
    epochs: Annotated[
        str | None,
        typer.Option(
            metavar="A,B",
            help="Persistence between these two epochs (default: between the two halves of "
            "the logged steps).",
            rich_help_panel=_TESTS,
        ),
    ] = None,
    against: Annotated[
        Path | None,
        typer.Option(
            metavar="RUN2",
            help="Persistence between the RUNs and this run (e.g. another seed) instead.",
            rich_help_panel=_TESTS,
        ),
    ] = None,
    permutations: Annotated[
        int,
        typer.Option(
            min=0,
            help="Shuffles for the Spearman permutation p-value (0: analytic p only).",
            rich_help_panel=_TESTS,
        ),
    ] = 1000,
    seed: Annotated[
        int,
        typer.Option(help="Seed of the rank shuffle and the permutations.", rich_help_panel=_TESTS),
    ] = 0,
    permutation_check: Annotated[
        bool,
        typer.Option(
            "--permutation-check/--no-permutation-check",
            help="Also run the statistic on ranks shuffled within each logged query (a draw "
            "from the null: its ratio should be ~1).",
            rich_help_panel=_TESTS,
        ),
    ] = True,
    output_format: Annotated[
        OutputFormat,
        typer.Option(
            "--format", help="Report on stdout as a table or JSON.", rich_help_panel=_OUTPUT
        ),
    ] = OutputFormat.table,
    out: Annotated[
        Path | None,
        typer.Option(
            help="Write the chart (observed vs null in-band rates): .html, .png, .svg or .json.",
            rich_help_panel=_OUTPUT,
        ),
    ] = None,
    negatives: Annotated[
        Path | None,
        typer.Option(
            help="Write the per-negative table (neg_id, label, m, k, rate, expected, z, p, q, "
            "call) to this .csv or .parquet file.",
            rich_help_panel=_OUTPUT,
        ),
    ] = None,
) -> None:
    """Is hardness a property of the negative? Test whether negatives are consistently hard.

    For every negative: m = its logged appearances, k = those with a rank in the band. If
    hardness were exchangeable among a query's negatives, k ~ Binomial(m, p) with p = the
    band's share of the queue. Reports the overdispersion test (Pearson X2 vs chi-square, its
    ratio to df, Tarone's Z), per-negative exact binomial tests with Benjamini-Hochberg
    (consistently hard / easy negatives), the same statistic on ranks shuffled within each
    query, the statistic beyond class (null rate per query class x negative class), and
    persistence: Spearman correlation of per-negative mean rank percentile between two halves
    of training, two --epochs, or another run (--against). See docs/analyses.md.

    Examples:

    * `hardstat analyze consistency runs/c10`

    * `hardstat analyze consistency runs/c10 --band 0-1 --epochs 10,190 --out consistency.png`

    * `hardstat analyze consistency runs/c10-s0 --against runs/c10-s1 --format json`
    """
    from hardstat.charts import FORMATS
    from hardstat.errors import HardstatError, RunError

    split = parse_epochs(epochs)
    if split is not None and against is not None:
        raise typer.BadParameter("give either --epochs or --against, not both")
    if out is not None and out.suffix.lower() not in FORMATS:
        raise HardstatError(
            f"cannot write a chart to {out.name}: use a file ending in {', '.join(FORMATS)}"
        )
    if negatives is not None and negatives.suffix.lower() not in (".csv", ".parquet"):
        raise HardstatError(
            f"cannot write the negatives to {negatives.name}: use a file ending in .csv or .parquet"
        )

    from hardstat.analysis import logs
    from hardstat.analysis.consistency import consistency as analyse

    infos = logs.find_runs([str(r) for r in runs])
    against_name = None
    if against is not None:
        others = logs.find_runs([str(against)])
        if len(others) != 1:
            raise RunError(f"--against takes one run; {against} holds {len(others)}")
        against_name = others[0].name
        if against_name in {i.name for i in infos}:
            raise RunError(
                f"run {against_name!r} is both analysed and the --against run; pick another"
            )
        infos = [*infos, others[0]]
    con = logs.connect(infos)
    result = analyse(
        con,
        band=band,
        runs=[i.name for i in infos if i.name != against_name],
        fdr=fdr,
        seed=seed,
        permutations=permutations,
        epochs=split,
        against=against_name,
        permutation_check=permutation_check,
        progress=lambda msg: typer.echo(msg, err=True),
    )
    if output_format is OutputFormat.json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
    else:
        typer.echo(render_table(result))
    if out is not None:
        from hardstat.charts import save_chart
        from hardstat.charts.consistency import consistency_chart

        save_chart(
            consistency_chart(result.rate_histogram, result.z_histogram, band=result.band), out
        )
        typer.echo(f"wrote chart {out}", err=True)
    if negatives is not None:
        negatives.parent.mkdir(parents=True, exist_ok=True)
        if negatives.suffix.lower() == ".csv":
            result.per_negative.write_csv(negatives)
        else:
            result.per_negative.write_parquet(negatives)
        typer.echo(f"wrote {result.n_negatives} negatives to {negatives}", err=True)


def render_table(r: ConsistencyResult) -> str:
    """A short readable report of a consistency result."""
    rows = r.summary_rows(ids=True)
    width = max(len(name) for name, _ in rows) + 2
    head = (
        f"Consistency of hardness, band {r.band}: hardest {r.kept} of K = {r.queue_size} "
        f"(p = {r.kept_fraction:.4f})"
    )
    lines = [head, *(f"  {name:<{width}}{value}" for name, value in rows)]
    lines += [f"  note: {n}" for n in r.notes]
    return "\n".join(lines)
