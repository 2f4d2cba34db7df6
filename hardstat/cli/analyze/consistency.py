"""``hardstat analyze consistency``."""

from __future__ import annotations

import json
from pathlib import Path
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
    from hardstat.analysis.consistency import ConsistencyResult


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


@app.command("consistency", cls=Command)
@reports_errors
def consistency(
    runs: RunsArgument,
    against: Annotated[
        Path | None,
        typer.Option(
            metavar="RUN2",
            help="Also measure persistence between the RUNs and this run (e.g. another seed).",
            rich_help_panel=_TESTS,
        ),
    ] = None,
    epochs: Annotated[
        str | None,
        typer.Option(
            metavar="A,B",
            help="Keep the keys logged in these two epochs and measure persistence between "
            "them (e.g. late in training: --epochs 4,5).",
            rich_help_panel=_TESTS,
        ),
    ] = None,
    hard_band: Annotated[
        str,
        typer.Option(
            "--hard-band",
            "--band",
            help="Ranks that count as hard for the in-band ICCs and the diagnostics, in percent "
            "of the queue: 0-5 (hardest 5%), 0-1, ... Not the band a run trained with.",
            rich_help_panel=_TESTS,
        ),
    ] = "0-5",
    fdr: Annotated[
        float,
        typer.Option(
            help="Benjamini-Hochberg false discovery rate of the per-negative calls.",
            rich_help_panel=_TESTS,
        ),
    ] = 0.05,
    min_keys: Annotated[
        int,
        typer.Option(
            help="Keys a negative needs before it is called consistently hard or easy.",
            rich_help_panel=_TESTS,
        ),
    ] = 3,
    permutations: Annotated[
        int,
        typer.Option(
            help="Permutations of the primary test (0: no p-value; at least 99 otherwise).",
            rich_help_panel=_TESTS,
        ),
    ] = 1000,
    bootstrap: Annotated[
        int,
        typer.Option(
            help="Bootstrap draws over negatives for the intervals (0: none; at least 50).",
            rich_help_panel=_TESTS,
        ),
    ] = 200,
    seed: Annotated[
        int,
        typer.Option(
            help="Seed of the permutations, the bootstrap and the rank shuffle.",
            rich_help_panel=_TESTS,
        ),
    ] = 0,
    shuffle_check: Annotated[
        bool,
        typer.Option(
            "--shuffle-check/--no-shuffle-check",
            help="Also compute the overdispersion diagnostic on ranks shuffled within each "
            "logged query (a calibration check: should be ~1; one more pass over the log).",
            rich_help_panel=_TESTS,
        ),
    ] = True,
    output_format: FormatOption = Format.table,
    chart: ChartOption = None,
    out: OutAlias = None,
    negatives: Annotated[
        Path | None,
        typer.Option(
            help="Write the per-negative table (neg_id, label, n_keys, mean_centred, effect, "
            "z, p, q, call) to this .csv or .parquet file.",
            rich_help_panel=_OUTPUT,
        ),
    ] = None,
) -> None:
    """Does a negative's hardness persist with the image, beyond its class?

    A negative enters a queue as a key: one augmented view, encoded at one step, seen by every
    query of the steps it spends there. Hardness shared by those queries is a property of the
    key; the question is whether it carries over to the image's other keys. Units: a pair
    (query, key) has hardness (K - rank) / (K - 1); a key (run, neg_id, key_step) the mean
    over its queries; keys are centred within their stratum (run x logged step x negative
    class) and for their age. Self-negatives (neg_id = query_id) are left out.

    Reports, effect sizes first: the intraclass correlations of hardness within a key and
    between keys of one image (95% bootstrap intervals over negatives); the primary test,
    the correlation of centred scores between different keys of one image against a null that
    permutes negative identities within strata (random rotations; one-sided p); the same between
    runs (seeds) or two --epochs; per-negative calls from at least --min-keys keys (Stouffer z,
    Benjamini-Hochberg), ranked by an empirical-Bayes effect; and, as diagnostics only, the
    old overdispersion of in-band counts against exchangeable ranks. See docs/analyses.md.

    Examples:

    * `hardstat analyze consistency runs/c10`

    * `hardstat analyze consistency runs/c10-s0 --against runs/c10-s1 -f json`

    * `hardstat analyze consistency sweeps/c10/0-100-s* --epochs 4,5 --chart consistency.png`
    """
    from hardstat.errors import HardstatError, RunError

    split = parse_epochs(epochs)
    if split is not None and against is not None:
        raise typer.BadParameter("give either --epochs or --against, not both")
    out = chart_path(chart, out)
    if negatives is not None and negatives.suffix.lower() not in (".csv", ".parquet"):
        raise HardstatError(
            f"cannot write the negatives to {negatives.name}: use a file ending in .csv or .parquet"
        )

    from hardstat.analysis import logs
    from hardstat.analysis.consistency import check_options
    from hardstat.analysis.consistency import consistency as analyse

    check_options(hard_band, fdr, permutations, bootstrap, min_keys, split)
    infos = logs.find_runs(runs)
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
        band=hard_band,
        runs=[i.name for i in infos if i.name != against_name],
        fdr=fdr,
        seed=seed,
        permutations=permutations,
        bootstrap=bootstrap,
        min_keys=min_keys,
        epochs=split,
        against=against_name,
        shuffle_check=shuffle_check,
        progress=lambda msg: typer.echo(msg, err=True),
    )
    if output_format is Format.json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
    else:
        typer.echo(render_table(result))
    if out is not None:
        from hardstat.charts import save_chart
        from hardstat.charts.consistency import consistency_chart

        save_chart(consistency_chart(result.chart_tables(), band=result.band), out)
        typer.echo(f"wrote chart {out}", err=True)
    if negatives is not None:
        negatives.parent.mkdir(parents=True, exist_ok=True)
        if negatives.suffix.lower() == ".csv":
            result.per_negative.write_csv(negatives)
        else:
            result.per_negative.write_parquet(negatives)
        typer.echo(f"wrote {result.per_negative.height} negatives to {negatives}", err=True)


def render_table(r: ConsistencyResult) -> str:
    """A short readable report of a consistency result."""
    rows = r.summary_rows(ids=True)
    width = max(len(name) for name, _ in rows) + 2
    head = (
        f"Does hardness persist with the image? hard band {r.band}: hardest {r.kept} of "
        f"K = {r.queue_size}"
    )
    lines = [head, *(f"  {name:<{width}}{value}" for name, value in rows)]
    lines += [f"  note: {n}" for n in r.notes]
    return "\n".join(lines)
