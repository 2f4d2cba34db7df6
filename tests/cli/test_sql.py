"""``hardstat sql``: formats, parameters, --schema, read-only refusals and one-line errors."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
from clirun import fresh_process_signals, invoke
from runlogs import write_run

from hardstat import schema


def ranked_pairs(queue_size: int, queries: int, step: int = 0) -> dict[str, np.ndarray]:
    n = queue_size * queries
    return {
        "step": np.full(n, step, np.int32),
        "query_id": np.repeat(np.arange(queries, dtype=np.int32), queue_size),
        "neg_id": np.tile(np.arange(100, 100 + queue_size, dtype=np.int32), queries),
        "rank": np.tile(np.arange(1, queue_size + 1, dtype=np.int32), queries),
        "similarity": np.tile(np.linspace(0.5, -0.5, queue_size), queries).astype(np.float16),
        "in_band": np.ones(n, bool),
    }


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
    }


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    root = tmp_path / "sweep"
    evals = [{"step": 3, "epoch": 0, "kind": "knn", "top1": 0.75, "top5": None, "params": "{}"}]
    write_run(root, "a", queue_size=8, pairs=ranked_pairs(8, 2), evals=evals)
    write_run(root, "b", queue_size=8, pairs=ranked_pairs(8, 3, step=5), band="0-50", seed=1)
    return root


def test_rows_are_tagged_with_their_run(sweep: Path) -> None:
    result = invoke(
        "sql",
        sweep / "b",
        sweep / "a",
        "SELECT run, count(*) AS n FROM pairs GROUP BY run ORDER BY run",
    )
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["run", "n"]
    assert [line.split() for line in lines[2:4]] == [["a", "16"], ["b", "24"]]
    assert lines[-1] == "(2 rows)"


def test_table_format_is_aligned_and_says_what_was_cut(sweep: Path) -> None:
    result = invoke("sql", sweep, "SELECT run, rank, similarity FROM pairs ORDER BY run, rank")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert len(lines) == 2 + 40 + 1 and lines[-1] == "(40 rows)"
    widths = {len(line) for line in lines[1:-1]}
    assert len(widths) == 1  # numbers right-aligned: every row as wide as the rule
    cut = invoke("sql", sweep, "SELECT * FROM pairs", "--limit", 5)
    assert cut.exit_code == 0
    assert len(cut.stdout.splitlines()) == 2 + 5 + 1
    assert cut.stdout.splitlines()[-1].startswith("(5 of 40 rows shown; 35 cut by --limit 5")
    everything = invoke("sql", sweep, "SELECT * FROM pairs", "--limit", 0)
    assert everything.stdout.splitlines()[-1] == "(40 rows)"


def test_csv_and_json_hold_every_row(sweep: Path) -> None:
    sql = "SELECT run, rank, similarity, in_band FROM pairs ORDER BY run, query_id, rank"
    result = invoke("sql", sweep, sql, "--format", "csv", "--limit", 1)
    assert result.exit_code == 0
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert len(rows) == 40 and rows[0] == {
        "run": "a",
        "rank": "1",
        "similarity": "0.5",
        "in_band": "true",
    }
    result = invoke("sql", sweep, sql, "-f", "json")
    data = json.loads(result.stdout)
    assert len(data) == 40 and data[0] == {
        "run": "a",
        "rank": 1,
        "similarity": 0.5,
        "in_band": True,
    }
    odd = invoke(
        "sql", sweep, "SELECT 1/0 AS inf, NULL AS nothing, [1, 2] AS l FROM runs", "-f", "json"
    )
    assert json.loads(odd.stdout) == [{"inf": None, "nothing": None, "l": [1, 2]}] * 2
    empty = invoke("sql", sweep, "SELECT run FROM runs WHERE false", "-f", "json")
    assert json.loads(empty.stdout) == []
    empty_csv = invoke("sql", sweep, "SELECT run, seed FROM runs WHERE false", "-f", "csv")
    assert empty_csv.stdout.strip().replace('"', "") == "run,seed"


def test_json_fast_and_general_paths_agree(sweep: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sql = "SELECT *, 1/0 AS inf, NULL AS nothing FROM pairs ORDER BY run, query_id, rank"
    fast = invoke("sql", sweep, sql, "-f", "json")
    monkeypatch.setattr("hardstat.cli.sql._polars_json_ok", lambda t: False)
    general = invoke("sql", sweep, sql, "-f", "json")
    assert fast.exit_code == general.exit_code == 0
    a, b = json.loads(fast.stdout), json.loads(general.stdout)
    assert len(a) == len(b) == 40 and a[0]["inf"] is None and b[0]["inf"] is None
    for x, y in zip(a, b, strict=True):
        assert x.keys() == y.keys()
        for key in x:
            if isinstance(x[key], float):
                assert x[key] == pytest.approx(y[key], rel=1e-6)  # float16/32 digits differ
            else:
                assert x[key] == y[key]


def test_parquet_goes_to_out_never_into_a_run(sweep: Path, tmp_path: Path) -> None:
    out = tmp_path / "results" / "hard.parquet"
    result = invoke(
        "sql", sweep, "SELECT * FROM pairs WHERE rank <= 2", "-f", "parquet", "--out", out
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(out) and "wrote 10 rows" in result.stderr
    table = pq.read_table(out)
    assert table.num_rows == 10 and table.column_names == list(schema.PAIRS.column_names)
    assert not list(out.parent.glob(".*.tmp"))

    before = snapshot(sweep)
    for inside in (sweep / "a" / "x.parquet", sweep / "b" / "pairs" / "x.parquet"):
        refused = invoke("sql", sweep, "SELECT 1", "-f", "parquet", "--out", inside)
        assert refused.exit_code == 1
        assert "inside run directory" in refused.stderr
    assert snapshot(sweep) == before

    no_out = invoke("sql", sweep, "SELECT 1", "-f", "parquet")
    assert no_out.exit_code == 2 and "--parquet FILE" in no_out.output
    stray = invoke("sql", sweep, "SELECT 1", "-f", "csv", "--parquet", tmp_path / "x.parquet")
    assert stray.exit_code == 2 and not (tmp_path / "x.parquet").exists()
    short = invoke("sql", sweep, "SELECT 1 AS one", "--parquet", tmp_path / "y.parquet")
    assert short.exit_code == 0 and pq.read_table(tmp_path / "y.parquet").num_rows == 1


def test_params_bind_numbers_and_text(sweep: Path) -> None:
    sql = "SELECT count(*) AS n FROM pairs WHERE run = $run AND rank <= $r AND similarity > $s"
    result = invoke("sql", sweep, sql, "-p", "run=b", "-p", "r=3", "--param", "s=0.2", "-f", "json")
    assert result.exit_code == 0, result.output
    # similarities 0.5, 0.357, 0.214 (> 0.2) for ranks 1..3 of each of b's 3 queries
    assert json.loads(result.stdout) == [{"n": 9}]
    typed = invoke(
        "sql",
        sweep,
        "SELECT typeof($i) i, typeof($f) f, typeof($t) t",
        "-f",
        "json",
        "-p",
        "i=-4",
        "-p",
        "f=1e-3",
        "-p",
        "t=0-5",
    )
    assert json.loads(typed.stdout) == [{"i": "INTEGER", "f": "DOUBLE", "t": "VARCHAR"}]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (["-p", "nope"], "is not NAME=VALUE"),
        (["-p", "1x=2"], "is not NAME=VALUE"),
        (["-p", "r=1", "-p", "r=2"], "given twice"),
        ([], "give -p r=VALUE"),
        (["-p", "r=1", "-p", "extra=2"], "extra not used by the query"),
    ],
)
def test_param_usage_errors(sweep: Path, params: list[str], message: str) -> None:
    result = invoke("sql", sweep, "SELECT * FROM pairs WHERE rank <= $r", *params)
    assert result.exit_code == 2
    assert message in " ".join(result.output.split())


def test_schema_lists_views_and_run_columns(sweep: Path) -> None:
    result = invoke("sql", "--schema")
    assert result.exit_code == 0
    for table in schema.TABLES.values():
        assert f"{table.name}: {table.doc}" in result.stdout
    assert "kept_fraction" in result.stdout and "band_kept / queue_size." in result.stdout
    rows = json.loads(invoke("sql", "--schema", "-f", "json").stdout)
    views = {r["view"] for r in rows}
    assert views == {*schema.TABLES, "runs"}
    assert {
        "view": "pairs",
        "column": "rank",
        "type": "INTEGER",
        "nullable": False,
    }.items() <= next(r for r in rows if r["view"] == "pairs" and r["column"] == "rank").items()
    assert invoke("sql", "--schema", sweep).exit_code == 2


@pytest.mark.parametrize(
    "sql",
    [
        "COPY pairs TO '{outside}'",
        "COPY pairs TO '{inside}'",
        "COPY (SELECT * FROM pairs) TO '{inside}' (FORMAT parquet)",
        "DELETE FROM runs",
        "DROP VIEW pairs",
        "ATTACH '{outside}' AS other",
        "CREATE TABLE t AS SELECT * FROM pairs",
        "INSTALL httpfs",
        "SET lock_configuration = false",
        "SELECT * FROM read_csv('/etc/passwd')",
        "SELECT * FROM read_csv('{manifest_dir}/../*.csv')",
        "SELECT 1; DROP VIEW pairs",
        "EXPLAIN ANALYZE COPY pairs TO '{inside}'",
    ],
)
def test_writes_and_escapes_are_refused(sweep: Path, tmp_path: Path, sql: str) -> None:
    outside, inside = tmp_path / "copied.csv", sweep / "a" / "copied.csv"
    text = sql.format(outside=outside, inside=inside, manifest_dir=sweep / "a")
    before = snapshot(sweep)
    result = invoke("sql", sweep, text)
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith("Error: ") and result.stderr.count("\n") == 1
    assert "Traceback" not in result.output and result.stdout == ""
    assert snapshot(sweep) == before
    assert not outside.exists() and not inside.exists()


def test_bad_sql_is_one_line(sweep: Path) -> None:
    for sql in ("SELEC 1", "SELECT nope FROM pairs", "SELECT CAST('x' AS INT) FROM runs"):
        result = invoke("sql", sweep, sql)
        assert result.exit_code == 1
        assert result.stderr.startswith("Error: ") and result.stderr.count("\n") == 1
        assert "LINE 1" not in result.stderr and "Traceback" not in result.output


def test_corrupt_log_file_is_named_and_left_alone(sweep: Path) -> None:
    bad = next((sweep / "b" / "pairs").glob("*.parquet"))
    bad.write_bytes(bad.read_bytes()[:-100])
    before = snapshot(sweep)
    result = invoke("sql", sweep, "SELECT count(*) FROM pairs")
    assert result.exit_code == 1
    assert str(bad) in result.stderr and "move it out of the run directory" in result.stderr
    assert result.stderr.count("\n") == 1
    assert snapshot(sweep) == before


def test_missing_run_and_other_schema_version(sweep: Path, tmp_path: Path) -> None:
    missing = invoke("sql", tmp_path / "nope", "SELECT 1")
    assert missing.exit_code == 1 and "does not exist" in missing.stderr
    manifest_path = sweep / "b" / schema.MANIFEST_FILE
    manifest = json.loads(manifest_path.read_text())
    manifest["schema_version"] = schema.SCHEMA_VERSION + 1
    manifest_path.write_text(json.dumps(manifest))
    result = invoke("sql", sweep, "SELECT 1")
    assert result.exit_code == 1
    assert "schema version" in result.stderr and result.stderr.count("\n") == 1


def test_default_runs_and_query_position(
    sweep: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    none_yet = invoke("sql", "SELECT 1")
    assert none_yet.exit_code == 1 and "no RUN given" in none_yet.stderr
    sweep.rename(tmp_path / "runs")
    result = invoke("sql", "SELECT run FROM runs ORDER BY run", "-f", "csv")
    assert result.exit_code == 0 and result.stdout.split() == ['"run"', '"a"', '"b"']
    forgot = invoke("sql", "runs/a")
    assert forgot.exit_code == 2 and "the last argument is the SQL query" in forgot.output
    assert invoke("sql").exit_code == 2


def test_docs_list_the_runs_columns_and_help_examples() -> None:
    from hardstat.analysis.logs import RUNS_COLUMNS

    docs = (Path(__file__).parents[2] / "docs" / "analyses.md").read_text()
    section = docs.split("## SQL over the logs")[1].split("\n## ")[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    documented = [tuple(c.strip().strip("`") for c in row.strip("|").split("|")) for row in rows]
    assert documented == [tuple(c) for c in RUNS_COLUMNS]
    help_text = " ".join(invoke("sql", "--help").stdout.split())
    for word in ("--format", "--limit", "--param", "--parquet", "--schema", "runs/*"):
        assert word in help_text and word in section


def test_a_long_query_is_not_taken_for_a_path(sweep: Path) -> None:
    """A query longer than a file name may be (255 bytes) and without '/': no OSError."""
    query = (
        "SELECT s.label AS query_label, c.name AS query_class, count(*) AS negatives_seen, "
        "avg(p.similarity) AS mean_similarity, min(p.rank) AS hardest_rank FROM pairs p "
        "JOIN samples s ON s.sample_id = p.query_id AND s.run = p.run "
        "JOIN classes c ON c.label = s.label AND c.run = s.run WHERE p.rank <= 10 "
        "GROUP BY s.label, c.name ORDER BY negatives_seen DESC, query_label LIMIT 5"
    )
    assert len(query) > 300 and "/" not in query.replace("*", "")
    result = invoke("sql", sweep, query, "-f", "csv")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0].startswith('"query_label","query_class"')
    nameless = invoke("sql", sweep, "x" * 300)  # one long word: no path, a (bad) query
    assert nameless.exit_code == 1 and nameless.stderr.count("\n") == 1
    assert "File name too long" not in nameless.stderr


# -- stopping a query: Ctrl-C, --timeout, --memory-limit ------------------------------------------
CROSS = "SELECT count(*) FROM pairs a, pairs b, pairs c"


@pytest.fixture
def big(tmp_path: Path) -> Path:
    """16,384 pairs: their triple cross join would run for hours."""
    return write_run(tmp_path, "big", queue_size=256, pairs=ranked_pairs(256, 64))


def test_ctrl_c_stops_a_query_at_once(big: Path) -> None:
    import os
    import signal
    import threading
    import time

    from hardstat import interrupts

    sent: list[float] = []
    done = threading.Event()

    def press_ctrl_c() -> None:  # once the command's connection exists (not at a fixed time:
        while not interrupts._targets:  # a loaded machine may still be importing at 1 s)
            if done.wait(0.02):
                return  # the command ended first: no signal into a later test
        time.sleep(0.5)  # the query under way
        sent.append(time.monotonic())
        os.kill(os.getpid(), signal.SIGINT)

    timer = threading.Thread(target=press_ctrl_c)
    with fresh_process_signals():
        timer.start()
        try:
            result = invoke("sql", big, CROSS, "--timeout", "60")
        finally:
            done.set()
            timer.join()
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored
    assert sent, result.output
    took = time.monotonic() - sent[0]
    assert result.exit_code == 130, result.output
    assert result.stderr == "Error: interrupted (Ctrl-C)\n"
    assert took < 2.0


def test_ctrl_c_in_a_shell_exits_130_without_traceback(big: Path) -> None:
    import signal
    import subprocess
    import sys
    import time

    cmd = [sys.executable, "-m", "hardstat", "sql", str(big), CROSS]
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # Ctrl-C handled as in a terminal even when pytest runs as a background job
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    time.sleep(5)  # imports, footer checks, the query under way (a loaded machine is slow)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert time.monotonic() - t0 < 2.0
    assert proc.returncode == 130 and err == "Error: interrupted (Ctrl-C)\n"


def test_timeout_stops_a_query_with_one_line(big: Path) -> None:
    result = invoke("sql", big, CROSS, "--timeout", "1")
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: the query ran longer than its time limit (1 s)")
    assert result.stderr.count("\n") == 1 and result.stdout == ""
    assert invoke("sql", big, "SELECT count(*) FROM pairs", "--timeout", "30").exit_code == 0


def test_memory_limit_option(big: Path) -> None:
    ok = invoke("sql", big, "SELECT current_setting('memory_limit') AS m", "--memory-limit", "2GiB")
    assert ok.exit_code == 0 and "2.0 GiB" in ok.stdout
    bad = invoke("sql", big, "SELECT 1", "--memory-limit", "lots")
    assert bad.exit_code == 2 and "not a size" in bad.stderr
    assert "50%" in invoke("sql", "--help").stdout


def test_terminal_escapes_in_run_data_are_shown_escaped(tmp_path: Path) -> None:
    from hardstat.classes import ClassInfo

    evil = (
        ClassInfo(0, "cat\x1b[2J\x1b]0;pwned\x07", None, None),
        ClassInfo(1, "dog\rX", None, None),
    )
    run = write_run(tmp_path, "r", queue_size=8, pairs=ranked_pairs(8, 1), classes=evil)
    result = invoke(
        "sql", run, "SELECT name, 'a' || chr(27) || '[31m' AS \"x\x1b[1m\" FROM classes"
    )
    assert result.exit_code == 0, result.output
    assert "\x1b" not in result.stdout and "\r" not in result.stdout and "\x07" not in result.stdout
    assert "cat\\x1b[2J\\x1b]0;pwned\\x07" in result.stdout and "dog\\rX" in result.stdout


def test_parquet_out_on_a_full_disk_is_one_line(
    sweep: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pyarrow.parquet as pq_module

    out = tmp_path / "o.parquet"

    class Full(pq_module.ParquetWriter):  # type: ignore[misc]
        def write_batch(self, *args: Any, **kwargs: Any) -> None:
            raise OSError(28, "No space left on device")

    monkeypatch.setattr(pq_module, "ParquetWriter", Full)
    result = invoke("sql", sweep, "SELECT * FROM pairs", "-f", "parquet", "--out", out)
    assert result.exit_code == 1 and "No space left on device" in result.stderr
    assert result.stderr.count("\n") == 1 and not out.exists()
    assert not list(tmp_path.glob(".*.tmp"))


@pytest.mark.parametrize("fmt", ["csv", "json", "table"])
def test_a_reader_that_stops_early_ends_the_query_quietly(big: Path, fmt: str) -> None:
    """`hardstat sql RUN QUERY -f csv | head -1`: exit 0, nothing on stderr."""
    import subprocess
    import sys

    query = "SELECT * FROM pairs"
    cmd = [sys.executable, "-m", "hardstat", "sql", str(big), query, "-f", fmt, "--limit", "0"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.readline()  # the first line, then the reader goes away
    proc.stdout.close()
    err = proc.stderr.read()
    assert proc.wait(timeout=60) == 0, err
    assert err == b""
