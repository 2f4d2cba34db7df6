"""``hardstat analyze consistency``: JSON keys, the table report, files written, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from clirun import invoke, runner
from simlogs import SimSpec, simulate

from hardstat.cli import app

SPEC = SimSpec(n_images=1000, batch=32, queue=256, every=8, logged_steps=30, queries=8)
FAST = ["--permutations", "99", "--bootstrap", "50", "--no-shuffle-check"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cons") / "sweep"
    spec = SPEC.scenario("C", 0.15)
    simulate(spec, 0, root, "s0", world=5)
    simulate(spec, 1, root, "s1", world=5)
    return root


def test_json_report(runs: Path) -> None:
    result = invoke("analyze", "consistency", runs / "s0", "-f", "json", *FAST)
    assert result.exit_code == 0, result.output
    d = json.loads(result.stdout)
    assert d["runs"] == ["s0"] and d["band"] == "0-5" and d["queue_size"] == 256
    assert d["p_value"] == d["persistence"]["p_value"] == pytest.approx(0.01)
    assert d["persistence"]["statistic"] > 0 and d["icc_between_key"] > 0
    assert d["n_keys"] > d["n_negatives"] > 0
    assert d["across_runs"] is None
    assert "counting keys" in result.stderr  # progress on stderr, results on stdout


def test_table_report_and_files(runs: Path, tmp_path: Path) -> None:
    out, neg = tmp_path / "c.png", tmp_path / "neg.parquet"
    result = invoke("analyze", "consistency", runs / "s0", "--out", out, "--negatives", neg, *FAST)
    assert result.exit_code == 0, result.output
    text = result.stdout
    order = [text.index(w) for w in ("ICC within key", "persistence (C6)", "diagnostics")]
    assert order == sorted(order)  # effect sizes first, diagnostics last
    assert "(one-sided)" in text and "99 permutations" in text
    assert out.read_bytes()[:4] == b"\x89PNG"
    table = pl.read_parquet(neg)
    assert table.columns == [
        "neg_id",
        "label",
        "n_keys",
        "mean_centred",
        "effect",
        "z",
        "p",
        "q",
        "call",
    ]
    assert table.height == 1000


def test_two_runs_and_against(runs: Path) -> None:
    both = invoke("analyze", "consistency", runs, "-f", "json", *FAST)
    assert both.exit_code == 0, both.output
    d = json.loads(both.stdout)
    assert d["runs"] == ["s0", "s1"] and d["across_runs"]["mode"] == "runs"
    against = invoke(
        "analyze", "consistency", runs / "s0", "--against", runs / "s1", "-f", "json", *FAST
    )
    a = json.loads(against.stdout)
    assert a["across_runs"]["statistic"] == pytest.approx(d["across_runs"]["statistic"])
    assert a["across_runs"]["p_value"] == pytest.approx(0.01)
    assert a["persistence"]["per_run"][0]["run"] == "s0"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--hard-band", "random:5"], "keeps random negatives"),
        (["--band", "0-5;9"], "malformed band"),
        (["--band", "0-100"], "keeps every negative"),
        (["--fdr", "2"], "between 0 and 1"),
        (["--permutations", "10"], "--permutations 10"),
        (["--bootstrap", "3"], "--bootstrap 3"),
        (["--min-keys", "1"], "--min-keys 1"),
        (["--epochs", "2,2"], "one epoch twice"),
        (["--epochs", "40,41"], "no pairs"),
        (["--out", "chart.gif"], "cannot write a chart"),
        (["--negatives", "neg.txt"], "cannot write the negatives"),
        (["--min-keys", "40"], "no negative has 40 keys"),
    ],
)
def test_bad_options_exit_1_with_one_line(runs: Path, args: list[str], message: str) -> None:
    result = invoke("analyze", "consistency", runs / "s0", *FAST, *args)
    assert result.exit_code == 1, result.output
    assert result.stdout == ""
    lines = [x for x in result.stderr.strip().splitlines() if not x.endswith("...")]
    assert len(lines) == 1 and lines[0].startswith("Error: ") and message in lines[0], lines


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
        ["--permutations", "many"],
    ],
)
def test_usage_errors_exit_2(runs: Path, args: list[str]) -> None:
    result = invoke("analyze", "consistency", runs / "s0", *args)
    assert result.exit_code == 2, result.output


OPTIONS = (
    "--against",
    "--epochs",
    "--hard-band",
    "--fdr",
    "--min-keys",
    "--permutations",
    "--bootstrap",
    "--seed",
    "--no-shuffle-check",
    "--format",
    "--chart",
    "--negatives",
)


def test_help_teaches() -> None:
    wide = runner.invoke(app, ["analyze", "consistency", "--help"], env={"COLUMNS": "240"})
    assert wide.exit_code == 0
    text = " ".join(wide.stdout.split())
    for word in (*OPTIONS, "Self-negatives", "key_step", "stratum", "permutes"):
        assert word in text, word


def test_docs_describe_every_option() -> None:
    docs = (Path(__file__).parents[2] / "docs" / "analyses.md").read_text()
    section = docs.split("## Consistency of hardness")[1].split("\n## ")[0]
    for word in OPTIONS:
        assert word in section, word
    for reference in ("Tarone 1979", "Benjamini & Hochberg 1995", "Phipson & Smyth 2010"):
        assert reference in section
