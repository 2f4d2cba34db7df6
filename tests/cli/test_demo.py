"""``hardstat demo``: trains, evaluates, analyses and reports offline (slow: a whole run)."""

from pathlib import Path
from typing import Any

import duckdb
import pytest
from typer.testing import CliRunner

from hardstat.cli import app

pytest.importorskip("torch")  # the demo trains
pytestmark = pytest.mark.slow  # deselect with -m 'not slow'; .ci/run runs it

runner = CliRunner()


def test_demo_trains_analyses_and_reports_offline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hardstat.analysis import consistency, semantic

    calls = {"consistency": 0, "semantic": 0}
    for module, name in ((consistency, "consistency"), (semantic, "semantic")):
        original = getattr(module, name)

        def counted(*a: Any, _f: Any = original, _n: str = name, **k: Any) -> Any:
            calls[_n] += 1
            return _f(*a, **k)

        monkeypatch.setattr(module, name, counted)
    # 3 epochs: every image has had three keys, so the consistency test and its calls can run
    result = runner.invoke(
        app, ["demo", "--out", str(tmp_path), "--name", "d", "--epochs", "3", "-q"]
    )
    assert result.exit_code == 0, result.output
    # collect, then render: the report reuses the demo's results (issue #12)
    assert calls == {"consistency": 1, "semantic": 1}
    run = tmp_path / "d"
    report = run / "analysis" / "report.html"
    assert result.stdout.strip() == str(report)
    for name in ("consistency.png", "semantic.png", "consistency.json", "semantic.json"):
        assert (run / "analysis" / name).stat().st_size > 0
    html = report.read_text()
    assert "Does hardness persist with the image?" in html
    # the kNN monitor and the linear probe the terminal printed are in the report too
    assert "<h2>Downstream accuracy</h2>" in html and "Synthetic stand-ins" not in html
    linear = duckdb.sql(
        f"SELECT top1 FROM '{run}/evals/*.parquet' WHERE kind = 'linear'"
    ).fetchall()[0][0]
    assert f'<td class="num">{100 * linear:.2f}</td>' in html
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


def test_demo_help_shows_its_defaults() -> None:
    text = " ".join(runner.invoke(app, ["demo", "--help"], env={"COLUMNS": "240"}).stdout.split())
    assert "demo-YYYYMMDD-HHMMSS" in text and "(default: demo-)" not in text
    assert "the demo preset's 15" in text and "--runs-dir" in text
