"""Invoking the ``hardstat`` CLI in tests (typer's CliRunner; arguments may be paths)."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from typing import Any

from typer.testing import CliRunner

from hardstat.cli import app

runner = CliRunner()


def invoke(*args: Any, **kw: Any) -> Any:
    """``hardstat ARGS...`` in this process; ``kw`` as for ``CliRunner.invoke`` (env, input)."""
    return runner.invoke(app, [str(a) for a in args], **kw)


@contextlib.contextmanager
def fresh_process_signals() -> Iterator[None]:
    """SIGINT handled as in a new ``hardstat`` process (Python's default handler, no wakeup
    fd), whatever earlier tests or the shell that started pytest left (a background job's SIGINT
    is ignored); restored afterwards."""
    handler = signal.signal(signal.SIGINT, signal.default_int_handler)
    fd = signal.set_wakeup_fd(-1)
    try:
        yield
    finally:
        signal.set_wakeup_fd(fd)
        signal.signal(signal.SIGINT, handler)
