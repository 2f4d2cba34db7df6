"""``hardstat analyze bands``: contrast table and JSON (per-seed values by hand), chart files,
options, notes and errors."""

from __future__ import annotations

import html
import json
import math
from pathlib import Path

import pytest
from clirun import invoke, runner
from runlogs import write_run

from hardstat.cli import app


def ev(kind: str, step: int, top1: float) -> dict[str, object]:
    return {"step": step, "epoch": 0, "kind": kind, "top1": top1, "top5": None, "params": "{}"}


# final linear-probe top-1 per (band, seed), float32-exact; every run also has a kNN result
LINEAR = {
    "0-100": (0.75, 0.625, 0.6875),
    "0-5": (0.5, 0.5625, 0.625),
    "random=5-100": (0.75, 0.5, 0.6875),
}


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    root = tmp_path / "sweep"
    for band, values in LINEAR.items():
        for seed, top1 in enumerate(values):
            evals = [ev("knn", 7, 0.5), ev("linear", 7, top1)]
            name = f"{band.replace('=', '')}-s{seed}"
            write_run(root, name, queue_size=64, band=band, seed=seed, evals=evals)
    return root


def test_json_per_seed_values_by_hand(sweep: Path) -> None:
    result = invoke("analyze", "bands", sweep, "--format", "json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    # every run has a linear probe: it is the primary metric
    assert (data["reference"], data["metric"], data["margin"]) == ("0-100", "linear", 0.01)
    assert [c["band"] for c in data["contrasts"]] == ["random=5-100", "0-5"]
    rand, hard = data["contrasts"]
    # random=5-100 minus 0-100, seed by seed: 0.75-0.75, 0.5-0.625, 0.6875-0.6875
    assert [p["diff"] for p in rand["per_seed"]] == [0.0, -0.125, 0.0]
    assert [p["run"] for p in rand["per_seed"]] == [
        "random5-100-s0",
        "random5-100-s1",
        "random5-100-s2",
    ]
    assert rand["kept"] == 60 and rand["removed"] == 4  # as many as 5-100 keeps of K = 64
    # 0-5 minus 0-100: 0.5-0.75, 0.5625-0.625, 0.625-0.6875
    assert [p["diff"] for p in hard["per_seed"]] == [-0.25, -0.0625, -0.0625]
    assert [p["reference_value"] for p in hard["per_seed"]] == [0.75, 0.625, 0.6875]
    mean = -0.375 / 3
    sd = math.sqrt(((-0.25 - mean) ** 2 + 2 * (-0.0625 - mean) ** 2) / 2)
    t975 = 0.95 * math.sqrt(2 / (4 * 0.975 * 0.025))  # t quantile, 2 df, in closed form
    assert hard["n_seeds"] == 3 and hard["mean_diff"] == pytest.approx(mean)
    assert hard["ci95"] == pytest.approx(
        [mean - t975 * sd / math.sqrt(3), mean + t975 * sd / math.sqrt(3)]
    )
    assert hard["verdict"] == rand["verdict"] == "inconclusive"
    assert hard["kept"] == 4 and hard["kept_fraction"] == 4 / 64
    assert "Holm-adjusted over the 2 contrasts" in data["rule"] and data["unit"] == "seed"
    assert data["warnings"] == [] and result.stderr == ""


def test_table(sweep: Path) -> None:
    result = invoke("analyze", "bands", sweep)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert (
        lines[0] == "final linear-probe top-1: band minus 0-100, paired by seed (percentage points)"
    )
    assert lines[1].split()[:4] == ["band", "kept", "/", "K"]
    rand, hard = lines[3], lines[4]
    assert rand.startswith("random=5-100") and "60 / 64" in rand and "4 (6.250%)" in rand
    assert "s0 +0.00, s1 -12.50, s2 +0.00" in rand
    assert "s0 -25.00, s1 -6.25, s2 -6.25" in hard and hard.split()[-1] == "inconclusive"
    assert "-12.50 [" in hard  # mean difference with its 95% interval
    assert lines[5].startswith("verdicts (p-values Holm-adjusted over the 2 contrasts")
    assert "per band (means over the band's runs" in result.stdout
    # no standard deviation shown as an interval: the only ± is the margin in the rule
    assert result.stdout.count("±") == 1 and "margin ±1.00 pp" in lines[5]
    assert "random5-100-s2" in result.stdout


def test_options(sweep: Path) -> None:
    knn = json.loads(invoke("analyze", "bands", sweep, "-f", "json", "--metric", "knn").stdout)
    assert (
        knn["metric"] == "knn" and [p["diff"] for p in knn["contrasts"][1]["per_seed"]] == [0.0] * 3
    )
    wide = json.loads(invoke("analyze", "bands", sweep, "-f", "json", "--margin", "30").stdout)
    assert wide["margin"] == 0.3
    assert [c["verdict"] for c in wide["contrasts"]] == ["equivalent", "inconclusive"]
    ref = json.loads(invoke("analyze", "bands", sweep, "-f", "json", "--reference", "0-5").stdout)
    assert ref["reference"] == "0-5" and [c["band"] for c in ref["contrasts"]] == [
        "0-100",
        "random=5-100",
    ]


@pytest.mark.parametrize("suffix", [".png", ".json", ".html"])
def test_chart_file(sweep: Path, tmp_path: Path, suffix: str) -> None:
    out = tmp_path / f"bands{suffix}"
    result = invoke("analyze", "bands", sweep, "--out", out)
    assert result.exit_code == 0, result.output
    assert out.stat().st_size > 1000 and f"wrote {out}" in result.stderr
    if suffix == ".json":
        assert json.loads(out.read_text())["layer"]


def test_one_run_gives_one_line_not_a_table(tmp_path: Path) -> None:
    write_run(tmp_path, "solo", queue_size=64, evals=[ev("knn", 7, 0.5)])
    result = invoke("analyze", "bands", tmp_path / "solo")
    assert result.exit_code == 0, result.output
    first = result.stdout.splitlines()[0]
    assert first.startswith("no contrast: every run has band 0-100")
    assert "+0.00" not in result.stdout
    # no per-band table of one band (it would repeat the run's row as a "mean")
    assert "per band" not in result.stdout and result.stdout.count("solo") == 2
    # the report says the same line (issue #12, 4)
    report = invoke(
        "report", tmp_path / "solo", "--out", tmp_path / "r.html", "--thumbnails", "0",
        "--permutations", "0", "--bootstrap", "0",
    )  # fmt: skip
    assert report.exit_code == 0, report.output
    assert html.escape(first) in (tmp_path / "r.html").read_text()
    chart = invoke("analyze", "bands", tmp_path / "solo", "--out", tmp_path / "c.png")
    assert chart.exit_code == 1 and chart.stderr.startswith("Error: no chart to write")
    assert not (tmp_path / "c.png").exists()


def test_usage_and_errors(sweep: Path, tmp_path: Path) -> None:
    bad_suffix = invoke("analyze", "bands", sweep, "--chart", tmp_path / "x.pdf")
    assert bad_suffix.exit_code == 1 and not (tmp_path / "x.pdf").exists()
    assert bad_suffix.stderr.startswith("Error: cannot write a chart to x.pdf")
    for margin in ("0", "-1", "100"):
        assert invoke("analyze", "bands", sweep, "--margin", margin).exit_code == 2
    assert invoke("analyze", "bands", sweep, "--metric", "top5").exit_code == 2
    missing = invoke("analyze", "bands", tmp_path / "nope")
    assert missing.exit_code == 1 and missing.stderr.startswith("Error: ")
    assert missing.stderr.count("\n") == 1
    ref = invoke("analyze", "bands", sweep, "--reference", "50-55")
    assert ref.exit_code == 1 and "no run has band 50-55" in ref.stderr
    assert ref.stderr.count("\n") == 1
    write_run(sweep, "other-k", queue_size=128, band="0-5", seed=7)
    mixed = invoke("analyze", "bands", sweep)
    assert mixed.exit_code == 1 and "the runs mix queue sizes" in mixed.stderr
    assert mixed.stderr.count("\n") == 1


def test_notes_go_to_stderr(tmp_path: Path) -> None:
    write_run(tmp_path, "a0", queue_size=64, evals=[ev("knn", 1, 0.5)])
    write_run(tmp_path, "h0", queue_size=64, band="0-5", evals=[ev("knn", 1, 0.5)])
    write_run(tmp_path, "h1", queue_size=64, band="0-5", seed=1, evals=[ev("knn", 1, 0.5)])
    write_run(tmp_path, "r", queue_size=64, band="random:5", status="interrupted")
    result = invoke("analyze", "bands", tmp_path)
    assert result.exit_code == 0
    assert "note: not finished" in result.stderr and "note: no kNN evaluation" in result.stderr
    assert "note: band 0-5: seed 1 without a 0-100 run of the same seed" in result.stderr
    assert "note: band 0-5: 1 paired seed, so no interval" in result.stderr
    assert "note" not in result.stdout


def test_help_states_the_rule() -> None:
    result = runner.invoke(app, ["analyze", "bands", "--help"])
    text = " ".join(result.output.replace("│", "").split())
    for word in ("--reference", "--metric", "--margin", "paired", "Holm", "TOST", "inconclusive"):
        assert word in text
