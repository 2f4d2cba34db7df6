"""Run discovery, the DuckDB views, read-only guarantees and one-line errors of analysis.logs."""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from clirun import fresh_process_signals

from hardstat import schema
from hardstat.analysis import logs
from hardstat.errors import ConfigError, LogError, QueryError, RunError


def ranked_pairs(queue_size: int, queries: int, step: int = 0) -> dict[str, np.ndarray]:
    """``queries`` queries at ``step``, each with negatives 100..100+K-1 ranked in order."""
    n = queue_size * queries
    return {
        "step": np.full(n, step, np.int32),
        "query_id": np.repeat(np.arange(queries, dtype=np.int32), queue_size),
        "neg_id": np.tile(np.arange(100, 100 + queue_size, dtype=np.int32), queries),
        "rank": np.tile(np.arange(1, queue_size + 1, dtype=np.int32), queries),
        "similarity": np.tile(np.linspace(0.9, -0.9, queue_size), queries).astype(np.float16),
        "in_band": np.ones(n, bool),
    }


def knn(step: int, top1: float) -> dict[str, object]:
    return {"step": step, "epoch": 0, "kind": "knn", "top1": top1, "top5": None, "params": "{}"}


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``root``: (size, mtime in ns)."""
    return {
        str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def two_runs(make_run: Callable[..., Path]) -> list[Path]:
    a = make_run("a", queue_size=8, pairs=ranked_pairs(8, 2), evals=[knn(3, 0.5)])
    b = make_run("b", queue_size=8, pairs=ranked_pairs(8, 3, step=5), band="0-50", seed=1)
    return [a, b]


# -- find_runs ---------------------------------------------------------------------------------


def test_find_runs_accepts_runs_sweeps_and_globs(two_runs: list[Path]) -> None:
    sweep = two_runs[0].parent
    assert [r.name for r in logs.find_runs([two_runs[1]])] == ["b"]
    assert [r.name for r in logs.find_runs([sweep])] == ["a", "b"]
    assert [r.name for r in logs.find_runs([str(sweep / "*")])] == ["a", "b"]
    assert [r.name for r in logs.find_runs([two_runs[0], sweep])] == ["a", "b"]  # deduplicated


def test_find_runs_errors(tmp_path: Path, make_run: Callable[..., Path]) -> None:
    with pytest.raises(RunError, match="does not exist"):
        logs.find_runs([tmp_path / "nope"])
    with pytest.raises(RunError, match="no hardstat run matches"):
        logs.find_runs([str(tmp_path / "x*")])
    run = make_run("old", queue_size=8)
    manifest = json.loads((run / schema.MANIFEST_FILE).read_text())
    manifest["schema_version"] = schema.SCHEMA_VERSION + 1
    (run / schema.MANIFEST_FILE).write_text(json.dumps(manifest))
    with pytest.raises(LogError, match="schema version") as e:
        logs.find_runs([run])
    assert "\n" not in str(e.value)


# -- views ---------------------------------------------------------------------------------------


def test_views_tag_rows_with_their_run(two_runs: list[Path]) -> None:
    con = logs.connect(logs.find_runs(two_runs))
    counts = logs.query(con, "SELECT run, count(*) AS n FROM pairs GROUP BY run ORDER BY run")
    assert counts.to_pylist() == [{"run": "a", "n": 16}, {"run": "b", "n": 24}]
    runs = logs.query(
        con, "SELECT run, band, band_kept, kept_fraction, seed FROM runs ORDER BY run"
    )
    assert runs.to_pylist() == [
        {"run": "a", "band": "0-100", "band_kept": 8, "kept_fraction": 1.0, "seed": 0},
        {"run": "b", "band": "0-50", "band_kept": 4, "kept_fraction": 0.5, "seed": 1},
    ]
    # b has no evals, a has no samples: typed, empty where missing
    assert logs.query(con, "SELECT DISTINCT run FROM evals").column("run").to_pylist() == ["a"]
    assert logs.query(con, "SELECT count(*) AS n FROM samples").column("n").to_pylist() == [0]
    cols = logs.query(con, "DESCRIBE samples").column("column_name").to_pylist()
    assert cols == list(schema.SAMPLES.column_names)


def test_query_binds_parameters_without_warnings(two_runs: list[Path]) -> None:
    con = logs.connect(logs.find_runs(two_runs))
    sql_named = "SELECT count(*) AS n FROM pairs WHERE run = $run AND rank <= $r"
    sql_positional = "SELECT count(*) AS n FROM pairs WHERE run = ? AND rank <= ?"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        named = logs.query(con, sql_named, {"run": "b", "r": 2})
        positional = logs.query(con, sql_positional, ["a", 3])
    assert named.column("n").to_pylist() == [3 * 2]
    assert positional.column("n").to_pylist() == [2 * 3]


def test_query_batches_streams_every_row(two_runs: list[Path]) -> None:
    con = logs.connect(logs.find_runs(two_runs))
    schema_, batches = logs.query_batches(con, "SELECT * FROM pairs ORDER BY run", batch_rows=7)
    sizes = [b.num_rows for b in batches]
    assert schema_.names == list(schema.PAIRS.column_names)
    assert sum(sizes) == 40 and max(sizes) <= 7


def test_query_errors_are_one_line(two_runs: list[Path]) -> None:
    con = logs.connect(logs.find_runs(two_runs))
    with pytest.raises(QueryError, match="Parser Error") as e:
        logs.query(con, "SELEC 1")
    with pytest.raises(QueryError, match='"nope" not found') as e2:
        logs.query(con, "SELECT nope\nFROM pairs")
    for err in (e, e2):
        assert "\n" not in str(err.value) and "LINE 1" not in str(err.value)


# -- read-only -------------------------------------------------------------------------------------


def test_connection_is_locked_to_the_run_directories(two_runs: list[Path], tmp_path: Path) -> None:
    runs = logs.find_runs(two_runs)
    con = logs.connect(runs)

    def setting(name: str) -> object:
        return con.execute("SELECT current_setting(?)", [name]).fetchall()[0][0]

    assert setting("enable_external_access") is False
    assert setting("lock_configuration") is True
    allowed = set(setting("allowed_directories"))  # type: ignore[call-overload]
    assert {f"{r.path}/" for r in runs} <= allowed
    assert not any(str(tmp_path) == d.rstrip("/") for d in allowed)
    # below the statement check: the connection itself refuses these
    for sql in (
        "SET lock_configuration = false",
        "SET enable_external_access = true",
        f"COPY (SELECT 1) TO '{tmp_path / 'x.csv'}'",
        f"SELECT * FROM read_csv('{tmp_path.parent}/*.csv')",
        "SELECT * FROM read_csv('/etc/passwd')",
        "INSTALL httpfs",
    ):
        with pytest.raises(duckdb.Error):
            con.execute(sql)
    assert not (tmp_path / "x.csv").exists()


def _pairs_columns() -> int:
    return len(schema.TABLES["pairs"].columns)


@pytest.mark.parametrize(
    ("sql", "expect"),
    [
        ("SELECT 1", lambda t: t.to_pylist() == [{"1": 1}]),
        ("WITH t AS (SELECT 1 AS x) SELECT * FROM t", lambda t: t.to_pylist() == [{"x": 1}]),
        ("FROM runs", lambda t: sorted(t.column("run").to_pylist()) == ["a", "b"]),
        ("VALUES (1)", lambda t: t.num_rows == 1 and t.column(0).to_pylist() == [1]),
        ("DESCRIBE pairs", lambda t: t.num_rows == _pairs_columns()),
        ("SUMMARIZE evals", lambda t: "top1" in t.column("column_name").to_pylist()),
        ("SHOW TABLES", lambda t: {"pairs", "runs"} <= set(t.column("name").to_pylist())),
        ("EXPLAIN SELECT * FROM pairs", lambda t: t.num_rows >= 1),
        ("EXPLAIN ANALYZE SELECT count(*) FROM pairs", lambda t: t.num_rows >= 1),
        (
            "PIVOT (SELECT run, band FROM runs) ON band IN ('0-100')",
            lambda t: "0-100" in t.column_names and t.num_rows == 2,
        ),
    ],
)
def test_check_select_allows_reads(
    two_runs: list[Path], sql: str, expect: Callable[[pa.Table], bool]
) -> None:
    """Each read passes the check as the one statement it is, and runs: the answer is right
    and the logs are unchanged."""
    con = logs.connect(logs.find_runs(two_runs))
    before = {run: snapshot(run) for run in two_runs}
    statement = logs.check_select(con, sql)
    assert statement.query.strip() == sql
    table = logs.query(con, sql, select_only=True)
    assert expect(table), table.to_pylist()[:5]
    assert {run: snapshot(run) for run in two_runs} == before


@pytest.mark.parametrize(
    ("sql", "kind"),
    [
        ("COPY pairs TO '{run}/x.csv'", "COPY"),
        ("COPY (SELECT 1) TO '{tmp}/x.csv'", "COPY"),
        ("DELETE FROM runs", "DELETE"),
        ("TRUNCATE runs", "DELETE (TRUNCATE)"),
        ("UPDATE runs SET seed = 5", "UPDATE"),
        ("INSERT INTO runs (run) VALUES ('x')", "INSERT"),
        ("DROP VIEW pairs", "DROP"),
        ("CREATE TABLE t AS SELECT 1", "CREATE"),
        ("CREATE OR REPLACE VIEW pairs AS SELECT 1", "CREATE"),
        ("ALTER TABLE runs ADD COLUMN x INT", "ALTER"),
        ("ATTACH '{tmp}/x.db'", "ATTACH"),
        ("DETACH memory", "DETACH"),
        ("SET lock_configuration = false", "SET"),
        ("RESET threads", "SET (RESET)"),
        ("PRAGMA version", "PRAGMA"),
        ("INSTALL httpfs", "LOAD (INSTALL)"),
        ("LOAD httpfs", "LOAD"),
        ("EXPORT DATABASE '{run}/db'", "EXPORT"),
        ("CALL pragma_version()", "CALL"),
        ("CHECKPOINT", "CALL (CHECKPOINT)"),
        ("BEGIN", "TRANSACTION (BEGIN)"),
        ("PREPARE p AS SELECT 1", "PREPARE"),
        ("VACUUM", "VACUUM"),
        ("PIVOT (SELECT run, band FROM runs) ON band", "MULTI (PIVOT)"),
        ("UPDATE EXTENSIONS", "UNKNOWN (UPDATE)"),
    ],
)
def test_check_select_refuses_everything_else(
    two_runs: list[Path], tmp_path: Path, sql: str, kind: str
) -> None:
    con = logs.connect(logs.find_runs(two_runs))
    before = snapshot(tmp_path)
    text = sql.format(run=two_runs[0], tmp=tmp_path)
    with pytest.raises(QueryError) as e:
        logs.query(con, text, select_only=True)
    assert f"refused a {kind} statement" in str(e.value) and "\n" not in str(e.value)
    assert snapshot(tmp_path) == before
    assert logs.query(con, "SELECT count(*) AS n FROM runs").column("n").to_pylist() == [2]


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT 1; DROP VIEW pairs",
        "SELECT 1; SELECT 2",
        "",
        "-- only a comment",
    ],
)
def test_check_select_wants_exactly_one_statement(two_runs: list[Path], sql: str) -> None:
    con = logs.connect(logs.find_runs(two_runs))
    with pytest.raises(QueryError, match="exactly one SELECT"):
        logs.check_select(con, sql)
    assert logs.query(con, "SELECT count(*) AS n FROM pairs").column("n").to_pylist() == [40]


def test_explain_analyze_of_a_write_is_refused(two_runs: list[Path]) -> None:
    con = logs.connect(logs.find_runs(two_runs))
    target = two_runs[0] / "y.csv"
    with pytest.raises(QueryError, match="EXPLAIN is allowed only"):
        logs.check_select(con, f"EXPLAIN ANALYZE COPY (SELECT 1) TO '{target}'")
    assert not target.exists()


# -- damaged files -------------------------------------------------------------------------------


def _data_region(data: bytes) -> tuple[int, int]:
    """Byte range of a Parquet file between the leading magic and the footer."""
    footer = int.from_bytes(data[-8:-4], "little")
    return 4, len(data) - 8 - footer


def _damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "garbage":
        path.write_bytes(b"not parquet" * 100)
    elif how == "pages":
        lo, hi = _data_region(data)
        path.write_bytes(data[:lo] + b"\xff" * (hi - lo) + data[hi:])
    else:
        raise AssertionError(how)


@pytest.mark.parametrize("how", ["truncated", "empty", "garbage", "pages"])
def test_damaged_file_is_named_in_one_line(two_runs: list[Path], how: str) -> None:
    bad = next((two_runs[1] / "pairs").glob("*.parquet"))
    _damage(bad, how)
    before = snapshot(two_runs[1].parent)
    with pytest.raises(LogError) as e:
        con = logs.connect(logs.find_runs(two_runs))
        logs.query(con, "SELECT sum(similarity) FROM pairs")
    message = str(e.value)
    assert str(bad) in message and "move it out of the run directory" in message
    assert "\n" not in message
    assert snapshot(two_runs[1].parent) == before


def test_foreign_schema_version_or_columns_in_a_file(two_runs: list[Path]) -> None:
    folder = two_runs[0] / "evals"
    table = pq.read_table(next(folder.glob("*.parquet")))
    odd = folder / "part-p001-000000.parquet"
    pq.write_table(table.replace_schema_metadata({"hardstat.schema_version": "99"}), odd)
    with pytest.raises(LogError, match="schema version 99"):
        logs.connect(logs.find_runs(two_runs))
    pq.write_table(pa.table({"run": ["a"], "step": pa.array([1], pa.int32())}), odd)
    with pytest.raises(LogError, match="schema version none"):
        logs.connect(logs.find_runs(two_runs))
    meta = {"hardstat.schema_version": str(schema.SCHEMA_VERSION)}
    pq.write_table(table.drop_columns(["top5"]).replace_schema_metadata(meta), odd)
    with pytest.raises(LogError, match="lacks column"):
        logs.connect(logs.find_runs(two_runs))
    odd.unlink()
    logs.connect(logs.find_runs(two_runs))


def test_hidden_temporary_files_are_not_read(two_runs: list[Path]) -> None:
    (two_runs[0] / "pairs" / ".part-p000-000009.parquet.tmp").write_bytes(b"partial")
    con = logs.connect(logs.find_runs(two_runs))
    assert logs.query(con, "SELECT count(*) AS n FROM pairs").column("n").to_pylist() == [40]


def as_version_1(run: Path) -> None:
    """Rewrite a run as schema version 1 wrote it: no ``process`` column, version 1 everywhere."""
    for table in schema.TABLES:
        for path in (run / table).glob("*.parquet"):
            t = pq.read_table(path)
            if "process" in t.column_names:
                t = t.drop_columns(["process"])
            pq.write_table(t.replace_schema_metadata({"hardstat.schema_version": "1"}), path)
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["schema_version"] = 1
    manifest.pop("processes", None)
    (run / "manifest.json").write_text(json.dumps(manifest))


def test_version_1_runs_read_as_process_0_beside_version_2_runs(two_runs: list[Path]) -> None:
    as_version_1(two_runs[0])
    (two_runs[1] / "pairs" / "part-p000-000000.parquet").rename(
        two_runs[1] / "pairs" / "part-p003-000000.parquet"
    )
    t = pq.read_table(two_runs[1] / "pairs" / "part-p003-000000.parquet")
    meta = t.schema.metadata
    t = t.set_column(t.column_names.index("process"), "process", pa.array([3] * len(t), pa.int16()))
    pq.write_table(
        t.replace_schema_metadata(meta), two_runs[1] / "pairs" / "part-p003-000000.parquet"
    )
    con = logs.connect(logs.find_runs(two_runs))
    rows = logs.query(
        con, "SELECT run, process, count(*) AS n FROM pairs GROUP BY ALL ORDER BY ALL"
    ).to_pylist()
    assert rows == [{"run": "a", "process": 0, "n": 16}, {"run": "b", "process": 3, "n": 24}]
    assert con.sql("SELECT DISTINCT typeof(process) FROM pairs").fetchall() == [("SMALLINT",)]
    # a version-1 file without a column that version 1 had is still refused
    path = next((two_runs[0] / "evals").glob("*.parquet"))
    t = pq.read_table(path)
    pq.write_table(t.drop_columns(["top5"]).replace_schema_metadata(t.schema.metadata), path)
    with pytest.raises(LogError, match="lacks column"):
        logs.connect(logs.find_runs(two_runs))


# -- literal paths: glob characters in a run's path are never a pattern -------------------------
def test_a_run_path_with_glob_characters_reads_its_own_files(tmp_path: Path) -> None:
    from runlogs import write_run

    g = tmp_path / "g"
    write_run(g, "x", queue_size=8, pairs=ranked_pairs(8, 2))  # 16 pairs
    write_run(g, "y", queue_size=8, pairs=ranked_pairs(8, 3))  # 24 pairs
    (g / "x").rename(g / "a[1]")  # copied or renamed by hand; the manifest keeps the run name
    (g / "y").rename(g / "a1")
    runs = logs.find_runs([g / "a[1]"])
    assert [r.name for r in runs] == ["x"]
    con = logs.connect(runs)
    counts = logs.query(con, "SELECT run, count(*) AS n FROM pairs GROUP BY run")
    assert counts.to_pylist() == [{"run": "x", "n": 16}]
    both = logs.connect(logs.find_runs([g]))
    counts = logs.query(both, "SELECT run, count(*) AS n FROM pairs GROUP BY run ORDER BY run")
    assert counts.to_pylist() == [{"run": "x", "n": 16}, {"run": "y", "n": 24}]
    assert [r.name for r in logs.find_runs([str(g / "a?")])] == ["y"]  # a typed pattern


@pytest.mark.parametrize("out", ["exp[1]", "s*t", "q?x", "b\\ack", "it's"])
def test_a_run_under_an_out_with_glob_characters_reads(tmp_path: Path, out: str) -> None:
    from runlogs import write_run

    run = write_run(tmp_path / out, "r", queue_size=8, pairs=ranked_pairs(8, 2))
    con = logs.connect(logs.find_runs([run]))
    assert logs.query(con, "SELECT count(*) AS n FROM pairs").column("n").to_pylist() == [16]


# -- log files are checked against the schema ------------------------------------------------------
def _rewrite(path: Path, change: Callable[[pa.Table], pa.Table]) -> None:
    table = pq.read_table(path)
    metadata = pq.read_schema(path).metadata
    new = change(table)
    pq.write_table(new.replace_schema_metadata(metadata), path)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda t: t.set_column(
                t.schema.get_field_index("rank"),
                "rank",
                pa.array([str(v) for v in t.column("rank").to_pylist()]),
            ),
            "column rank has type string",
        ),
        (
            lambda t: t.set_column(
                t.schema.get_field_index("rank"), "rank", pa.array([None] * t.num_rows, pa.int32())
            ),
            "column rank holds 16 null",
        ),
        (
            lambda t: t.set_column(
                t.schema.get_field_index("run"), "run", pa.array(["other"] * t.num_rows)
            ),
            "holds rows of run 'other'",
        ),
        (
            lambda t: t.set_column(
                t.schema.get_field_index("rank"),
                "rank",
                pa.array(np.arange(t.num_rows, dtype=np.int32) + 5),
            ),
            "outside 1..8",
        ),
    ],
)
def test_pairs_files_of_the_wrong_content_are_named(
    make_run: Callable[..., Path], change: Callable[[pa.Table], pa.Table], message: str
) -> None:
    run = make_run("a", queue_size=8, pairs=ranked_pairs(8, 2))
    bad = next((run / "pairs").glob("*.parquet"))
    _rewrite(bad, change)
    before = snapshot(run)
    with pytest.raises(LogError, match=message) as e:
        logs.connect(logs.find_runs([run]))
    assert str(bad) in str(e.value) and "\n" not in str(e.value)
    assert snapshot(run) == before


def test_null_check_without_statistics_reads_the_column(make_run: Callable[..., Path]) -> None:
    run = make_run("a", queue_size=8, pairs=ranked_pairs(8, 2))
    bad = next((run / "pairs").glob("*.parquet"))
    table = pq.read_table(bad)
    table = table.set_column(
        table.schema.get_field_index("rank"), "rank", pa.array([None] * 16, pa.int32())
    )
    pq.write_table(table, bad, write_statistics=False)
    with pytest.raises(LogError, match="column rank holds 16 null"):
        logs.connect(logs.find_runs([run]))


def test_unreadable_log_file_is_a_permission_problem(
    make_run: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    run = make_run("a", queue_size=8, pairs=ranked_pairs(8, 2))

    def denied(path: object, *args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(pq, "read_metadata", denied)
    with pytest.raises(RunError, match="permission denied") as e:
        logs.connect(logs.find_runs([run]))
    assert "corrupt" not in str(e.value)


def test_a_manifest_of_the_wrong_type_is_one_line(make_run: Callable[..., Path]) -> None:
    run = make_run("a", queue_size=8, pairs=ranked_pairs(8, 2))
    manifest = json.loads((run / schema.MANIFEST_FILE).read_text())
    manifest["queue_size"] = "lots"
    (run / schema.MANIFEST_FILE).write_text(json.dumps(manifest))
    with pytest.raises(LogError, match="field 'queue_size' must be a JSON integer"):
        logs.find_runs([run])


# -- statement trees, interrupts, limits ---------------------------------------------------------
@pytest.mark.parametrize(
    "sql",
    [
        "WITH d AS (DELETE FROM runs RETURNING *) SELECT * FROM d",
        "WITH d AS (UPDATE runs SET seed = 9 RETURNING *) SELECT * FROM d",
        "WITH d AS (INSERT INTO runs SELECT * FROM runs RETURNING *) SELECT count(*) FROM d",
        "SELECT (WITH d AS (DELETE FROM runs RETURNING 1) SELECT count(*) FROM d)",
        "EXPLAIN WITH d AS (DELETE FROM runs RETURNING *) SELECT * FROM d",
    ],
)
def test_data_modifying_ctes_are_refused(two_runs: list[Path], sql: str) -> None:
    con = logs.connect(logs.find_runs(two_runs))
    with pytest.raises(QueryError, match=r"refused a SELECT that contains|EXPLAIN is allowed"):
        logs.query(con, sql, select_only=True)
    assert logs.query(con, "SELECT count(*) AS n FROM runs").column("n").to_pylist() == [2]


@pytest.mark.parametrize(
    "sql",
    [
        "WITH RECURSIVE t(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM t WHERE n < 3) "
        "SELECT * FROM t",
        "SELECT 1 UNION SELECT 2",
        "SUMMARIZE runs",
        "FROM pairs LIMIT 1",
        "SELECT 'DELETE_QUERY_NODE' AS type",
    ],
)
def test_reading_statements_pass_the_tree_check(two_runs: list[Path], sql: str) -> None:
    con = logs.connect(logs.find_runs(two_runs))
    logs.query(con, sql, select_only=True)


def test_memory_limit(two_runs: list[Path]) -> None:
    assert logs.memory_bytes("4GB") == 4 * 10**9 and logs.memory_bytes("512MiB") == 2**29
    assert logs.memory_bytes("50%") == logs.physical_memory() // 2
    for bad in ("lots", "0%", "150%", "1MB"):
        with pytest.raises(ConfigError):
            logs.memory_bytes(bad)
    con = logs.connect(logs.find_runs(two_runs), memory_limit="1GiB")
    limit = con.execute("SELECT current_setting('memory_limit')").fetchall()[0][0]
    assert limit.startswith("1.0 GiB") or limit.startswith("1024")


def test_ctrl_c_reaches_queries_that_do_not_go_through_query(tmp_path: Path) -> None:
    """The analyses call ``con.sql`` directly in places: during a CLI command every connection
    that ``connect`` opens is interrupted by Ctrl-C, whoever runs the query."""
    import os
    import signal
    import threading

    from runlogs import write_run

    from hardstat import interrupts

    run = write_run(tmp_path, "big", queue_size=256, pairs=ranked_pairs(256, 64))
    with fresh_process_signals(), interrupts.cli_session():
        con = logs.connect(logs.find_runs([run]))
        assert interrupts._armed is not None, "the Ctrl-C watcher is not installed"
        timer = threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGINT))
        timer.start()
        elapsed = seconds_to_stop_a_cross_join(con)
        timer.join()
        assert elapsed < 3.0 and interrupts.stop_reason() == "interrupt", elapsed


# how a stopped query ends: Python's KeyboardInterrupt when the handler ran first, else DuckDB's
# error (this build raises a plain RuntimeError 'Query interrupted', not a duckdb.Error)
INTERRUPTED = (KeyboardInterrupt, duckdb.InterruptException, RuntimeError)


def seconds_to_stop_a_cross_join(con: duckdb.DuckDBPyConnection) -> float:
    """Run a query that would take hours; return how long it ran before it was stopped (a
    fallback interrupt at 20 s, so that a failing test cannot hang the suite)."""
    import threading
    import time

    fallback = threading.Timer(20.0, con.interrupt)
    fallback.start()
    t0 = time.monotonic()
    try:
        with pytest.raises(INTERRUPTED):
            con.sql("SELECT count(*) FROM pairs a, pairs b, pairs c").fetchall()
    finally:
        fallback.cancel()
    return time.monotonic() - t0


def test_ctrl_c_before_a_query_starts_still_stops_it(tmp_path: Path) -> None:
    """DuckDB clears an interrupt when a new query starts executing, so a Ctrl-C that lands
    while no query runs (between two queries, or while one is still being planned) must
    still stop the next one: the watcher keeps interrupting after the first Ctrl-C. (Under
    load, the test above hung this way: its signal arrived before its query executed.)"""

    from runlogs import write_run

    from hardstat import interrupts

    run = write_run(tmp_path, "big", queue_size=256, pairs=ranked_pairs(256, 64))
    with fresh_process_signals(), interrupts.cli_session():
        con = logs.connect(logs.find_runs([run]))
        assert interrupts._armed is not None, "the Ctrl-C watcher is not installed"
        interrupts._stop("interrupt")  # what the watcher does on Ctrl-C; no query runs yet
        elapsed = seconds_to_stop_a_cross_join(con)
        assert elapsed < 3.0 and interrupts.stop_reason() == "interrupt", elapsed
