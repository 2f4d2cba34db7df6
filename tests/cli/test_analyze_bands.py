"""``hardstat analyze bands``: table and JSON output, chart files, notes and errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from runlogs import write_run
from typer.testing import CliRunner

from hardstat.cli import app

runner = CliRunner()


def invoke(*args: Any):  # type: ignore[no-untyped-def]
    return runner.invoke(app, [str(a) for a in args])


def ev(kind: str, step: int, top1: float) -> dict[str, object]:
    return {"step": step, "epoch": 0, "kind": kind, "top1": top1, "top5": None, "params": "{}"}


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    root = tmp_path / "sweep"
    write_run(root, "all-s0", queue_size=64, evals=[ev("knn", 7, 0.75), ev("linear", 7, 0.875)])
    write_run(root, "all-s1", queue_size=64, seed=1, evals=[ev("knn", 7, 0.625)])
    write_run(root, "hard-s0", queue_size=64, band="0-5", evals=[ev("knn", 7, 0.5)])
    write_run(root, "hard-s1", queue_size=64, band="0-5", seed=1, evals=[ev("knn", 7, 0.25)])
    return root


def test_table(sweep: Path) -> None:
    result = invoke("analyze", "bands", sweep)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split()[:4] == ["band", "kept", "%", "seeds"]
    # 0-100: (75 + 62.5) / 2 = 68.75, sample std 12.5 / sqrt(2) = 8.84
    assert lines[2].split() == [
        "0-100",
        "100",
        "2",
        "68.75",
        "±",
        "8.84",
        "68.75",
        "±",
        "8.84",
        "+0.00",
        "87.50",
        "+0.00",
    ]
    # 0-5: (50 + 25) / 2 = 37.5, std 17.68, 37.5 - 68.75 = -31.25; no linear probe
    assert lines[3].split() == [
        "0-5",
        "6.25",
        "2",
        "37.50",
        "±",
        "17.68",
        "37.50",
        "±",
        "17.68",
        "-31.25",
        "—",
        "—",
    ]
    assert "hard-s1" in result.stdout and result.stderr == ""


def test_json(sweep: Path) -> None:
    result = invoke("analyze", "bands", sweep, "--format", "json")
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert [r["run"] for r in data["runs"]] == ["all-s0", "all-s1", "hard-s0", "hard-s1"]
    assert data["runs"][0]["linear_top1"] == 0.875 and data["runs"][1]["linear_top1"] is None
    bands = {b["band"]: b for b in data["bands"]}
    assert bands["0-5"]["knn_top1_mean"] == pytest.approx(0.375)
    assert bands["0-5"]["diff_from_all"] == pytest.approx(-0.3125)
    assert bands["0-5"]["kept_fraction"] == pytest.approx(4 / 64)
    assert bands["0-100"]["linear_top1_std"] is None and bands["0-100"]["n_seeds"] == 2


@pytest.mark.parametrize("suffix", [".png", ".json", ".html"])
def test_chart_file(sweep: Path, tmp_path: Path, suffix: str) -> None:
    out = tmp_path / f"bands{suffix}"
    result = invoke("analyze", "bands", sweep, "--out", out)
    assert result.exit_code == 0, result.output
    assert out.stat().st_size > 1000 and f"wrote {out}" in result.stderr
    if suffix == ".json":
        assert json.loads(out.read_text())["layer"]


def test_usage_and_errors(sweep: Path, tmp_path: Path) -> None:
    bad_suffix = invoke("analyze", "bands", sweep, "--out", tmp_path / "x.pdf")
    assert bad_suffix.exit_code == 2 and not (tmp_path / "x.pdf").exists()
    missing = invoke("analyze", "bands", tmp_path / "nope")
    assert missing.exit_code == 1 and missing.stderr.startswith("Error: ")
    assert missing.stderr.count("\n") == 1


def test_notes_go_to_stderr(tmp_path: Path) -> None:
    write_run(tmp_path, "h", queue_size=64, band="0-5", evals=[ev("knn", 1, 0.5)])
    write_run(tmp_path, "r", queue_size=64, band="random:5", status="interrupted")
    result = invoke("analyze", "bands", tmp_path)
    assert result.exit_code == 0
    assert "note: no 0-100 run: diff_from_all is null" in result.stderr
    assert "note: not finished" in result.stderr and "note: no kNN evaluation" in result.stderr
    assert "note" not in result.stdout
