"""``hardstat analyze consistency``: JSON keys, the table report, files written, exit codes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from runlogs import write_run
from typer.testing import CliRunner

from hardstat.cli import app

runner = CliRunner()
K = 64
N_IDS = 200
HARD = [3, 7, 11]


def invoke(*args: Any):  # type: ignore[no-untyped-def]
    return runner.invoke(app, [str(a) for a in args])


def pairs_for(seed: int, steps: int = 30, queries: int = 8) -> dict[str, np.ndarray]:
    """Rows in rank order; negatives HARD are always ranked first, the rest at random."""
    rng = np.random.default_rng(seed)
    prop = np.zeros(N_IDS)
    prop[HARD] = 10.0
    neg, qid, step = [], [], []
    for s in range(steps):
        ids = rng.permutation(N_IDS)[:K]
        score = prop[ids][None, :] + rng.standard_normal((queries, K))
        neg.append(ids[np.argsort(-score, axis=1)].ravel())
        qid.append(np.repeat(rng.choice(N_IDS, queries, replace=False), K))
        step.append(np.full(queries * K, s))
    n = steps * queries * K
    return {
        "step": np.concatenate(step).astype(np.int32),
        "epoch": (np.concatenate(step) // 10).astype(np.int16),
        "query_id": np.concatenate(qid).astype(np.int32),
        "neg_id": np.concatenate(neg).astype(np.int32),
        "rank": np.tile(np.arange(1, K + 1, dtype=np.int32), n // K),
        "similarity": np.zeros(n, np.float16),
        "in_band": np.ones(n, bool),
    }


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cons") / "sweep"
    labels = (np.arange(N_IDS) % 10).astype(np.int16)
    write_run(root, "s0", queue_size=K, pairs=pairs_for(0), labels=labels)
    write_run(root, "s1", queue_size=K, pairs=pairs_for(1), labels=labels, seed=1)
    return root


def test_json_report(runs: Path) -> None:
    result = invoke(
        "analyze", "consistency", runs / "s0", "--format", "json", "--permutations", "200"
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    for key in (
        "n_negatives",
        "n_pairs",
        "band",
        "dispersion_ratio",
        "p_value",
        "log10_p_value",
        "statistic",
        "df",
        "tarone_z",
        "n_consistently_hard",
        "n_consistently_easy",
        "hard_ids",
        "easy_ids",
        "permutation",
        "class_conditional",
        "temporal",
        "rate_histogram",
        "z_histogram",
        "notes",
    ):
        assert key in data, key
    assert data["band"] == "0-5" and data["n_pairs"] == 30 * 8 * K
    assert data["p_value"] < 1e-6 and set(HARD) <= set(data["hard_ids"])
    assert data["temporal"]["mode"] == "halves" and data["temporal"]["permutations"] == 200
    assert 0.5 < data["permutation"]["dispersion_ratio"] < 1.5
    assert "counting appearances" in result.stderr  # progress goes to stderr


def test_table_report_and_files(runs: Path, tmp_path: Path) -> None:
    chart, negatives = tmp_path / "c.json", tmp_path / "neg.csv"
    result = invoke(
        "analyze",
        "consistency",
        runs / "s0",
        "--band",
        "0-10",
        "--epochs",
        "0,2",
        "--permutations",
        "100",
        "--out",
        chart,
        "--negatives",
        negatives,
    )
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert out.startswith("Consistency of hardness, band 0-10: hardest 7 of K = 64")
    for word in ("overdispersion", "X2 =", "consistently hard", "ranks shuffled", "beyond class"):
        assert word in out
    assert "persistence (epochs)" in out and "epoch 0 and epoch 2" in out
    assert "Error" not in result.output
    spec = json.loads(chart.read_text())
    assert "hconcat" in spec
    table = pl.read_csv(negatives)
    assert table.columns[:4] == ["neg_id", "label", "m", "k"]
    assert table["m"].sum() == 30 * 8 * K
    assert set(table.filter(pl.col("call") == "hard")["neg_id"].to_list()) >= set(HARD)


def test_against_another_run(runs: Path) -> None:
    result = invoke(
        "analyze",
        "consistency",
        runs / "s0",
        "--against",
        runs / "s1",
        "--format",
        "json",
        "--no-permutation-check",
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["runs"] == ["s0"] and data["permutation"] is None
    assert data["temporal"]["mode"] == "runs" and data["temporal"]["second"] == "s1"
    # a sweep directory pools its runs
    pooled = json.loads(invoke("analyze", "consistency", runs, "--format", "json").stdout)
    assert pooled["runs"] == ["s0", "s1"] and pooled["n_pairs"] == 2 * 30 * 8 * K


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--band", "random:5"], "keeps random negatives"),
        (["--band", "0-5;9"], "malformed band"),
        (["--band", "0-100"], "keeps every negative"),
        (["--fdr", "2"], "between 0 and 1"),
        (["--out", "chart.gif"], "cannot write a chart"),
        (["--negatives", "neg.txt"], "cannot write the negatives"),
    ],
)
def test_bad_options_exit_1_with_one_line(runs: Path, args: list[str], message: str) -> None:
    result = invoke("analyze", "consistency", runs / "s0", *args)
    assert result.exit_code == 1
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and message in lines[0]


def test_missing_run_and_self_against_exit_1(runs: Path, tmp_path: Path) -> None:
    result = invoke("analyze", "consistency", tmp_path / "nope")
    assert result.exit_code == 1 and "does not exist" in result.stderr
    result = invoke("analyze", "consistency", runs / "s0", "--against", runs / "s0")
    assert result.exit_code == 1 and "both analysed and the --against run" in result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["--epochs", "1"],
        ["--epochs", "a,b"],
        ["--epochs", "0,1", "--against", "x"],
        ["--format", "xml"],
        ["--permutations", "-5"],
    ],
)
def test_usage_errors_exit_2(runs: Path, args: list[str]) -> None:
    result = invoke("analyze", "consistency", runs / "s0", *args)
    assert result.exit_code == 2, result.output


def test_help_teaches() -> None:
    result = invoke("analyze", "consistency", "--help")
    assert result.exit_code == 0
    for word in ("--band", "--fdr", "--epochs", "--against", "--permutations", "--negatives"):
        assert word in result.output


def test_docs_describe_every_option() -> None:
    docs = (Path(__file__).parents[2] / "docs" / "analyses.md").read_text()
    section = docs.split("## Consistency of hardness")[1].split("\n## ")[0]
    wide = runner.invoke(app, ["analyze", "consistency", "--help"], env={"COLUMNS": "240"})
    help_text = " ".join(wide.stdout.split())
    for word in (
        "--band",
        "--fdr",
        "--epochs",
        "--against",
        "--permutations",
        "--seed",
        "--format",
        "--out",
        "--negatives",
    ):
        assert word in help_text and word in section, word
    assert "--no-permutation-check" in help_text and "--no-permutation-check" in section
    for reference in ("Cochran 1954", "Tarone 1979", "Benjamini & Hochberg 1995", "Spearman"):
        assert reference in section
