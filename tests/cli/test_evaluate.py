import json
from pathlib import Path

import duckdb
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
