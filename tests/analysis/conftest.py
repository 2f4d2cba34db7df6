"""Fixture runs for analysis tests, written with the trainer's own writer and manifest."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from runlogs import write_run


@pytest.fixture
def make_run(tmp_path: Path) -> Callable[..., Path]:
    """``make_run(name, queue_size=..., pairs=..., ...)`` -> run directory under tmp_path."""

    def make(name: str, **kw: Any) -> Path:
        return write_run(tmp_path, name, **kw)

    return make
