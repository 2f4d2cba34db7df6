"""save_chart: the format by suffix, written completely or not at all."""

from __future__ import annotations

import os
from pathlib import Path

import altair as alt
import pytest

from hardstat.charts import save_chart
from hardstat.errors import WriteError


def _chart() -> alt.Chart:
    return alt.Chart(alt.Data(values=[{"x": 1, "y": 2}])).mark_point().encode(x="x:Q", y="y:Q")


@pytest.mark.parametrize("suffix", [".html", ".json", ".svg"])
def test_formats(tmp_path: Path, suffix: str) -> None:
    path = save_chart(_chart(), tmp_path / "deeper" / f"c{suffix}")
    text = path.read_text()
    assert {".html": "<html", ".json": '"mark"', ".svg": "<svg"}[suffix] in text


def test_disk_full_keeps_the_previous_chart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "c.json"
    path.write_text("previous")

    def full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(WriteError, match="No space left on device"):
        save_chart(_chart(), path)
    assert path.read_text() == "previous" and sorted(p.name for p in tmp_path.iterdir()) == [
        "c.json"
    ]
