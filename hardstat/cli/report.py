"""``hardstat report``: one self-contained HTML report of a run or a sweep."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from hardstat.cli.errors import note, reports_errors
from hardstat.cli.options import DEFAULT_MEASURE, Measure, OutAlias, RunsArgument, either


@reports_errors
def report(
    runs: RunsArgument,
    html: Annotated[
        Path | None,
        typer.Option(
            metavar="FILE", help="The HTML file to write (must end in .html).", show_default=False
        ),
    ] = None,
    out: OutAlias = None,
    band: Annotated[
        str,
        typer.Option(help="Ranks that count as hard in the consistency test, in % of the queue."),
    ] = "0-5",
    measure: Annotated[
        Measure,
        typer.Option(help="WordNet similarity of two classes: wup, path or lch."),
    ] = DEFAULT_MEASURE,
    thumbnails: Annotated[
        int,
        typer.Option(help="Consistently hard (and as many easy) negatives in the gallery."),
    ] = 12,
    queries: Annotated[
        int,
        typer.Option(help="Queries shown beside each hard negative (its hardest ranks)."),
    ] = 4,
    bootstrap: Annotated[
        int, typer.Option(help="Bootstrap replicates of the semantic CIs; 0: none.")
    ] = 1000,
    permutations: Annotated[
        int,
        typer.Option(help="Permutations of the p-values; 0 (none) or >= 200."),
    ] = 1000,
    seed: Annotated[int, typer.Option(help="Seed of the bootstrap and permutations.")] = 0,
    dataset: Annotated[
        str | None,
        typer.Option(
            help="Read the gallery's images from this dataset (npz:PATH or demo). Without it, "
            "images come only from the shipped demo dataset or a file inside the runs, never "
            "from a path a run's manifest names elsewhere.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Write one self-contained HTML report (opens offline) of a run or a sweep.

    Sections: runs and dataset; band ablation with its accuracy chart (when the runs differ in
    band); semantic similarity by hardness and the consistency test on the all-negatives runs
    (band 0-100, else all runs); a gallery of the most consistently hard and easy negatives,
    each hard one beside the queries it was hardest for (images for npz: datasets). Prints the
    report's path on stdout.

    Example: `hardstat report runs/sweep --html report.html`
    """
    from hardstat.report import build_report
    from hardstat.runs import check_text

    html = either(html, out, "--html")
    if html is None:
        raise typer.BadParameter("give the HTML file to write", param_hint="'--html'")
    check_text(html, "--html")
    path = build_report(
        runs,
        out=html,
        band=band,
        measure=measure.value,
        thumbnails=thumbnails,
        queries_per_negative=queries,
        bootstrap=bootstrap,
        permutations=permutations,
        seed=seed,
        progress=note,
        dataset=dataset,
    )
    typer.echo(str(path))
