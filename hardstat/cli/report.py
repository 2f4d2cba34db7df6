"""``hardstat report``: one self-contained HTML report of a run or a sweep."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from hardstat.cli.errors import note, reports_errors


class Measure(StrEnum):
    wup = "wup"
    path = "path"
    lch = "lch"


@reports_errors
def report(
    runs: Annotated[
        list[str],
        typer.Argument(
            metavar="RUN|SWEEP...",
            help="Run directories, sweep directories holding runs, or globs.",
            show_default=False,
        ),
    ],
    out: Annotated[
        Path,
        typer.Option(help="The HTML file to write (must end in .html).", show_default=False),
    ],
    band: Annotated[
        str,
        typer.Option(help="Ranks that count as hard in the consistency test, in % of the queue."),
    ] = "0-5",
    measure: Annotated[
        Measure,
        typer.Option(help="WordNet similarity of two classes: wup, path or lch."),
    ] = Measure.wup,
    thumbnails: Annotated[
        int,
        typer.Option(min=0, help="Consistently hard (and as many easy) negatives in the gallery."),
    ] = 12,
    queries: Annotated[
        int,
        typer.Option(min=0, help="Queries shown beside each hard negative (its hardest ranks)."),
    ] = 4,
    bootstrap: Annotated[
        int, typer.Option(min=0, help="Bootstrap replicates of the semantic CIs; 0: none.")
    ] = 1000,
    permutations: Annotated[
        int,
        typer.Option(min=0, help="Permutations of the p-values; 0 (none) or >= 200."),
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

    Example: `hardstat report runs/sweep --out report.html`
    """
    from hardstat.report import build_report
    from hardstat.runs import check_text

    check_text(out, "--out")

    path = build_report(
        runs,
        out=out,
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
