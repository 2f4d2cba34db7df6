"""Timings live in one place, docs/timings.md: the README, the docs and the commands' help
point there instead of stating durations of their own (which disagreed: issue #12, 9)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hardstat.cli import app

ROOT = Path(__file__).parents[1]
CLAIM = re.compile(
    r"\b(about|around|in|takes?)\s+(an?\s+|\d[\d.,]*(\s*[-–]\s*\d[\d.,]*)?\s*)"
    r"(s|sec|seconds?|min|minutes?|hours?)\b"
    r"|~\s*\d[\d.,]*\s*(s|min|minutes?|h)\b|a few (seconds|minutes)|in seconds",
    re.IGNORECASE,
)
# measured records of one study, benchmark or analysis step (each with its own setting), not
# claims about how long the demo, the tiny preset or a cifar10-cpu epoch takes
RECORDS = {
    "timings.md", "reliability.md", "reproduction.md", "scaling.md", "record.md", "analyses.md"
}  # fmt: skip


def claims(text: str) -> list[str]:
    return [m.group(0) for m in CLAIM.finditer(" ".join(text.split()))]


def test_timings_doc_states_machine_and_load() -> None:
    text = (ROOT / "docs" / "timings.md").read_text()
    for word in ("hardstat demo", "--preset tiny", "cifar10-cpu", "load average", "uptime"):
        assert word in text, word


@pytest.mark.parametrize(
    "doc",
    [
        ROOT / "README.md",
        *(p for p in sorted((ROOT / "docs").glob("*.md")) if p.name not in RECORDS),
    ],
    ids=lambda p: p.name,
)
def test_docs_point_to_timings_instead_of_stating_durations(doc: Path) -> None:
    assert claims(doc.read_text()) == []


@pytest.mark.parametrize("command", ["train", "demo"])
def test_help_points_to_timings(command: str) -> None:
    result = CliRunner().invoke(app, [command, "--help"], terminal_width=200)
    assert result.exit_code == 0
    text = result.output.replace("│", " ")
    assert claims(text) == [] and "docs/timings.md" in " ".join(text.split())
