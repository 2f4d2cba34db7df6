"""The semantic chart: panels, hard-to-easy order, CI bars, all-pairs reference; PNG/JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from hardstat.analysis.semantic import SemanticBin, SemanticResult
from hardstat.charts import save_chart
from hardstat.charts.semantic import semantic_chart

NAN = float("nan")


def result(measure: str = "wup") -> SemanticResult:
    def b(lo: float, hi: float, n: int, mean: float, same: float) -> SemanticBin:
        if n == 0:
            return SemanticBin(lo, hi, None, None, 0, 0, NAN, NAN, NAN, NAN, NAN, NAN)
        return SemanticBin(
            lo, hi, None, None, n, 10, mean, mean - 0.02, mean + 0.03, same, same - 0.01,
            same + 0.01,
        )  # fmt: skip

    bins = (
        b(0, 0.1, 50, 0.66, 0.19),
        b(0.1, 1, 0, NAN, NAN),  # empty: left out of the chart
        b(1, 5, 400, 0.64, 0.15),
        b(95, 100, 900, 0.51, 0.06),
    )
    return SemanticResult(
        measure=measure, runs=("r",), similarity_source="given matrix", diagonal=1.0,
        bins=bins, n_pairs=1350, n_queries=10, mean_similarity=0.578,
        same_class_fraction=0.1, spearman_rho=-0.14, p_value=0.001, p_value_analytic=0.0,
        n_pairs_excluding_same_class=1200, spearman_rho_excluding_same_class=-0.1,
        p_value_excluding_same_class=0.001, p_value_analytic_excluding_same_class=0.0,
        permutations=1000, bootstrap=1000, seed=0,
    )  # fmt: skip


def mark(layer: dict[str, Any]) -> str:
    m = layer["mark"]
    return m if isinstance(m, str) else m["type"]


def test_two_panels_hard_to_easy_with_ci_bars_and_reference() -> None:
    frame = result().bins_frame()
    assert frame["bin"].to_list() == ["0–0.1", "0.1–1", "1–5", "95–100"]
    assert frame["mean_similarity"][1] is None  # NaN becomes null for the chart
    spec = semantic_chart(frame).to_dict()
    top, bottom = spec["vconcat"]
    for panel, value, lo, hi, overall in (
        (top, "mean_similarity", "ci_lo", "ci_hi", "overall_similarity"),
        (bottom, "same_class_fraction", "same_class_ci_lo", "same_class_ci_hi",
         "overall_same_class_fraction"),
    ):  # fmt: skip
        layers = panel["layer"]
        points = next(x for x in layers if mark(x) == "point")
        assert points["encoding"]["x"]["field"] == "bin"
        assert points["encoding"]["x"]["type"] == "nominal"
        assert points["encoding"]["x"]["sort"] == ["0–0.1", "1–5", "95–100"]  # hard -> easy
        assert points["encoding"]["y"]["field"] == value
        bars = next(x for x in layers if mark(x) == "rule" and "y2" in x["encoding"])
        assert (bars["encoding"]["y"]["field"], bars["encoding"]["y2"]["field"]) == (lo, hi)
        ref = next(x for x in layers if mark(x) == "rule" and "strokeDash" in x["mark"])
        assert ref["encoding"]["y"]["field"] == overall
    assert "Wu–Palmer" in top["layer"][-1]["encoding"]["y"]["title"]
    assert "(0–1)" in top["layer"][-1]["encoding"]["y"]["title"]
    assert bottom["layer"][-1]["encoding"]["y"]["axis"]["format"] == ".0%"
    assert "rank" in bottom["layer"][-1]["encoding"]["x"]["title"]
    values = spec["datasets"][next(iter(spec["datasets"]))]
    assert [v["bin"] for v in values] == ["0–0.1", "1–5", "95–100"]


def test_lch_axis_names_its_range() -> None:
    spec = semantic_chart(result("lch").bins_frame()).to_dict()
    title = spec["vconcat"][0]["layer"][-1]["encoding"]["y"]["title"]
    assert "Leacock–Chodorow" in title and "3.64" in title


def test_missing_columns_are_refused() -> None:
    with pytest.raises(ValueError, match="ci_lo"):
        semantic_chart(pl.DataFrame({"bin": ["0–1"], "n_pairs": [1]}))


def test_renders_png_and_json(tmp_path: Path) -> None:
    chart = semantic_chart(result().bins_frame())
    png = save_chart(chart, tmp_path / "semantic.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    spec = json.loads(save_chart(chart, tmp_path / "semantic.json").read_text())
    assert spec["$schema"].startswith("https://vega.github.io/schema/vega-lite/")
    assert len(spec["vconcat"]) == 2
