"""``hardstat analyze semantic``: table and JSON output, chart files, usage errors, no corpus."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import nltk
import numpy as np
import pyarrow as pa
import pytest
from runlogs import write_run
from typer.testing import CliRunner

from hardstat.classes import ClassInfo
from hardstat.cli import app

runner = CliRunner()


def invoke(*args: Any):  # type: ignore[no-untyped-def]
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture
def no_corpus(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(nltk.data, "path", [])
    monkeypatch.delenv("NLTK_DATA", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


def pairs(rows: list[tuple[int, int, int | None, int]]) -> dict[str, Any]:
    step, query, neg, rank = zip(*rows, strict=True)
    return {
        "step": np.array(step, np.int32),
        "query_id": np.array(query, np.int32),
        "neg_id": pa.array(neg, pa.int32()),
        "rank": np.array(rank, np.int32),
        "similarity": np.zeros(len(rows), np.float16),
        "in_band": np.ones(len(rows), bool),
    }


@pytest.fixture
def cifar_run(tmp_path: Path) -> Path:
    """A CIFAR-10 run, K = 8: two cat queries whose hardest negatives are cats, then dogs,
    then trucks (sample labels: 0-3 cat, 4-7 dog, 8-11 truck)."""
    labels = np.array([3] * 4 + [5] * 4 + [9] * 4)
    order = {0: [1, 2, 4, 5, 6, 8, 9, 10], 3: [1, 2, 7, 4, 5, 11, 8, 9]}
    rows = [(0, q, n, r) for q, negs in order.items() for r, n in enumerate(negs, start=1)]
    return write_run(tmp_path, "c10", queue_size=8, pairs=pairs(rows), labels=labels)


def test_table(cifar_run: Path, no_corpus: None) -> None:
    result = invoke("analyze", "semantic", cifar_run, "--bins", "0,25,50,100", "-f", "table")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert out.startswith("Wu–Palmer similarity of query and negative classes (shipped table")
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("bin %"))
    assert lines[header].split()[:3] == ["bin", "%", "ranks"]
    # bin 0-25 = ranks 1-2: four cat negatives (similarity 1, same class)
    assert lines[header + 2].split()[:5] == ["0–25", "1–2", "4", "1.0000", "[1.0000,"]
    assert "Spearman rho(rank, similarity) = " in out
    assert "without same-class pairs (12 pairs)" in out
    assert result.stderr == ""


def test_json_keys(cifar_run: Path, no_corpus: None) -> None:
    result = invoke("analyze", "semantic", cifar_run, "--format", "json", "--measure", "path")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    for key in (
        "measure", "bins", "spearman_rho", "p_value", "spearman_rho_excluding_same_class",
        "p_value_excluding_same_class", "p_value_analytic", "permutations", "bootstrap",
        "similarity_source", "n_pairs",
    ):  # fmt: skip
        assert key in data
    assert data["measure"] == "path" and data["permutations"] == 1000
    assert data["similarity_source"] == "shipped table cifar10"
    assert [(b["lo"], b["hi"]) for b in data["bins"]][:3] == [(0, 0.1), (0.1, 1), (1, 5)]
    for b in data["bins"]:
        assert {"n_pairs", "mean_similarity", "same_class_fraction", "ci_lo", "ci_hi"} <= set(b)
    first = data["bins"][0]  # K = 8: the 0-0.1 bin is rank 1, two cat negatives
    assert (first["n_pairs"], first["mean_similarity"], first["same_class_fraction"]) == (2, 1, 1)
    assert data["spearman_rho"] < 0 and data["n_pairs"] == 16


@pytest.mark.parametrize("suffix", [".png", ".json", ".html"])
def test_chart_file(cifar_run: Path, tmp_path: Path, suffix: str, no_corpus: None) -> None:
    out = tmp_path / f"semantic{suffix}"
    result = invoke("analyze", "semantic", cifar_run, "--permutations", "0", "--out", out)
    assert result.exit_code == 0, result.output
    assert out.stat().st_size > 1000 and f"wrote {out}" in result.stderr
    if suffix == ".json":
        assert len(json.loads(out.read_text())["vconcat"]) == 2


def test_usage_errors_exit_2(cifar_run: Path, tmp_path: Path) -> None:
    for args in (
        ["--permutations", "50"],
        ["--bins", "5,1"],
        ["--bins", "0"],
        ["--measure", "jcn"],
        ["--bootstrap", "-1"],
        ["--out", tmp_path / "x.pdf"],
    ):
        result = invoke("analyze", "semantic", cifar_run, *args)
        assert result.exit_code == 2, (args, result.output)
    assert not (tmp_path / "x.pdf").exists()


def test_errors_are_one_line(tmp_path: Path, no_corpus: None) -> None:
    missing = invoke("analyze", "semantic", tmp_path / "nope")
    assert missing.exit_code == 1 and missing.stderr.startswith("Error: ")
    assert missing.stderr.count("\n") == 1
    # classes that are not CIFAR's need the WordNet corpus
    classes = (ClassInfo(0, "piano", "piano.n.01"), ClassInfo(1, "violin", "violin.n.01"))
    run = write_run(
        tmp_path, "other", queue_size=2, pairs=pairs([(0, 0, 1, 1), (0, 0, 2, 2)]),
        labels=np.array([0, 1, 0]), classes=classes,
    )  # fmt: skip
    result = invoke("analyze", "semantic", run)
    assert result.exit_code == 1 and result.stderr.count("\n") == 1
    assert result.stderr.startswith("Error: WordNet 3.0 for NLTK not found")
    assert "hardstat wordnet install --from /usr/share/wordnet" in result.stderr


def test_help_documents_the_command() -> None:
    result = invoke("analyze", "semantic", "--help")
    assert result.exit_code == 0
    for word in ("--measure", "--bins", "--bootstrap", "--permutations", "--format", "--out"):
        assert word in result.stdout


def test_docs_describe_every_option() -> None:
    docs = (Path(__file__).parents[2] / "docs" / "analyses.md").read_text()
    section = docs.split("## Semantic similarity of hard negatives")[1].split("\n## ")[0]
    wide = runner.invoke(app, ["analyze", "semantic", "--help"], env={"COLUMNS": "240"})
    help_text = " ".join(wide.stdout.split())
    for word in ("--measure", "--bins", "--bootstrap", "--permutations", "--seed", "--format",
                 "--out"):  # fmt: skip
        assert word in help_text and word in section, word
    for command, options in (
        ("install", ("--from", "--target", "--force")),
        ("check", ()),
        ("tables", ("--out-dir",)),
    ):
        wide = runner.invoke(app, ["wordnet", command, "--help"], env={"COLUMNS": "240"})
        assert f"hardstat wordnet {command}" in section
        for word in options:
            assert word in " ".join(wide.stdout.split()) and word in section, word
