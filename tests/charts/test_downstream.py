"""The downstream-accuracy chart: a kNN line per run, linear-probe diamonds, chance rule."""

from __future__ import annotations

import json

import polars as pl
import pytest

from hardstat.charts.downstream import MAX_RUN_COLOURS, downstream_chart


def evals(n_runs: int) -> pl.DataFrame:
    rows = []
    for i in range(n_runs):
        for epoch in range(3):
            rows.append((f"r{i}", "0-100" if i % 2 else "0-5", "knn", epoch, 0.5 + epoch / 10))
        rows.append((f"r{i}", "0-100" if i % 2 else "0-5", "linear", 2, 0.7))
    return pl.DataFrame(rows, schema=["run", "band", "kind", "epoch", "top1"], orient="row")


def layers(chart) -> list[dict]:  # type: ignore[no-untyped-def]
    return json.loads(chart.to_json())["layer"]


def test_lines_diamonds_and_chance() -> None:
    spec = layers(downstream_chart(evals(2), chance=0.1))
    marks = [layer["mark"]["type"] for layer in spec]
    assert marks == ["rule", "line", "point"]
    line, diamond = spec[1], spec[2]
    assert line["encoding"]["color"]["field"] == "run"
    assert line["encoding"]["y"]["axis"]["format"] == ".0%"
    assert diamond["mark"]["shape"] == "diamond"
    assert json.loads(downstream_chart(evals(2)).to_json())["layer"][0]["mark"]["type"] == "line"


def test_many_runs_are_coloured_by_band() -> None:
    spec = layers(downstream_chart(evals(MAX_RUN_COLOURS + 1)))
    assert spec[0]["encoding"]["color"]["field"] == "band"
    assert spec[0]["encoding"]["detail"]["field"] == "run"


def test_missing_columns() -> None:
    with pytest.raises(ValueError, match="top1"):
        downstream_chart(evals(1).drop("top1"))
