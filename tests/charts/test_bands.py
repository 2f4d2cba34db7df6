"""The band-ablation chart: Vega-Lite encodings, order, reference rule; PNG and JSON render."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from hardstat.charts import save_chart
from hardstat.charts.bands import KNN, LINEAR, bands_chart

RUNS = pl.DataFrame(
    {
        "run": ["all-s0", "all-s1", "hard-s0", "hard-s1", "rand-s0"],
        "band": ["0-100", "0-100", "0-5", "0-5", "random:5"],
        "seed": [0, 1, 0, 1, 0],
        "knn_top1": [0.75, 0.625, 0.5, 0.25, 0.5],
        "linear_top1": [0.875, None, 0.5, None, None],
    }
)
BANDS = pl.DataFrame(
    {
        "band": ["0-100", "0-5", "random:5"],
        "kept_fraction": [1.0, 0.0625, 0.0625],
        "knn_top1_mean": [0.6875, 0.375, 0.5],
        "knn_top1_std": [0.0884, 0.1768, None],
        "linear_top1_mean": [0.875, 0.5, None],
        "linear_top1_std": [None, None, None],
    }
)


def layers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return spec["layer"]


def mark(layer: dict[str, Any]) -> str:
    m = layer["mark"]
    return m if isinstance(m, str) else m["type"]


def test_spec_encodes_bands_in_table_order_with_both_metrics() -> None:
    spec = bands_chart(RUNS, BANDS).to_dict()
    by_mark = {mark(layer): layer for layer in layers(spec)}
    assert set(by_mark) == {"rule", "circle", "point"}
    points = by_mark["circle"]
    assert points["encoding"]["x"]["field"] == "band"
    assert points["encoding"]["x"]["sort"] == ["0-100", "0-5", "random:5"]
    assert points["encoding"]["y"]["field"] == "top1"
    assert points["encoding"]["color"]["field"] == "metric"
    assert points["encoding"]["color"]["scale"]["domain"] == [KNN, LINEAR]
    assert points["encoding"]["xOffset"]["field"] == "metric"
    values = points["data"]["values"]
    assert len(values) == 5 + 2  # every kNN value, the two linear ones
    assert {(v["run"], v["metric"], v["top1"]) for v in values} >= {
        ("all-s0", LINEAR, 0.875),
        ("hard-s1", KNN, 0.25),
    }
    means = by_mark["point"]
    assert means["mark"]["shape"] == "diamond"
    assert means["encoding"]["y"]["field"] == "mean"
    rules = [layer for layer in layers(spec) if mark(layer) == "rule"]
    reference = next(r for r in rules if "strokeDash" in r["mark"])
    bars = next(r for r in rules if "strokeDash" not in r["mark"])
    assert reference["encoding"]["y"]["field"] == "reference"
    assert sorted((v["metric"], v["reference"]) for v in reference["data"]["values"]) == [
        (KNN, 0.6875),
        (LINEAR, 0.875),
    ]
    assert (bars["encoding"]["y"]["field"], bars["encoding"]["y2"]["field"]) == ("low", "high")
    low_high = {(v["band"], v["metric"]): (v["low"], v["high"]) for v in bars["data"]["values"]}
    assert low_high[("0-5", KNN)] == pytest.approx((0.375 - 0.1768, 0.375 + 0.1768))


def test_without_linear_or_reference() -> None:
    runs = RUNS.filter(pl.col("band") != "0-100").with_columns(linear_top1=None)
    bands = BANDS.filter(pl.col("band") != "0-100").with_columns(
        linear_top1_mean=None, linear_top1_std=None
    )
    spec = bands_chart(runs, bands).to_dict()
    assert all(
        "strokeDash" not in (layer["mark"] if isinstance(layer["mark"], dict) else {})
        for layer in layers(spec)
    )
    points = next(layer for layer in layers(spec) if mark(layer) == "circle")
    assert points["encoding"]["color"]["scale"]["domain"] == [KNN]
    assert "no 0-100 run" in spec["title"]["subtitle"]


def test_renders_png_and_json(tmp_path: Path) -> None:
    chart = bands_chart(RUNS, BANDS)
    png = save_chart(chart, tmp_path / "bands.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5_000
    spec = json.loads(save_chart(chart, tmp_path / "bands.json").read_text())
    assert spec["$schema"].startswith("https://vega.github.io/schema/vega-lite/")
    assert len(spec["layer"]) == 4
