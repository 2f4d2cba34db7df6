"""The consistency chart: observed bars vs the null step line, axes, legend; PNG and JSON render."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from hardstat.analysis.consistency import (
    null_histogram,
    observed_histogram,
    rate_bin_edges,
    z_bin_edges,
)
from hardstat.charts import save_chart
from hardstat.charts.consistency import NULL, OBSERVED, consistency_chart, rate_chart

RATES = pl.DataFrame(
    {
        "rate_lo": [0.0, 0.1, 0.2],
        "rate_hi": [0.1, 0.2, 0.3],
        "observed": [5, 3, 1],
        "null": [4.5, 3.25, 1.25],
    }
)
ZS = pl.DataFrame(
    {
        "z_lo": [-1.0, 0.0, 1.0],
        "z_hi": [0.0, 1.0, 2.0],
        "observed": [2, 6, 1],
        "null": [3.0, 4.0, 2.0],
    }
)


def values(spec: dict[str, Any], layer: dict[str, Any]) -> list[dict[str, Any]]:
    data = layer.get("data") or spec.get("data")
    if "values" in data:
        return data["values"]
    return spec["datasets"][data["name"]]


def mark(layer: dict[str, Any]) -> str:
    m = layer["mark"]
    return m if isinstance(m, str) else m["type"]


def test_rate_panel_layers_bars_and_null_line() -> None:
    spec = rate_chart(RATES).to_dict()
    by_mark = {mark(layer): layer for layer in spec["layer"]}
    assert set(by_mark) == {"bar", "line"}
    bars, line = by_mark["bar"], by_mark["line"]
    assert bars["encoding"]["x"]["field"] == "lo" and bars["encoding"]["x2"]["field"] == "hi"
    assert "in-band rate" in bars["encoding"]["x"]["title"]
    y = bars["encoding"]["y"]
    assert y["field"] == "negatives" and y["scale"]["type"] == "sqrt"
    assert "number of negatives" in y["title"]
    assert bars["encoding"]["color"]["scale"]["domain"] == [OBSERVED, NULL]
    assert line["mark"]["interpolate"] == "step" and line["encoding"]["x"]["field"] == "mid"
    rows = values(spec, spec["layer"][0])
    observed = sorted((r["lo"], r["negatives"]) for r in rows if r["source"] == OBSERVED)
    null = sorted((r["mid"], r["negatives"]) for r in rows if r["source"] == NULL)
    assert observed == [(0.0, 5.0), (0.1, 3.0), (0.2, 1.0)]
    assert np.array(null) == pytest.approx(np.array([[0.05, 4.5], [0.15, 3.25], [0.25, 1.25]]))
    # each layer keeps only its source
    filters = {mark(layer): layer["transform"][0]["filter"] for layer in spec["layer"]}
    assert OBSERVED in json.dumps(filters["bar"]) and NULL in json.dumps(filters["line"])


def test_two_panels_with_z_scores() -> None:
    spec = consistency_chart(RATES, ZS, band="0-5").to_dict()
    assert len(spec["hconcat"]) == 2
    z_panel = spec["hconcat"][1]
    bars = next(layer for layer in z_panel["layer"] if mark(layer) == "bar")
    assert bars["encoding"]["x"]["title"].startswith("z = (k - m p)")
    assert "band 0-5" in spec["title"]["text"]
    assert len(consistency_chart(RATES).to_dict()["hconcat"]) == 1


def test_renders_png_and_json_from_real_histograms(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    m = rng.integers(40, 200, 500)
    p = 0.05
    k = rng.binomial(m, np.where(np.arange(500) < 20, 0.6, p))
    edges = rate_bin_edges(m, k / m, p)
    rates = pl.DataFrame(
        {
            "rate_lo": edges[:-1],
            "rate_hi": edges[1:],
            "observed": observed_histogram(k, m, p, edges),
            "null": null_histogram(m, p, edges),
        }
    )
    z = (k - m * p) / np.sqrt(m * p * (1 - p))
    ze = z_bin_edges(m, z, p)
    zs = pl.DataFrame(
        {
            "z_lo": ze[:-1],
            "z_hi": ze[1:],
            "observed": observed_histogram(k, m, p, ze, "z"),
            "null": null_histogram(m, p, ze, "z"),
        }
    )
    chart = consistency_chart(rates, zs, band="0-5")
    png = save_chart(chart, tmp_path / "c.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    spec = json.loads(save_chart(chart, tmp_path / "c.json").read_text())
    assert spec["$schema"].startswith("https://vega.github.io/schema/vega-lite/")
