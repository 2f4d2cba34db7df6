"""The one place where library errors become CLI output: ``Error: ...`` on stderr, exit 1."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import typer

from hardstat.errors import HardstatError
from hardstat.runs import main_process

P = ParamSpec("P")
R = TypeVar("R")


def reports_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Wrap a command so a HardstatError prints one line and exits with code 1.

    Under torchrun an error is printed once, by the process where it arose (prefixed with
    ``[process N]`` unless that is process 0); the copies other processes raise stay silent.
    """

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except HardstatError as e:
            if not e.reported_elsewhere:
                where = "" if main_process() else f"[process {os.environ['RANK']}] "
                typer.echo(f"{where}Error: {e}", err=True)
            raise typer.Exit(1) from None

    return wrapper
