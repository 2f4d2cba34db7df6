"""band_ablation against hand-computed values (accuracies are float32-exact dyadic numbers),
and its paired contrasts on simulated sweeps with known effects."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from hardstat.analysis import logs
from hardstat.analysis.ablation import (
    BAND_COLUMNS,
    CONTRAST_COLUMNS,
    PAIR_COLUMNS,
    RUN_COLUMNS,
    band_ablation,
    band_order_key,
    paired_contrasts,
    verdict,
)
from hardstat.bands import parse_band
from hardstat.errors import ConfigError, LogError

K = 64
TINY = 2.0**-9  # 0.001953125: float32-exact


def ev(kind: str, step: int, top1: float) -> dict[str, object]:
    return {"step": step, "epoch": 0, "kind": kind, "top1": top1, "top5": None, "params": "{}"}


def knn(top1: float) -> list[dict[str, object]]:
    return [ev("knn", 7, top1)]


@pytest.fixture
def sweep(make_run: Callable[..., Path]) -> Path:
    """K = 64, seeds 0-2 (final kNN top-1):

    band      s0       s1       s2      s3     paired differences from 0-100
    0-100     0.75     0.625    0.6875
    0.1-100   0.75+t   0.625-t  0.6875          +t, -t, 0   (t = 2^-9)
    5-100     0.5      0.375    0.4375          -0.25, -0.25, -0.25
    0-5       0.375*   0.5625   0.625   0.5     -0.375, -0.0625, -0.0625; s3 unpaired
    random:5  0.75                              0 (one seed)

    * two kNN evaluations at the last step, 0.5 and 0.25, averaged. 0-100 s0 also has an
    earlier, better kNN evaluation and the only linear probe.
    """
    make_run(
        "all-s0",
        queue_size=K,
        seed=0,
        evals=[ev("knn", 3, 0.875), ev("knn", 7, 0.75), ev("linear", 7, 0.625)],
    )
    make_run("all-s1", queue_size=K, seed=1, evals=[ev("knn", 7, 0.625), ev("knn", 3, 0.875)])
    make_run("all-s2", queue_size=K, seed=2, evals=knn(0.6875))
    for seed, top1 in enumerate((0.75 + TINY, 0.625 - TINY, 0.6875)):
        make_run(f"drop-s{seed}", queue_size=K, band="0.1-100", seed=seed, evals=knn(top1))
    for seed, top1 in enumerate((0.5, 0.375, 0.4375)):
        make_run(f"easy-s{seed}", queue_size=K, band="5-100", seed=seed, evals=knn(top1))
    make_run(
        "hard-s0", queue_size=K, band="0-5", seed=0, evals=[ev("knn", 7, 0.5), ev("knn", 7, 0.25)]
    )
    for seed, top1 in ((1, 0.5625), (2, 0.625), (3, 0.5)):
        make_run(f"hard-s{seed}", queue_size=K, band="0-5", seed=seed, evals=knn(top1))
    return make_run("rand-s0", queue_size=K, band="random:5", seed=0, evals=knn(0.75))


def ablation_of(path: Path, **kw):  # type: ignore[no-untyped-def]
    return band_ablation(logs.connect(logs.find_runs([path])), **kw)


def test_per_run_values(sweep: Path) -> None:
    result = ablation_of(sweep.parent)
    assert result.runs.columns == list(RUN_COLUMNS)
    rows = {r["run"]: r for r in result.runs.iter_rows(named=True)}
    assert rows["all-s0"]["knn_top1"] == 0.75  # the final kNN, not the best (0.875)
    assert rows["all-s1"]["knn_top1"] == 0.625
    assert rows["hard-s0"]["knn_top1"] == 0.375  # two evaluations at step 7 averaged
    assert rows["all-s0"]["linear_top1"] == 0.625 and rows["all-s1"]["linear_top1"] is None
    assert rows["hard-s0"]["kept_fraction"] == 4 / K  # ceil(5 * 64 / 100) = 4 of 64
    assert result.runs["run"].to_list()[:3] == ["all-s0", "all-s1", "all-s2"]


def test_contrasts_by_hand(sweep: Path) -> None:
    result = ablation_of(sweep.parent)
    # metric: every run but one lacks a linear probe -> final kNN, and a note says why
    assert result.metric == "knn" and result.reference == "0-100"
    assert any(
        w.startswith("metric: final kNN top-1, since not every run") for w in result.warnings
    )
    c = result.contrasts
    assert c.columns == list(CONTRAST_COLUMNS)
    assert c["band"].to_list() == ["0.1-100", "5-100", "0-5", "random:5"]
    row = {r["band"]: r for r in c.iter_rows(named=True)}

    # realized fractions: K = 64; 0.1-100 keeps ranks 2..64 (ceil(0.064) = 1 removed)
    assert (row["0.1-100"]["kept"], row["0.1-100"]["removed"]) == (63, 1)
    assert (row["5-100"]["kept"], row["0-5"]["kept"], row["random:5"]["kept"]) == (60, 4, 4)

    # 0-5: d = -0.375, -0.0625, -0.0625 (seed 3 has no 0-100 partner and is left out)
    assert row["0-5"]["n_seeds"] == 3
    assert row["0-5"]["mean_diff"] == pytest.approx(-0.5 / 3)
    sd = math.sqrt(((-0.375 + 0.5 / 3) ** 2 + 2 * (-0.0625 + 0.5 / 3) ** 2) / 2)
    assert row["0-5"]["sd_diff"] == pytest.approx(sd)
    # t quantiles with 2 degrees of freedom in closed form: t_q = (2q - 1) sqrt(2 / (4q(1-q)))
    t975 = 0.95 * math.sqrt(2 / (4 * 0.975 * 0.025))
    t95 = 0.90 * math.sqrt(2 / (4 * 0.95 * 0.05))
    se = sd / math.sqrt(3)
    assert (row["0-5"]["ci95_lo"], row["0-5"]["ci95_hi"]) == pytest.approx(
        (-0.5 / 3 - t975 * se, -0.5 / 3 + t975 * se)
    )
    assert (row["0-5"]["ci90_lo"], row["0-5"]["ci90_hi"]) == pytest.approx(
        (-0.5 / 3 - t95 * se, -0.5 / 3 + t95 * se)
    )
    # two-sided t-test p with 2 df: 1 - |t| / sqrt(2 + t^2)
    t = (-0.5 / 3) / se
    p_hard = 1 - abs(t) / math.sqrt(2 + t * t)
    assert row["0-5"]["p"] == pytest.approx(p_hard)

    # 5-100: no spread, mean -0.25: the difference is certain (p = 0), equivalence is not
    assert row["5-100"]["mean_diff"] == -0.25 and row["5-100"]["sd_diff"] == 0
    assert (row["5-100"]["ci95_lo"], row["5-100"]["ci95_hi"]) == (-0.25, -0.25)
    assert row["5-100"]["p"] == 0 and row["5-100"]["tost_p"] == 1

    # 0.1-100: d = +t, -t, 0: mean 0, sd t, p = 1; TOST at 1 pp: t-stat 0.01 / (t / sqrt 3)
    assert row["0.1-100"]["mean_diff"] == 0 and row["0.1-100"]["sd_diff"] == pytest.approx(TINY)
    assert row["0.1-100"]["p"] == pytest.approx(1.0)
    t_eq = 0.01 / (TINY / math.sqrt(3))
    tost_drop = 0.5 * (1 - t_eq / math.sqrt(2 + t_eq**2))  # one-sided tail with 2 df
    assert row["0.1-100"]["tost_p"] == pytest.approx(tost_drop)

    # random:5: one paired seed: no interval, no test, inconclusive, and a note
    assert row["random:5"]["n_seeds"] == 1 and row["random:5"]["mean_diff"] == 0
    for col in ("sd_diff", "ci95_lo", "ci90_hi", "p", "p_holm", "tost_p", "tost_p_holm"):
        assert row["random:5"][col] is None
    assert any("band random:5: 1 paired seed, so no interval" in w for w in result.warnings)
    assert any("band 0-5: seed 3 without a 0-100 run" in w for w in result.warnings)

    # Holm by hand over the 3 tested contrasts (random:5 has no test):
    # t-test p: 5-100 0 (x3 = 0), 0-5 p_hard (x2), 0.1-100 1 (x1) -> running max
    assert row["5-100"]["p_holm"] == 0
    assert row["0-5"]["p_holm"] == pytest.approx(2 * p_hard)
    assert row["0.1-100"]["p_holm"] == pytest.approx(1.0)
    # TOST p: 0.1-100 smallest (x3), then 0-5 (x2), 5-100 = 1
    assert row["0.1-100"]["tost_p_holm"] == pytest.approx(3 * tost_drop)
    t_low = (-0.5 / 3 + 0.01) / se  # 0-5's TOST p is its H0: mean <= -margin test
    tost_hard = 0.5 * (1 - t_low / math.sqrt(2 + t_low**2))
    assert row["0-5"]["tost_p"] == pytest.approx(tost_hard)
    assert row["0-5"]["tost_p_holm"] == min(1.0, 2 * tost_hard) == 1.0
    assert row["5-100"]["tost_p_holm"] == 1

    assert [row[b]["verdict"] for b in c["band"]] == [
        "equivalent",  # adjusted TOST p = 3 x 0.0062 < 0.05
        "worse",
        "inconclusive",  # adjusted p = 0.37
        "inconclusive",  # one seed
    ]
    rule = result.rule()
    assert "Holm-adjusted over the 3 contrasts" in rule and "margin ±1.00 pp" in rule


def test_pairs_hold_every_per_seed_difference(sweep: Path) -> None:
    pairs = ablation_of(sweep.parent).pairs
    assert pairs.columns == list(PAIR_COLUMNS)
    hard = pairs.filter(pl.col("band") == "0-5").sort("seed")
    assert hard["seed"].to_list() == [0, 1, 2]
    assert hard["run"].to_list() == ["hard-s0", "hard-s1", "hard-s2"]
    assert hard["reference_run"].to_list() == ["all-s0", "all-s1", "all-s2"]
    assert hard["diff"].to_list() == [-0.375, -0.0625, -0.0625]
    assert pairs.height == 3 + 3 + 3 + 1


def test_per_band_table(sweep: Path) -> None:
    bands = ablation_of(sweep.parent).bands
    assert bands.columns == list(BAND_COLUMNS)
    assert bands["band"].to_list() == ["0-100", "0.1-100", "5-100", "0-5", "random:5"]
    b = {r["band"]: r for r in bands.iter_rows(named=True)}
    assert (b["0-100"]["kept"], b["0-100"]["removed"], b["0-100"]["queue_size"]) == (64, 0, 64)
    assert b["0-5"]["n_runs"] == 4 and b["0-5"]["n_knn"] == 4
    assert b["0-5"]["knn_top1_mean"] == pytest.approx((0.375 + 0.5625 + 0.625 + 0.5) / 4)
    assert b["0-100"]["n_linear"] == 1 and b["0-100"]["linear_top1_mean"] == 0.625
    assert "knn_top1_std" not in bands.columns  # no spread presented as an interval


def test_to_dict_is_json_ready(sweep: Path) -> None:
    d = ablation_of(sweep.parent, margin=0.02).to_dict()
    assert (d["reference"], d["metric"], d["margin"], d["unit"]) == ("0-100", "knn", 0.02, "seed")
    assert "Holm" in d["rule"] and d["no_contrast"] is None
    hard = next(c for c in d["contrasts"] if c["band"] == "0-5")
    assert set(hard) >= {"band", "n_seeds", "per_seed", "mean_diff", "ci95", "ci90", "verdict"}
    assert [p["diff"] for p in hard["per_seed"]] == [-0.375, -0.0625, -0.0625]
    assert hard["per_seed"][0] == {
        "seed": 0,
        "run": "hard-s0",
        "reference_run": "all-s0",
        "value": 0.375,
        "reference_value": 0.75,
        "diff": -0.375,
    }
    assert len(hard["ci95"]) == 2 and hard["ci95"][0] < hard["mean_diff"] < hard["ci95"][1]
    rand = next(c for c in d["contrasts"] if c["band"] == "random:5")
    assert rand["ci95"] is None and rand["p"] is None and rand["verdict"] == "inconclusive"


def test_metric_and_reference_choices(sweep: Path) -> None:
    linear = ablation_of(sweep.parent, metric="linear")
    assert linear.metric == "linear"
    assert linear.contrasts["n_seeds"].to_list() == [0, 0, 0, 0]  # only all-s0 has one
    assert set(linear.contrasts["verdict"]) == {"inconclusive"}
    assert any(w.startswith("no linear probe (left out") for w in linear.warnings)

    hard = ablation_of(sweep.parent, reference="0-5")
    assert hard.reference == "0-5" and hard.bands["band"][0] == "0-5"
    row = hard.contrasts.filter(pl.col("band") == "0-100").row(0, named=True)
    assert row["mean_diff"] == pytest.approx(0.5 / 3)  # the same pairs, the other way round

    with pytest.raises(ConfigError, match="no run has band 50-55"):
        ablation_of(sweep.parent, reference="50-55")
    with pytest.raises(ConfigError, match="unknown metric"):
        ablation_of(sweep.parent, metric="top5")
    with pytest.raises(ConfigError, match="margin"):
        ablation_of(sweep.parent, margin=1.5)


def test_linear_default(make_run: Callable[..., Path]) -> None:
    for seed in (0, 1):
        make_run(f"a{seed}", queue_size=K, seed=seed, evals=[*knn(0.5), ev("linear", 7, 0.75)])
        run = make_run(
            f"b{seed}", queue_size=K, band="0-5", seed=seed, evals=[*knn(0.5), ev("linear", 7, 0.5)]
        )
    result = ablation_of(run.parent)
    assert result.metric == "linear" and result.metric_label == "final linear-probe top-1"
    assert result.contrasts["mean_diff"].to_list() == [-0.25]
    assert result.warnings == ()


def test_no_contrast_is_one_line(make_run: Callable[..., Path]) -> None:
    solo = ablation_of(make_run("solo", queue_size=K, evals=knn(0.5)))
    assert solo.contrasts.height == 0 and solo.pairs.height == 0
    assert solo.no_contrast is not None and "every run has band 0-100" in solo.no_contrast
    assert solo.to_dict()["contrasts"] == []
    with pytest.raises(ConfigError, match="no run has a linear probe"):
        ablation_of(make_run("other", queue_size=K, evals=knn(0.5)), metric="linear")


def test_one_band_says_there_is_no_contrast_and_why(make_run: Callable[..., Path]) -> None:
    # one line, shared word for word by analyze bands and the report (issue #12, 4)
    solo = ablation_of(make_run("solo", queue_size=K, evals=knn(0.5)))
    assert solo.no_contrast == (
        "no contrast: every run has band 0-100 (the one run, solo); a band ablation compares "
        "runs that differ in band, paired by seed: give runs of other bands (e.g. a sweep)"
    )
    hard = make_run("hard-s1", queue_size=K, band="0-5", seed=1, evals=knn(0.5))
    make_run("hard-s2", queue_size=K, band="0-5", seed=2, evals=knn(0.5))
    both = ablation_of(hard.parent / "hard-s*")
    assert both.no_contrast is not None
    assert both.no_contrast.startswith("no contrast: every run has band 0-5 (all 2 runs);")


def test_runs_of_different_datasets_are_refused_in_one_line(
    make_run: Callable[..., Path],
) -> None:
    make_run("c10", queue_size=K, dataset="cifar10", evals=knn(0.5))
    c100 = make_run("c100", queue_size=K, band="0-5", dataset="cifar100", evals=knn(0.5))
    with pytest.raises(LogError) as e:
        ablation_of(c100.parent)
    assert str(e.value).startswith("the runs mix datasets: cifar10 (c10); cifar100 (c100);")
    assert "\n" not in str(e.value)


def test_runs_that_record_no_dataset_are_noted(make_run: Callable[..., Path]) -> None:
    # Recorder runs without a dataset name ("custom") cannot be checked to share one
    make_run("a", queue_size=K, dataset="custom", evals=knn(0.5))
    b = make_run("b", queue_size=K, band="0-5", dataset="custom", evals=knn(0.5))
    text = " | ".join(ablation_of(b.parent).warnings)
    assert "no dataset recorded (spec 'custom' or none) for a, b" in text


def test_no_reference_run(make_run: Callable[..., Path]) -> None:
    make_run("h", queue_size=K, band="0-5", evals=knn(0.5))
    result = ablation_of(make_run("e", queue_size=K, band="5-100", evals=knn(0.75)).parent)
    assert result.contrasts.height == 0 and not result.has_reference
    assert result.no_contrast is not None and "choose one with --reference" in result.no_contrast
    assert result.bands["band"].to_list() == ["5-100", "0-5"]


def test_runs_of_different_experiments_are_not_pooled(make_run: Callable[..., Path]) -> None:
    make_run("a", queue_size=K, evals=knn(0.5))
    b = make_run("b", queue_size=2 * K, band="0-5", evals=knn(0.5))
    with pytest.raises(LogError, match="the runs mix queue sizes: 64 \\(a\\); 128 \\(b\\)"):
        ablation_of(b.parent)


def test_a_seed_twice_in_one_band_is_refused(make_run: Callable[..., Path]) -> None:
    make_run("a", queue_size=K, evals=knn(0.5))
    b = make_run("b", queue_size=K, evals=knn(0.5))  # seed 0 again
    with pytest.raises(LogError, match="band 0-100 has seed 0 in more than one run \\(a, b\\)"):
        ablation_of(b.parent)


def test_comparability_notes(make_run: Callable[..., Path]) -> None:
    make_run("a", queue_size=K, evals=knn(0.5), status="interrupted")
    run = make_run("c", queue_size=K, band="0-5", seed=3)  # no evaluation at all
    text = " | ".join(ablation_of(run.parent).warnings)
    assert "not finished (accuracy may be from an early epoch): a" in text
    assert "no kNN evaluation (left out of the contrasts): c" in text


def test_band_order() -> None:
    k = 1000
    specs = ["5-100", "random:5", "0-5", "50-55", "0-100", "0.1-100", "random=5-100"]
    specs += ["random=50-55"]
    ordered = sorted(specs, key=lambda s: band_order_key(s, parse_band(s).kept_fraction(k)))
    assert ordered == [
        "0-100",
        "0.1-100",
        "5-100",
        "random=5-100",  # next to the band whose count it matches
        "0-5",
        "random:5",
        "50-55",
        "random=50-55",
    ]
    assert sorted(["0-5", "0-100"], key=lambda s: band_order_key(s, 0.5, "0-5")) == ["0-5", "0-100"]


def test_verdict_rule() -> None:
    assert verdict(0.02, 0.01, 0.9) == "better"
    assert verdict(-0.02, 0.01, 0.9) == "worse"
    assert verdict(0.003, 0.01, 0.01) == "better"  # significant, though inside the margin
    assert verdict(0.003, 0.5, 0.01) == "equivalent"
    assert verdict(0.003, 0.5, 0.2) == "inconclusive"
    assert verdict(0.0, math.nan, math.nan) == "inconclusive"


# -- simulated sweeps with known effects ---------------------------------------------------------
def _simulated_runs(rng: np.random.Generator, effects: dict[str, float], n: int) -> pl.DataFrame:
    """One simulated sweep: per seed a level shared by every band (initial weights, data order),
    plus each run's own noise; band b's true paired difference from 0-100 is effects[b]."""
    bands = {"0-100": 0.0, **effects}
    level = rng.normal(0.6, 0.02, n)  # (n,)
    acc = level + np.array(list(bands.values()))[:, None] + rng.normal(0, 0.004, (len(bands), n))
    return pl.DataFrame(
        {
            "run": [f"{b}-s{s}" for b in bands for s in range(n)],
            "band": np.repeat(list(bands), n),
            "seed": np.tile(np.arange(n), len(bands)),
            "acc": acc.ravel(),  # (bands * n,), band-major
        }
    )


def test_intervals_cover_the_true_difference_on_simulated_sweeps() -> None:
    effects = {"0.1-100": 0.0, "5-100": -0.036, "0-5": 0.01, "random:5": 0.003}
    rng = np.random.default_rng(2024)
    sims, n = 1000, 5
    covered = {b: 0 for b in effects}
    equivalent_at_margin = 0
    for _ in range(sims):
        contrasts, _, _ = paired_contrasts(_simulated_runs(rng, effects, n), "0-100", "acc")
        for row in contrasts.iter_rows(named=True):
            covered[row["band"]] += row["ci95_lo"] <= effects[row["band"]] <= row["ci95_hi"]
            # 0-5 sits exactly on the 1 pp margin: it must rarely be called equivalent
            equivalent_at_margin += row["band"] == "0-5" and row["verdict"] == "equivalent"
    for band, hits in covered.items():
        assert 0.93 <= hits / sims <= 0.97, (band, hits / sims)
    assert equivalent_at_margin / sims <= 0.05
