"""The ``hardstat`` command line: thin commands over the library.

Each command validates its input, calls one library function and renders the result: results go
to stdout, progress and messages to stderr. Library errors (:class:`hardstat.errors.HardstatError`)
become ``Error: ...`` on stderr with exit code 1 (:mod:`hardstat.cli.errors`); usage errors exit
2. Heavy imports (torch, duckdb, altair) happen inside commands, so ``hardstat --help`` is instant.
"""

from __future__ import annotations

from typing import Annotated

import typer

from hardstat import __version__
from hardstat.cli import demo as _demo
from hardstat.cli import evaluate as _evaluate
from hardstat.cli import report as _report
from hardstat.cli import sql as _sql
from hardstat.cli import sweep as _sweep
from hardstat.cli import train as _train
from hardstat.cli import wordnet as _wordnet
from hardstat.cli.analyze import app as _analyze_app
from hardstat.cli.options import Command, Group

app = typer.Typer(
    name="hardstat",
    cls=Group,
    help=(
        "Study the negatives of contrastive learning. Train an instrumented MoCo v2 whose rank "
        "logs record, for logged queries, each queue negative's sample_id, similarity and rank "
        "(1 = most similar = hardest); restrict the loss to a difficulty band of negatives; "
        "evaluate the features downstream; test with null models whether hard negatives are "
        "consistent and semantically close; report. New here? Run `hardstat demo`."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
)
app.command("demo", cls=Command)(_demo.demo)
app.command("train", cls=Command)(_train.train)
app.command("eval", cls=Command)(_evaluate.evaluate)
app.command("sql", cls=Command)(_sql.sql)
app.command("sweep", cls=Command)(_sweep.sweep)
app.command("report", cls=Command)(_report.report)
app.add_typer(_analyze_app, name="analyze")
app.add_typer(_wordnet.app, name="wordnet")


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"hardstat {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_show_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    pass


def main() -> None:
    """Console entry point. stderr is wrapped so that a closed or broken stderr (a dead
    ``tee``, ``2>&1 | head``) can never end a command, training included."""
    import sys

    from hardstat.display import SafeStream

    if not isinstance(sys.stderr, SafeStream):
        sys.stderr = SafeStream(sys.stderr)
    try:
        app()
    except KeyboardInterrupt:  # Ctrl-C outside a command (while loading or parsing)
        print("Error: interrupted (Ctrl-C)", file=sys.stderr)
        sys.exit(130)
