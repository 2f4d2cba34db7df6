"""The one place where library errors become CLI output: ``Error: ...`` on stderr, exit 1.

Also what the CLI does with the streams themselves: a closed stdout (``hardstat sql ... | head``)
ends the command quietly with exit code 0 (the reader took what it wanted), a closed or broken
stderr never ends a command (:class:`hardstat.display.SafeStream`, :func:`note`), and Ctrl-C
outside a command's own handling is one line and exit code 130.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
from collections.abc import Callable
from typing import NoReturn, ParamSpec, TypeVar

import typer

from hardstat import interrupts
from hardstat.display import printable
from hardstat.errors import HardstatError
from hardstat.runs import main_process

P = ParamSpec("P")
R = TypeVar("R")

EXIT_BROKEN_PIPE = 0
"""Exit status when stdout's reader has gone (``| head``): success, quietly, so that
``set -o pipefail`` scripts and ``make`` do not fail because the reader stopped early."""


def note(message: str) -> None:
    """A message on stderr that never fails: a closed or broken stderr drops it."""
    with contextlib.suppress(OSError, ValueError):
        typer.echo(message, err=True)


def result_line(text: str) -> None:
    """A result on stdout that never fails the command: when stdout's reader has gone (after a
    run has finished, say) the line is dropped and the command keeps its exit status."""
    try:
        typer.echo(text)
    except (OSError, ValueError):
        _silence_stdout()


def reports_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Wrap a command so a HardstatError prints one line and exits with its code (1; 130 for
    an interruption).

    Under torchrun an error is printed once, by the process where it arose (prefixed with
    ``[process N]`` unless that is process 0); the copies other processes raise stay silent.
    Control characters in messages (from paths or run data) are printed as escapes.
    """

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return _run(*args, **kwargs)
        except KeyboardInterrupt:  # a late Ctrl-C, while an error was being reported
            raise typer.Exit(130) from None

    def _run(*args: P.args, **kwargs: P.kwargs) -> R:
        with interrupts.cli_session():
            try:
                return command(*args, **kwargs)
            except HardstatError as e:
                if interrupts.stop_reason() == "interrupt":
                    _interrupted()
                if not e.reported_elsewhere:
                    where = "" if main_process() else f"[process {os.environ['RANK']}] "
                    note(f"{where}Error: {printable(e)}")
                raise typer.Exit(e.exit_code) from None
            except KeyboardInterrupt:
                _interrupted()
            except BrokenPipeError:
                _silence_stdout()
                raise typer.Exit(EXIT_BROKEN_PIPE) from None
            except OSError as e:  # a writer without its own message: disk full, permission
                if interrupts.stop_reason() == "interrupt":
                    _interrupted()
                what = f" {e.filename}" if e.filename else ""
                note(f"Error: cannot access{printable(what)} ({printable(e.strerror or e)})")
                raise typer.Exit(1) from None
            except Exception:
                if interrupts.stop_reason() == "interrupt":  # e.g. "RuntimeError: Query
                    _interrupted()  # interrupted" from a result stream
                raise

    return wrapper


def _interrupted() -> NoReturn:
    note("Error: interrupted (Ctrl-C)")
    raise typer.Exit(130) from None


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so Python's final flush at exit does not fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass
