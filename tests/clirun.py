"""Invoking the ``hardstat`` CLI in tests (typer's CliRunner; arguments may be paths)."""

from __future__ import annotations

from typing import Any

from typer.testing import CliRunner

from hardstat.cli import app

runner = CliRunner()


def invoke(*args: Any, **kw: Any) -> Any:
    """``hardstat ARGS...`` in this process; ``kw`` as for ``CliRunner.invoke`` (env, input)."""
    return runner.invoke(app, [str(a) for a in args], **kw)
