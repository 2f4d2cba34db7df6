"""The semantic chart: bin panels hard-to-easy with CI bars and all-ranks references, the
per-epoch trajectory panel; PNG/JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from hardstat.analysis.semantic import (
    HEADLINE,
    EpochContrast,
    RunSummary,
    SemanticBin,
    SemanticResult,
)
from hardstat.charts import save_chart
from hardstat.charts.semantic import semantic_chart

NAN = float("nan")


def result(measure: str = "wup", runs: tuple[str, ...] = ("r",)) -> SemanticResult:
    def b(lo: float, hi: float, n: int, same: float, sim: float) -> SemanticBin:
        if n == 0:
            return SemanticBin(lo, hi, None, None, 0, 0, NAN, NAN, NAN, 0, NAN, NAN, NAN)
        return SemanticBin(
            lo, hi, None, None, n, 10, same, same - 0.01, same + 0.01, int(n * (1 - same)),
            sim, sim - 0.02, sim + 0.03,
        )  # fmt: skip

    bins = (
        b(0, 0.1, 50, 0.19, 0.62),
        b(0.1, 1, 0, NAN, NAN),  # empty: left out of the chart
        b(1, 5, 400, 0.15, 0.60),
        b(95, 100, 900, 0.06, 0.46),
    )
    trajectory = []
    for i, run in enumerate(runs):
        for epoch in range(4):
            est = 0.05 + 0.005 * epoch + 0.002 * i
            trajectory.append(
                EpochContrast(run, epoch, HEADLINE, 1, 3, 1000, est, NAN, NAN, epoch >= 2)
            )
    if len(runs) > 1:
        for epoch in range(4):
            trajectory.append(
                EpochContrast(
                    None, epoch, HEADLINE, len(runs), 6, 2000, 0.05, 0.04, 0.06, epoch >= 2
                )
            )
    summary = RunSummary("r", 40, 4, 2, 2, 3, 2, 3, 1350, 10, 40, 0)
    return SemanticResult(
        measure=measure, runs=runs, class_similarity_source="given matrix", diagonal=1.0,
        window="late training", resampling="step-negative", bootstrap=1000, permutations=1000,
        seed=0, run_summaries=(summary,), contrasts=(), seed_contrasts=(), bins=bins,
        n_pairs=1350, n_queries=10, n_steps=2, n_negatives=40, n_self_negatives_excluded=0,
        same_class_fraction=0.1, class_similarity_different_class=0.55,
        trajectory=tuple(trajectory), spearman_rho=-0.14, p_value=0.001, p_value_analytic=0.0,
        n_pairs_excluding_same_class=1200, spearman_rho_excluding_same_class=-0.1,
        p_value_excluding_same_class=0.001, p_value_analytic_excluding_same_class=0.0,
        warnings=(),
    )  # fmt: skip


def mark(layer: dict[str, Any]) -> str:
    m = layer["mark"]
    return m if isinstance(m, str) else m["type"]


def test_bin_panels_hard_to_easy_with_ci_bars_and_reference() -> None:
    frame = result().bins_frame()
    assert frame["bin"].to_list() == ["0–0.1", "0.1–1", "1–5", "95–100"]
    assert frame["class_similarity_different_class"][1] is None  # NaN becomes null
    spec = semantic_chart(frame).to_dict()
    assert len(spec["vconcat"]) == 2  # no trajectory given
    same, similar = spec["vconcat"]
    for panel, value, lo, hi, overall in (
        (same, "same_class_fraction", "same_class_ci_lo", "same_class_ci_hi",
         "overall_same_class_fraction"),
        (similar, "class_similarity_different_class", "class_similarity_ci_lo",
         "class_similarity_ci_hi", "overall_class_similarity_different_class"),
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
    assert same["layer"][-1]["encoding"]["y"]["axis"]["format"] == ".0%"
    title = similar["layer"][-1]["encoding"]["y"]["title"]
    assert title == ["Wu–Palmer (0–1)", "different-class pairs"]
    assert "rank" in similar["layer"][-1]["encoding"]["x"]["title"]
    assert "step-negative" in spec["title"]["subtitle"][0]
    assert "class_similarity" in spec["title"]["text"]
    values = spec["datasets"][next(iter(spec["datasets"]))]
    assert [v["bin"] for v in values] == ["0–0.1", "1–5", "95–100"]


def test_trajectory_panel_lines_per_run_mean_band_and_window() -> None:
    r = result(runs=("s0", "s1"))
    frame = r.trajectory_frame()
    assert set(frame["run"]) == {"s0", "s1", "mean over runs"} and len(frame) == 12
    spec = semantic_chart(r.bins_frame(), frame).to_dict()
    assert len(spec["vconcat"]) == 3
    assert "t-interval" in spec["title"]["subtitle"][1]
    layers = spec["vconcat"][2]["layer"]
    window = next(x for x in layers if mark(x) == "rect")
    band = next(x for x in layers if mark(x) == "area")
    assert (band["encoding"]["y"]["field"], band["encoding"]["y2"]["field"]) == ("ci_lo", "ci_hi")
    runs = next(x for x in layers if mark(x) == "line" and "color" in x["encoding"])
    assert runs["encoding"]["color"]["field"] == "run"
    assert runs["encoding"]["x"]["field"] == "epoch"
    assert "class_similarity gap" in runs["encoding"]["y"]["title"][0]
    data = spec["datasets"][window["data"]["name"]]
    assert data == [{"start": 1.5, "end": 3.5}]  # epochs 2-3 are in the window
    # one run: no band; a trajectory without estimates: no panel
    one = semantic_chart(result().bins_frame(), result().trajectory_frame()).to_dict()
    assert not any(mark(x) == "area" for x in one["vconcat"][2]["layer"])
    empty = result().trajectory_frame().with_columns(pl.lit(None, pl.Float64).alias("estimate"))
    assert len(semantic_chart(result().bins_frame(), empty).to_dict()["vconcat"]) == 2


def test_lch_axis_names_its_range() -> None:
    spec = semantic_chart(result("lch").bins_frame()).to_dict()
    title = spec["vconcat"][1]["layer"][-1]["encoding"]["y"]["title"]
    assert "Leacock–Chodorow" in title[0] and "3.64" in title[0]


def test_missing_columns_are_refused() -> None:
    with pytest.raises(ValueError, match="same_class_ci_lo"):
        semantic_chart(pl.DataFrame({"bin": ["0–1"], "n_pairs": [1]}))
    with pytest.raises(ValueError, match="in_window"):
        semantic_chart(result().bins_frame(), pl.DataFrame({"run": ["r"], "epoch": [0]}))


def test_renders_png_and_json(tmp_path: Path) -> None:
    r = result(runs=("s0", "s1"))
    chart = semantic_chart(r.bins_frame(), r.trajectory_frame())
    png = save_chart(chart, tmp_path / "semantic.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    spec = json.loads(save_chart(chart, tmp_path / "semantic.json").read_text())
    assert spec["$schema"].startswith("https://vega.github.io/schema/vega-lite/")
    assert len(spec["vconcat"]) == 3
