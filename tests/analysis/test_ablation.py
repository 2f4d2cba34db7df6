"""band_ablation against hand-computed values (accuracies are float32-exact dyadic numbers)."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import pytest

from hardstat.analysis import logs
from hardstat.analysis.ablation import BAND_COLUMNS, RUN_COLUMNS, band_ablation, band_order_key
from hardstat.bands import parse_band


def ev(kind: str, step: int, top1: float) -> dict[str, object]:
    return {"step": step, "epoch": 0, "kind": kind, "top1": top1, "top5": None, "params": "{}"}


@pytest.fixture
def sweep(make_run: Callable[..., Path]) -> Path:
    k = 64
    make_run(
        "all-s0",
        queue_size=k,
        seed=0,
        evals=[ev("knn", 3, 0.5), ev("knn", 7, 0.75), ev("linear", 7, 0.625)],
    )
    make_run("all-s1", queue_size=k, seed=1, evals=[ev("knn", 7, 0.625), ev("knn", 3, 0.875)])
    make_run(
        "hard-s0",
        queue_size=k,
        band="0-5",
        seed=0,
        # two kNN evaluations at the last step are averaged: 0.375
        evals=[
            ev("knn", 7, 0.5),
            ev("knn", 7, 0.25),
            ev("linear", 3, 0.75),
            ev("linear", 7, 0.5),
        ],
    )
    make_run("hard-s1", queue_size=k, band="0-5", seed=1, evals=[ev("knn", 7, 0.625)])
    make_run("hard-s2", queue_size=k, band="0-5", seed=2, evals=[ev("knn", 7, 0.5)])
    return make_run("rand-s0", queue_size=k, band="random:5", seed=0, evals=[ev("knn", 7, 0.5)])


def ablation_of(path: Path):  # type: ignore[no-untyped-def]
    return band_ablation(logs.connect(logs.find_runs([path])))


def test_per_run_final_best_and_linear(sweep: Path) -> None:
    result = ablation_of(sweep.parent)
    assert result.runs.columns == list(RUN_COLUMNS)
    rows = {r["run"]: r for r in result.runs.iter_rows(named=True)}
    assert result.runs["run"].to_list() == [
        "all-s0",
        "all-s1",
        "hard-s0",
        "hard-s1",
        "hard-s2",
        "rand-s0",
    ]
    expect = {
        # run: (knn final, knn best, linear latest)
        "all-s0": (0.75, 0.75, 0.625),
        "all-s1": (0.625, 0.875, None),
        "hard-s0": (0.375, 0.375, 0.5),
        "hard-s1": (0.625, 0.625, None),
        "hard-s2": (0.5, 0.5, None),
        "rand-s0": (0.5, 0.5, None),
    }
    for run, (final, best, linear) in expect.items():
        assert (rows[run]["knn_top1"], rows[run]["knn_top1_best"]) == (final, best)
        assert rows[run]["linear_top1"] == linear
        assert rows[run]["knn_step"] == 7
    assert rows["hard-s0"]["kept_fraction"] == 4 / 64  # ceil(5 * 64 / 100) = 4 of 64
    assert rows["rand-s0"]["band"] == "random:5"


def test_per_band_means_stds_and_differences(sweep: Path) -> None:
    result = ablation_of(sweep.parent)
    assert result.bands.columns == list(BAND_COLUMNS)
    assert result.bands["band"].to_list() == ["0-100", "0-5", "random:5"]
    b = {r["band"]: r for r in result.bands.iter_rows(named=True)}

    # 0-100: kNN 0.75, 0.625; best 0.75, 0.875; linear 0.625 only
    assert b["0-100"]["n_seeds"] == 2 and b["0-100"]["n_runs"] == 2
    assert b["0-100"]["knn_top1_mean"] == pytest.approx(0.6875)
    assert b["0-100"]["knn_top1_std"] == pytest.approx(0.125 / math.sqrt(2))
    assert b["0-100"]["knn_top1_best_mean"] == pytest.approx(0.8125)
    assert b["0-100"]["diff_from_all"] == pytest.approx(0.0)
    assert b["0-100"]["n_linear"] == 1
    assert b["0-100"]["linear_top1_mean"] == pytest.approx(0.625)
    assert b["0-100"]["linear_top1_std"] is None  # one value: no sample std

    # 0-5: kNN 0.375, 0.625, 0.5 -> mean 0.5, squares 2 * 0.125^2 / (3 - 1) -> std 0.125
    assert b["0-5"]["n_seeds"] == 3
    assert b["0-5"]["knn_top1_mean"] == pytest.approx(0.5)
    assert b["0-5"]["knn_top1_std"] == pytest.approx(0.125)
    assert b["0-5"]["diff_from_all"] == pytest.approx(0.5 - 0.6875)
    assert b["0-5"]["linear_top1_mean"] == pytest.approx(0.5)
    assert b["0-5"]["linear_diff_from_all"] == pytest.approx(0.5 - 0.625)
    assert b["0-5"]["kept_fraction"] == pytest.approx(4 / 64)

    # random:5: one seed
    assert b["random:5"]["n_seeds"] == 1
    assert b["random:5"]["knn_top1_std"] is None
    assert b["random:5"]["diff_from_all"] == pytest.approx(-0.1875)
    assert b["random:5"]["linear_top1_mean"] is None
    assert b["random:5"]["linear_diff_from_all"] is None

    assert result.has_reference and result.has_linear
    assert result.warnings == ()


def test_to_dict_is_json_ready(sweep: Path) -> None:
    d = ablation_of(sweep.parent).to_dict()
    assert d["reference"] == "0-100"
    assert {"run", "band", "kept_fraction", "knn_top1", "linear_top1"} <= set(d["runs"][0])
    assert {
        "band",
        "kept_fraction",
        "n_seeds",
        "knn_top1_mean",
        "knn_top1_std",
        "knn_top1_best_mean",
        "linear_top1_mean",
        "linear_top1_std",
        "diff_from_all",
    } <= set(d["bands"][0])


def test_without_the_reference_band_differences_are_null(make_run: Callable[..., Path]) -> None:
    make_run("h", queue_size=64, band="0-5", evals=[ev("knn", 1, 0.5)])
    run = make_run("e", queue_size=64, band="5-100", evals=[ev("knn", 1, 0.75)])
    result = ablation_of(run.parent)
    assert result.bands["band"].to_list() == ["5-100", "0-5"]
    assert result.bands["diff_from_all"].to_list() == [None, None]
    assert not result.has_reference and not result.has_linear
    assert any("no 0-100 run" in w for w in result.warnings)


def test_comparability_warnings(make_run: Callable[..., Path]) -> None:
    make_run("a", queue_size=64, evals=[ev("knn", 1, 0.5)], status="interrupted")
    make_run("b", queue_size=64, evals=[ev("knn", 1, 0.5)])  # seed 0 again
    run = make_run("c", queue_size=64, band="0-5", seed=3)  # no evaluation at all
    result = ablation_of(run.parent)
    text = " | ".join(result.warnings)
    assert "not finished (accuracy may be from an early epoch): a |" in text
    assert "band 0-100 has seed 0 more than once: a, b" in text
    assert "no kNN evaluation (left out of the kNN means): c" in text
    row = result.bands.filter(result.bands["band"] == "0-5").row(0, named=True)
    assert row["n_runs"] == 1 and row["n_seeds"] == 0 and row["knn_top1_mean"] is None


def test_band_order() -> None:
    k = 1000
    specs = ["5-100", "random:5", "0-5", "50-55", "0-100", "0.1-100"]
    ordered = sorted(specs, key=lambda s: band_order_key(s, parse_band(s).kept_fraction(k)))
    assert ordered == ["0-100", "0.1-100", "5-100", "0-5", "50-55", "random:5"]
