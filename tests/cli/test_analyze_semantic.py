"""``hardstat analyze semantic``: table and JSON output, chart files, usage errors, no corpus."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from clirun import invoke, runner
from runlogs import write_run

from hardstat.classes import ClassInfo
from hardstat.cli import app


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
    return write_run(
        tmp_path, "c10", queue_size=8, pairs=pairs(rows), labels=labels, dataset="cifar10"
    )


def test_table(cifar_run: Path, no_corpus: None) -> None:
    result = invoke("analyze", "semantic", cifar_run, "--bins", "0,25,50,100", "-f", "table")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert out.startswith("Wu–Palmer class_similarity of query and negative classes (shipped")
    lines = out.splitlines()
    # effect sizes first, then the bins, the trajectory, and the p-values last
    order = [
        next(i for i, line in enumerate(lines) if line.startswith(prefix))
        for prefix in ("Effect sizes", "By hardness bin", "Per epoch", "Spearman rho")
    ]
    assert order == sorted(order)
    assert "95% intervals: two-way bootstrap over steps" in out
    assert "conditional on each run" in out
    # K = 8: the hardest 5% is rank 1, two cats of cat queries; all ranks: 4 of 16
    excess = next(line for line in lines if line.startswith("same-class excess"))
    assert excess.split()[7:11] == ["c10", "100.00%", "25.00%", "+75.00"]
    header = next(i for i, line in enumerate(lines) if line.startswith("bin %"))
    assert lines[header].split()[:3] == ["bin", "%", "ranks"]
    # bin 0-25 = ranks 1-2: four cat negatives (same class), no different-class pair; no
    # interval: with one step and two negatives, over 10% of the replicates weigh them to 0
    assert lines[header + 2].split() == ["0–25", "1–2", "4", "100.00", "0", "—"]
    # bin 25-50 = ranks 3-4: four dogs, Wu-Palmer(cat, dog) = 0.857
    assert lines[header + 3].split()[-2:] == ["4", "0.8571"]
    assert "Spearman rho(rank, class_similarity) = " in out
    assert "without same-class pairs (12 pairs)" in out
    assert "0 self-negative pairs left out" in out
    # one logged step: the bootstrap over steps cannot carry the steps' variance
    assert result.stderr.startswith("warning: run c10 has 1 logged step(s) in the window")


def test_synthetic_classes_are_called_stand_ins_first(tmp_path: Path, no_corpus: None) -> None:
    labels = np.array([3] * 4 + [5] * 4 + [9] * 4)
    rows = [(0, 0, n, r) for r, n in enumerate([1, 2, 4, 5, 6, 8, 9, 10], start=1)]
    run = write_run(tmp_path, "s", queue_size=8, pairs=pairs(rows), labels=labels)  # synthetic
    result = invoke("analyze", "semantic", run, "--bootstrap", "0", "--permutations", "0")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("Synthetic stand-ins: run s trained on synthetic,")
    data = json.loads(invoke("analyze", "semantic", run, "-f", "json", "--bootstrap", "0").stdout)
    assert data["classes_note"].startswith("Synthetic stand-ins: run s")


def test_json_keys(cifar_run: Path, no_corpus: None) -> None:
    result = invoke("analyze", "semantic", cifar_run, "--format", "json", "--measure", "path")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    for key in (
        "measure", "bins", "contrasts", "seed_contrasts", "trajectory", "window", "resampling",
        "spearman_rho", "p_value", "spearman_rho_excluding_same_class",
        "p_value_excluding_same_class", "p_value_analytic", "permutations", "bootstrap",
        "class_similarity_source", "n_pairs", "n_self_negatives_excluded", "warnings",
    ):  # fmt: skip
        assert key in data
    assert data["measure"] == "path" and data["permutations"] == 1000
    assert data["class_similarity_source"] == "shipped table cifar10"
    assert [(b["lo"], b["hi"]) for b in data["bins"]][:3] == [(0, 0.1), (0.1, 1), (1, 5)]
    for b in data["bins"]:
        assert {"n_pairs", "same_class_fraction", "class_similarity_different_class"} <= set(b)
    first = data["bins"][0]  # K = 8: the 0-0.1 bin is rank 1, two cat negatives
    assert (first["n_pairs"], first["same_class_fraction"]) == (2, 1)
    assert first["class_similarity_different_class"] is None  # no different-class pair
    assert data["spearman_rho"] < 0 and data["n_pairs"] == 16
    assert data["contrasts"][0]["contrast"] == "same_class_excess"
    assert data["contrasts"][0]["estimate"] == pytest.approx(0.75)


def test_several_runs_and_a_window(tmp_path: Path, no_corpus: None) -> None:
    labels = np.array([3] * 4 + [5] * 4 + [9] * 4)
    order = {0: [1, 2, 4, 5, 6, 8, 9, 10], 3: [1, 2, 7, 4, 5, 11, 8, 9]}
    rows = [
        (step, q, n, r)
        for step in range(6)
        for q, negs in order.items()
        for r, n in enumerate(negs, start=1)
    ]
    epochs = [row[0] // 2 for row in rows]
    runs = []
    for seed in range(3):
        cols = {**pairs(rows), "epoch": np.array(epochs, np.int16)}
        runs.append(write_run(tmp_path, f"s{seed}", queue_size=8, pairs=cols, labels=labels))
    result = invoke("analyze", "semantic", *runs, "--epochs", "1-", "--permutations", "0")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "window: epochs 1-" in out
    assert "s0: steps 2–5 (epochs 1–2), 4 of 6 logged steps" in out
    assert "mean of 3 runs" in out and "(t)" in out
    # the trajectory covers the window's epochs, with the mean over runs
    header = next(line for line in out.splitlines() if line.startswith("epoch "))
    assert header.split() == ["epoch", "s0", "s1", "s2", "mean", "[95%", "t]"]
    bad = invoke("analyze", "semantic", *runs, "--steps", "100-")
    assert bad.exit_code == 1 and "no run has a logged step in the window" in bad.stderr


@pytest.mark.parametrize("suffix", [".png", ".json", ".html"])
def test_chart_file(cifar_run: Path, tmp_path: Path, suffix: str, no_corpus: None) -> None:
    out = tmp_path / f"semantic{suffix}"
    option = "--out" if suffix == ".json" else "--chart"  # --out: the old name, still working
    result = invoke("analyze", "semantic", cifar_run, "--permutations", "0", option, out)
    assert result.exit_code == 0, result.output
    assert out.stat().st_size > 1000 and f"wrote {out}" in result.stderr
    if suffix == ".json":  # no trajectory panel: rank 1 holds no different-class pair
        assert len(json.loads(out.read_text())["vconcat"]) == 2


def test_usage_errors_exit_2(cifar_run: Path) -> None:
    for args in (["--measure", "jcn"], ["--resampling", "pairs"], ["-f", "csv"]):
        result = invoke("analyze", "semantic", cifar_run, *args)
        assert result.exit_code == 2, (args, result.output)
        assert "Value error" not in result.output  # typer's choice errors, plainly


def test_bad_values_exit_1_with_one_line_naming_the_option(cifar_run: Path, tmp_path: Path) -> None:
    for args, flag in (
        (["--permutations", "50"], "--permutations 50"),
        (["--bins", "5,1"], "--bins 5,1"),
        (["--bins", "0"], "--bins 0"),
        (["--bootstrap", "-1"], "--bootstrap -1"),
        (["--chart", tmp_path / "x.pdf"], "x.pdf"),
        (["--out", tmp_path / "x.pdf"], "x.pdf"),
        (["--epochs", "3-1"], "--epochs"),
        (["--epochs", "x"], "--epochs"),
        (["--steps", "-4"], "--steps"),
    ):
        result = invoke("analyze", "semantic", cifar_run, *args)
        assert result.exit_code == 1, (args, result.output)
        assert result.stderr.startswith("Error: ") and result.stderr.count("\n") == 1
        assert flag in result.stderr, (args, result.stderr)
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
    for word in ("--measure", "--bins", "--bootstrap", "--permutations", "--format", "--chart",
                 "--epochs", "--steps", "--resampling"):  # fmt: skip
        assert word in result.stdout


def test_docs_describe_every_option() -> None:
    docs = (Path(__file__).parents[2] / "docs" / "analyses.md").read_text()
    section = docs.split("## Semantic similarity of hard negatives")[1].split("\n## ")[0]
    wide = runner.invoke(app, ["analyze", "semantic", "--help"], env={"COLUMNS": "240"})
    help_text = " ".join(wide.stdout.split())
    for word in ("--measure", "--bins", "--bootstrap", "--permutations", "--seed", "--format",
                 "--chart", "--epochs", "--steps", "--resampling"):  # fmt: skip
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
