"""``hardstat demo``: train on the shipped CIFAR-10 sample, analyse, report, offline."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Annotated

import typer

from hardstat.cli.errors import note, reports_errors
from hardstat.cli.options import OutAlias, either
from hardstat.config import PRESETS


@reports_errors
def demo(
    runs_dir: Annotated[
        Path | None,
        typer.Option(
            metavar="DIR", help="Directory that holds runs (default: runs).", show_default=False
        ),
    ] = None,
    out: OutAlias = None,
    name: Annotated[
        str | None,
        typer.Option(
            help="Run name (default: demo-YYYYMMDD-HHMMSS, the start time).", show_default=False
        ),
    ] = None,
    epochs: Annotated[
        int | None,
        typer.Option(
            help=f"Training epochs (default: the demo preset's {PRESETS['demo'].optim.epochs}).",
            show_default=False,
        ),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """The offline showcase: MoCo v2 on 2,000 real CIFAR-10 images shipped with hardstat,
    rank logs, a linear probe, the consistency and semantic analyses with charts, and an HTML
    report (how long it takes: see docs/timings.md). Prints where everything is.

    Example: `hardstat demo`
    """
    from hardstat.demo import run_demo

    def say(text: str) -> None:
        note(text)

    if epochs is not None and epochs < 1:
        raise typer.BadParameter("must be >= 1", param_hint="'--epochs'")
    from hardstat import runs

    parent = either(runs_dir, out, "--runs-dir") or Path("runs")
    if name is not None:
        runs.check_run_name(name)  # one path component: the run stays inside --runs-dir
    runs.check_text(parent, "--runs-dir")
    result = run_demo(parent, name=name, epochs=epochs, progress=not quiet, say=say)
    knn = "n/a" if result.knn_top1 is None else f"{result.knn_top1:.4f}"
    say(
        f"done in {result.seconds:.0f} s: kNN top-1 {knn}, linear top-1 {result.linear_top1:.4f} "
        "(10 classes: chance 0.10)"
    )
    say(f"run directory (logs, manifest, checkpoint): {result.run_dir}")
    for path in result.files:
        say(f"  {path}")
    say(f"report: {result.report}")
    query = shlex.join(["hardstat", "sql", str(result.run_dir), "SELECT count(*) FROM pairs"])
    say(f"query the logs: {query}")
    typer.echo(str(result.report))
