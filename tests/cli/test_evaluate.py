import json
from pathlib import Path

import duckdb
import pytest
from typer.testing import CliRunner

from hardstat.cli import app

runner = CliRunner()


def test_linear_probe_appends_to_evals(tmp_path: Path) -> None:
    r = runner.invoke(app, ["train", "--epochs", "1", "--out", str(tmp_path), "--name", "a", "-q"])
    assert r.exit_code == 0, r.output
    run = tmp_path / "a"
    result = runner.invoke(app, ["eval", str(run), "--linear", "--knn", "--epochs", "20", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert [r["kind"] for r in out] == ["knn", "linear"]
    assert all(0.0 <= r["top1"] <= 1.0 for r in out)
    rows = duckdb.sql(
        f"SELECT kind, count(*) FROM '{run}/evals/*.parquet' GROUP BY 1 ORDER BY 1"
    ).fetchall()
    assert rows == [("knn", 2), ("linear", 1)]  # one kNN from training, one of each from eval
    linear = duckdb.sql(
        f"SELECT top1 FROM '{run}/evals/*.parquet' WHERE kind = 'linear'"
    ).fetchall()[0][0]
    assert abs(linear - out[1]["top1"]) < 1e-6
    assert linear > 0.2  # 10 synthetic classes: chance is 0.1


def test_eval_errors(tmp_path: Path) -> None:
    result = runner.invoke(app, ["eval", str(tmp_path / "nope")])
    assert result.exit_code == 1 and "does not exist" in result.stderr
    (tmp_path / "run").mkdir()
    result = runner.invoke(app, ["eval", str(tmp_path / "run")])
    assert result.exit_code == 1 and "not a hardstat run" in result.stderr
    (tmp_path / "run" / "manifest.json").write_text('{"schema_version": 99}')
    result = runner.invoke(app, ["eval", str(tmp_path / "run")])
    assert result.exit_code == 1 and "schema version 99" in result.stderr


def test_eval_respects_the_run_lock_and_fails_fast(tmp_path: Path) -> None:
    from hardstat import runs

    r = runner.invoke(
        app, ["train", "--out", str(tmp_path), "--name", "a", "-q", "--stop-after", "2"]
    )
    assert r.exit_code == 0, r.output
    with runs.RunLock(tmp_path / "a"):
        result = runner.invoke(app, ["eval", str(tmp_path / "a"), "--epochs", "1"])
    assert result.exit_code == 1 and "is in use by process" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert len(list((tmp_path / "a" / "evals").glob("posthoc-*"))) == 0


def test_two_evaluations_in_the_same_second_both_keep_their_result(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import time

    r = runner.invoke(
        app, ["train", "--out", str(tmp_path), "--name", "a", "-q", "--stop-after", "2"]
    )
    assert r.exit_code == 0, r.output
    monkeypatch.setattr(time, "strftime", lambda *args: "20250101T000000")  # one frozen second
    for _ in range(2):
        result = runner.invoke(app, ["eval", str(tmp_path / "a"), "--epochs", "1"])
        assert result.exit_code == 0, result.output
    rows = duckdb.sql(
        f"SELECT count(*) FROM '{tmp_path}/a/evals/*.parquet' WHERE kind = 'linear'"
    ).fetchall()
    assert rows == [(2,)]


def test_eval_of_a_manifest_without_dataset_is_one_line(tmp_path: Path) -> None:
    r = runner.invoke(
        app, ["train", "--out", str(tmp_path), "--name", "a", "-q", "--stop-after", "1"]
    )
    assert r.exit_code == 0, r.output
    path = tmp_path / "a" / "manifest.json"
    manifest = json.loads(path.read_text())
    del manifest["dataset"]
    path.write_text(json.dumps(manifest))
    result = runner.invoke(app, ["eval", str(tmp_path / "a")])
    assert result.exit_code == 1 and "field 'dataset' is missing" in result.stderr


# -- issue 12 ------------------------------------------------------------------------------------
def test_eval_of_a_run_without_checkpoint_says_what_to_do(tmp_path: Path) -> None:
    r = runner.invoke(app, ["train", "--runs-dir", str(tmp_path), "--name", "a", "-q"])
    assert r.exit_code == 0, r.output
    (tmp_path / "a" / "checkpoints" / "last.pt").unlink()
    result = runner.invoke(app, ["eval", str(tmp_path / "a")])
    assert result.exit_code == 1 and len(result.stderr.strip().splitlines()) == 1
    assert result.stderr.startswith(f"Error: {tmp_path / 'a'} has no checkpoint to evaluate")
    assert "mv " in result.stderr and "resume" not in result.stderr


def test_eval_shows_progress_on_stderr_and_formats_its_result(tmp_path: Path) -> None:
    r = runner.invoke(app, ["train", "--runs-dir", str(tmp_path), "--name", "a", "-q"])
    assert r.exit_code == 0, r.output
    run = str(tmp_path / "a")
    result = runner.invoke(app, ["eval", run, "--epochs", "20", "-f", "json"])
    assert result.exit_code == 0, result.output
    assert [e["kind"] for e in json.loads(result.stdout)] == ["linear"]
    progress = result.stderr.splitlines()
    assert progress[0].startswith("features of ") and "linear probe: epoch 2/20" in progress
    assert progress[-1] == "linear probe: epoch 20/20" and len(progress) == 11
    quiet = runner.invoke(app, ["eval", run, "--epochs", "2", "--json", "-q"])  # the old flag
    assert quiet.exit_code == 0 and quiet.stderr == ""
    assert json.loads(quiet.stdout)[0]["kind"] == "linear"
