"""The consistency chart: ICC points with interval rules, the null histogram with the observed
rule, per-negative z bars against the N(0, 1) line; PNG and JSON render."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from simlogs import SimSpec, simulate

from hardstat.analysis import logs
from hardstat.analysis.consistency import consistency
from hardstat.charts import save_chart
from hardstat.charts.consistency import consistency_chart, icc_chart, persistence_chart, z_chart


def mark(layer: dict[str, Any]) -> str:
    m = layer["mark"]
    return m if isinstance(m, str) else m["type"]


@pytest.fixture(scope="module")
def tables(tmp_path_factory: pytest.TempPathFactory) -> dict[str, pl.DataFrame]:
    spec = SimSpec(n_images=1000, batch=32, queue=256, every=8, logged_steps=30, queries=8)
    run = simulate(spec.scenario("C", 0.1), 1, tmp_path_factory.mktemp("chart"), "c")[0]
    con = logs.connect(logs.find_runs([run]))
    result = consistency(con, permutations=99, bootstrap=50, shuffle_check=False)
    return result.chart_tables()


def test_tables_have_the_documented_columns(tables: dict[str, pl.DataFrame]) -> None:
    assert tables["icc"].columns == ["kind", "measure", "value", "lo", "hi"]
    assert tables["icc"].height == 4
    assert tables["null"]["permutations"].sum() == 99
    assert tables["observed"].columns == ["statistic", "lo", "hi", "p", "label"]
    z = tables["z"]
    assert z.columns == ["lo", "hi", "observed", "null"]
    assert z["observed"].sum() == pytest.approx(z["null"].sum(), rel=1e-3)  # same negatives


def test_panels(tables: dict[str, pl.DataFrame]) -> None:
    icc = icc_chart(tables["icc"]).to_dict()
    assert {mark(layer) for layer in icc["layer"]} == {"rule", "point"}
    null = persistence_chart(tables["null"], tables["observed"]).to_dict()
    marks = [mark(layer) for layer in null["layer"]]
    assert marks == ["bar", "rect", "rule"]
    assert "observed" in null["title"]["subtitle"] and "permutations" in null["title"]["subtitle"]
    assert null["layer"][0]["encoding"]["y2"] == {"datum": 0}  # bars from 0
    z = z_chart(tables["z"]).to_dict()
    assert {mark(layer) for layer in z["layer"]} == {"bar", "line"}
    assert z["layer"][0]["encoding"]["y"]["scale"]["type"] == "sqrt"


def test_renders_png_and_json(tables: dict[str, pl.DataFrame], tmp_path: Path) -> None:
    chart = consistency_chart(tables, band="0-5")
    png = save_chart(chart, tmp_path / "c.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    spec = json.loads(save_chart(chart, tmp_path / "c.json").read_text())
    assert spec["$schema"].startswith("https://vega.github.io/schema/vega-lite/")
    assert len(spec["hconcat"]) == 3
    # without permutations the null panel is left out, and missing intervals still render
    empty = {**tables, "null": tables["null"].clear()}
    assert len(consistency_chart(empty).to_dict()["hconcat"]) == 2
    nan_icc = tables["icc"].with_columns(pl.lit(None, pl.Float64).alias("lo"))
    save_chart(consistency_chart({**tables, "icc": nan_icc}), tmp_path / "d.png")
