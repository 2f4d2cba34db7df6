"""``hardstat report``: writes the HTML, path on stdout, progress on stderr, errors exit 1."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from clirun import invoke
from runlogs import write_run


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


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--permutations", "50"], "--permutations 50: give 0"),
        (["--permutations", "-5"], "--permutations -5: give 0"),
        (["--bootstrap", "-1"], "--bootstrap -1: give 0"),
    ],
)
def test_a_bad_value_is_the_same_error_in_report_and_semantic(
    sweep: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    report = invoke("report", sweep, "--html", tmp_path / "r.html", *args)
    semantic = invoke("analyze", "semantic", sweep, *args)
    for result in (report, semantic):
        assert result.exit_code == 1, result.output
        assert result.stderr.startswith(f"Error: {message}") and result.stderr.count("\n") == 1
    assert report.stderr == semantic.stderr
    assert not (tmp_path / "r.html").exists()


def test_html_names_the_report_and_out_still_works(sweep: Path, tmp_path: Path) -> None:
    both = invoke("report", sweep, "--html", tmp_path / "a.html", "--out", tmp_path / "b.html")
    assert both.exit_code == 2 and "--html" in both.output
    assert invoke("report", sweep).exit_code == 2 and "--html" in invoke("report", sweep).output
    assert "--html" in invoke("report", "--help").stdout


def test_no_runs_exit_1(tmp_path: Path) -> None:
    result = invoke("report", tmp_path / "missing", "--out", tmp_path / "r.html")
    assert result.exit_code == 1
    assert "does not exist" in result.stderr


def test_usage_errors_exit_2(sweep: Path, tmp_path: Path) -> None:
    assert invoke("report", sweep).exit_code == 2  # --out is required
    result = invoke("report", sweep, "--out", tmp_path / "r.html", "--measure", "cosine")
    assert result.exit_code == 2


# -- faults: damaged logs, hostile data, images from elsewhere, a full disk ---------------------
def test_damaged_pages_fail_the_report(sweep: Path, tmp_path: Path) -> None:
    """A file whose footer reads but whose pages do not: the report exits 1 like every other
    reader, instead of putting the error inside the HTML."""
    bad = next((sweep / "all-s0" / "pairs").glob("*.parquet"))
    data = bad.read_bytes()
    footer = int.from_bytes(data[-8:-4], "little")
    lo, hi = 4, len(data) - 8 - footer
    bad.write_bytes(data[:lo] + b"\xff" * (hi - lo) + data[hi:])
    out = tmp_path / "r.html"
    result = invoke("report", sweep, "--out", out, "--permutations", 0, "--bootstrap", 0)
    assert result.exit_code == 1, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1 and str(bad) in errors[0] and "Traceback" not in result.output
    assert not out.exists()


def test_markup_in_class_and_run_names_is_escaped(tmp_path: Path) -> None:
    from hardstat.classes import ClassInfo

    classes = tuple(
        ClassInfo(i, f"<img src=x onerror=alert({i})>&\x1b[31m", None, None) for i in range(10)
    )
    rng = np.random.default_rng(1)
    queue, queries, steps = 20, 4, 6
    n = queue * queries * steps
    pairs = {
        "step": np.repeat(np.arange(steps), queries * queue).astype(np.int32),
        "query_id": np.repeat(rng.integers(0, 30, steps * queries), queue).astype(np.int32),
        "neg_id": np.concatenate([rng.permutation(30)[:queue] for _ in range(steps * queries)]),
        "rank": np.tile(np.arange(1, queue + 1), steps * queries).astype(np.int32),
        "similarity": np.zeros(n, np.float16),
        "in_band": np.ones(n, bool),
    }
    labels = (np.arange(30) % 10).astype(np.int16)
    run = write_run(
        tmp_path, "<b>run</b>", queue_size=queue, pairs=pairs, labels=labels, classes=classes
    )
    out = tmp_path / "r.html"
    result = invoke("report", run, "--out", out, "--permutations", 0, "--bootstrap", 0)
    assert result.exit_code == 0, result.output
    page = out.read_text()
    assert "<img src=x" not in page and "<b>run</b>" not in page
    assert "&lt;b&gt;run&lt;/b&gt;" in page


def _npz(path: Path, n: int = 30) -> np.ndarray:
    images = np.random.default_rng(3).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, images=images, labels=(np.arange(n) % 10).astype(np.int16))
    return images


def _point_at(run: Path, spec: str) -> None:
    import json

    manifest = json.loads((run / "manifest.json").read_text())
    manifest["dataset"]["spec"] = spec
    (run / "manifest.json").write_text(json.dumps(manifest))


def test_images_come_only_from_a_named_dataset_or_the_run(sweep: Path, tmp_path: Path) -> None:
    """A manifest that names a file elsewhere (a colleague's, or /home/you/secret.npz) does
    not make the report embed it; --dataset or a file inside the run does."""
    secret = tmp_path / "elsewhere" / "secret.npz"
    _npz(secret)
    run = sweep / "all-s0"
    _point_at(run, f"npz:{secret}")
    args = ["--permutations", 0, "--bootstrap", 0, "--thumbnails", 2, "--band", "0-50"]
    out = tmp_path / "r.html"
    result = invoke("report", run, "--out", out, *args)
    assert result.exit_code == 0, result.output
    page = out.read_text()
    assert "data:image/png;base64" not in page.split('id="gallery"')[1]
    assert "outside the runs" in page and "--dataset" in page
    result = invoke("report", run, "--out", out, *args, "--dataset", f"npz:{secret}")
    assert result.exit_code == 0, result.output
    gallery = out.read_text().split('id="gallery"')[1]
    assert f"Images from {secret} (--dataset)." in gallery and "outside the runs" not in gallery
    inside = run / "images" / "train.npz"
    _npz(inside)
    _point_at(run, f"npz:{inside}")
    result = invoke("report", run, "--out", out, *args)
    assert result.exit_code == 0, result.output
    assert "inside the run" in out.read_text()


def test_disk_full_while_writing_the_report(
    sweep: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    out = tmp_path / "r.html"
    out.write_text("previous report")

    def full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    result = invoke("report", sweep, "--out", out, "--permutations", 0, "--bootstrap", 0)
    assert result.exit_code == 1 and "No space left on device" in result.stderr
    assert out.read_text() == "previous report"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.html", "sweep"]
