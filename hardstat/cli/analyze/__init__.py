"""``hardstat analyze``: the paper's questions as statistics over run logs.

Each subcommand lives in its own module and registers itself on :data:`app`.
"""

from __future__ import annotations

import typer

from hardstat.cli.options import Group

app = typer.Typer(
    name="analyze",
    cls=Group,
    help="Statistics over run logs: band ablations, WordNet semantics of hard negatives, and "
    "whether hardness is a consistent property of a negative (with null models).",
    no_args_is_help=True,
    rich_markup_mode="markdown",
)

# Register the subcommands (each module adds @app.command functions).
from hardstat.cli.analyze import bands, consistency, semantic  # noqa: E402,F401
