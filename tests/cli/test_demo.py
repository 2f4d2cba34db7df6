"""``hardstat demo``: trains, evaluates, analyses and reports offline (slow: a whole run)."""

from pathlib import Path

import duckdb
import pytest
from typer.testing import CliRunner

from hardstat.cli import app

pytest.importorskip("torch")  # the demo trains
pytestmark = pytest.mark.slow  # deselect with -m 'not slow'; .ci/run runs it

runner = CliRunner()


def test_demo_trains_analyses_and_reports_offline(tmp_path: Path) -> None:
    # 3 epochs: every image has had three keys, so the consistency test and its calls can run
    result = runner.invoke(
        app, ["demo", "--out", str(tmp_path), "--name", "d", "--epochs", "3", "-q"]
    )
    assert result.exit_code == 0, result.output
    run = tmp_path / "d"
    report = run / "analysis" / "report.html"
    assert result.stdout.strip() == str(report)
    for name in ("consistency.png", "semantic.png", "consistency.json", "semantic.json"):
        assert (run / "analysis" / name).stat().st_size > 0
    html = report.read_text()
    assert "Does hardness persist with the image?" in html
    assert "data:image/png;base64," in html and "https://" not in html
    kinds = duckdb.sql(f"SELECT DISTINCT kind FROM '{run}/evals/*.parquet' ORDER BY 1").fetchall()
    assert kinds == [("knn",), ("linear",)]
    assert "linear top-1" in result.stderr and str(run) in result.stderr


def test_demo_bad_epochs_is_usage_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["demo", "--out", str(tmp_path), "--epochs", "0"])
    assert result.exit_code == 2


def test_demo_name_stays_inside_out(tmp_path: Path) -> None:
    result = runner.invoke(app, ["demo", "--out", str(tmp_path / "o"), "--name", "../x"])
    assert result.exit_code == 1 and "run name" in result.stderr
    assert not any(tmp_path.iterdir())
