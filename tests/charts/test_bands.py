"""The band-ablation chart: per-seed paired differences, mean and 95% interval by verdict, the
margin and the zero line; PNG and JSON render."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from hardstat.charts import save_chart
from hardstat.charts.bands import VERDICT_COLOURS, bands_chart

CONTRASTS = pl.DataFrame(
    {
        "band": ["5-100", "0-5", "random:5"],
        "n_seeds": [3, 3, 1],
        "kept_fraction": [0.9375, 0.0625, 0.0625],
        "mean_diff": [-0.25, -0.125, 0.0],
        "ci95_lo": [-0.30, -0.39, None],
        "ci95_hi": [-0.20, 0.14, None],
        "verdict": ["worse", "inconclusive", "inconclusive"],
    }
)
PAIRS = pl.DataFrame(
    {
        "band": ["5-100"] * 3 + ["0-5"] * 3 + ["random:5"],
        "seed": [0, 1, 2, 0, 1, 2, 0],
        "run": ["e0", "e1", "e2", "h0", "h1", "h2", "r0"],
        "reference_run": ["a0", "a1", "a2", "a0", "a1", "a2", "a0"],
        "diff": [-0.25, -0.25, -0.25, -0.25, -0.0625, -0.0625, 0.0],
    }
)


def layers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return spec["layer"]


def mark(layer: dict[str, Any]) -> str:
    m = layer["mark"]
    return m if isinstance(m, str) else m["type"]


def spec_of(**kw: Any) -> dict[str, Any]:
    return bands_chart(
        CONTRASTS, PAIRS, reference="0-100", metric="final kNN top-1", **kw
    ).to_dict()


def test_every_seed_is_a_point_in_percentage_points() -> None:
    spec = spec_of()
    dots = next(layer for layer in layers(spec) if mark(layer) == "circle")
    assert dots["encoding"]["x"]["field"] == "band"
    assert dots["encoding"]["x"]["sort"] == ["5-100", "0-5", "random:5"]
    assert dots["encoding"]["y"]["field"] == "diff"
    assert dots["encoding"]["xOffset"]["field"] == "slot"
    values = dots["data"]["values"]
    assert len(values) == PAIRS.height
    assert {(v["run"], v["diff"]) for v in values} >= {("h1", -6.25), ("r0", 0.0)}
    assert dots["encoding"]["y"]["title"] == "Δ final kNN top-1 vs 0-100 (pp)"


def test_means_intervals_margin_and_zero() -> None:
    spec = spec_of(margin=0.02)
    by_mark: dict[str, list[dict[str, Any]]] = {}
    for layer in layers(spec):
        by_mark.setdefault(mark(layer), []).append(layer)
    (centre,) = by_mark["point"]
    assert centre["mark"]["shape"] == "diamond" and centre["encoding"]["y"]["field"] == "mean_diff"
    assert centre["encoding"]["color"]["field"] == "verdict"
    assert centre["encoding"]["color"]["scale"]["domain"] == list(VERDICT_COLOURS)
    means = {v["band"]: v for v in centre["data"]["values"]}
    assert means["0-5"]["mean_diff"] == pytest.approx(-12.5)
    assert (means["0-5"]["ci95_lo"], means["0-5"]["ci95_hi"]) == pytest.approx((-39, 14))
    zero, bars = by_mark["rule"]
    assert zero["data"]["values"] == [{"zero": 0.0}]
    assert (bars["encoding"]["y"]["field"], bars["encoding"]["y2"]["field"]) == (
        "ci95_lo",
        "ci95_hi",
    )
    (shade,) = by_mark["rect"]
    assert shade["data"]["values"] == [{"low": -2.0, "high": 2.0}]  # ±2 pp
    assert "±2.00 pp" in " ".join(spec["title"]["subtitle"])  # as in the rule


def test_renders_png_and_json(tmp_path: Path) -> None:
    chart = bands_chart(CONTRASTS, PAIRS)
    png = save_chart(chart, tmp_path / "bands.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5_000
    spec = json.loads(save_chart(chart, tmp_path / "bands.json").read_text())
    assert spec["$schema"].startswith("https://vega.github.io/schema/vega-lite/")
    assert len(spec["layer"]) == 5
