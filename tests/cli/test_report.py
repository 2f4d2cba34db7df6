"""``hardstat report``: writes the HTML, path on stdout, progress on stderr, errors exit 1."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from runlogs import write_run
from typer.testing import CliRunner

from hardstat.cli import app

runner = CliRunner()


def invoke(*args: Any) -> Any:
    return runner.invoke(app, [str(a) for a in args])


def ev(kind: str, step: int, top1: float) -> dict[str, object]:
    return {"step": step, "epoch": 0, "kind": kind, "top1": top1, "top5": None, "params": "{}"}


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    """One all-negatives run with uniformly random ranks, one 0-5 run with evals only."""
    rng = np.random.default_rng(0)
    queue, queries, steps, n_ids = 20, 4, 6, 30
    neg, qid = [], []
    for _ in range(steps):
        for _ in range(queries):
            neg.append(rng.permutation(n_ids)[:queue])
            qid.append(np.full(queue, rng.integers(n_ids)))
    n = steps * queries * queue
    pairs = {
        "step": np.repeat(np.arange(steps), queries * queue).astype(np.int32),
        "query_id": np.concatenate(qid).astype(np.int32),
        "neg_id": np.concatenate(neg).astype(np.int32),
        "rank": np.tile(np.arange(1, queue + 1), steps * queries).astype(np.int32),
        "similarity": np.zeros(n, np.float16),
        "in_band": np.ones(n, bool),
    }
    labels = (np.arange(n_ids) % 10).astype(np.int16)
    root = tmp_path / "sweep"
    write_run(
        root, "all-s0", queue_size=queue, pairs=pairs, labels=labels, evals=[ev("knn", 5, 0.75)]
    )
    write_run(root, "hard-s0", queue_size=queue, band="0-5", evals=[ev("knn", 5, 0.5)])
    return root


def test_writes_the_report_and_prints_its_path(sweep: Path, tmp_path: Path) -> None:
    out = tmp_path / "out" / "report.html"
    result = invoke("report", sweep, "--out", out, "--permutations", 0, "--bootstrap", 0)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(out)
    assert "consistency test (band 0-5)" in result.stderr
    page = out.read_text()
    assert '<section id="bands">' in page and '<section id="gallery">' in page
    assert "75.00" in page and "-25.00" in page
    assert "http://" not in page and "https://" not in page


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--out", "report.txt"], "use a file ending in .html"),
        (["--out", "r.html", "--band", "random:5"], "random"),
        (["--out", "r.html", "--permutations", "50"], "at least 200"),
    ],
)
def test_bad_options_exit_1_with_one_line(
    sweep: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    args = [a if not a.endswith((".txt", ".html")) else str(tmp_path / a) for a in args]
    result = invoke("report", sweep, *args)
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: ") and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert result.stdout == ""


def test_no_runs_exit_1(tmp_path: Path) -> None:
    result = invoke("report", tmp_path / "missing", "--out", tmp_path / "r.html")
    assert result.exit_code == 1
    assert "does not exist" in result.stderr


def test_usage_errors_exit_2(sweep: Path, tmp_path: Path) -> None:
    assert invoke("report", sweep).exit_code == 2  # --out is required
    result = invoke("report", sweep, "--out", tmp_path / "r.html", "--measure", "cosine")
    assert result.exit_code == 2
