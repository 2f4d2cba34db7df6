"""Run logs as DuckDB views: ``pairs, queries, steps, evals, samples, classes, runs``.

:func:`find_runs` turns run directories, sweep directories (holding runs) and globs into checked
runs; :func:`connect` checks every log file's Parquet footer (one-line error naming a corrupt,
truncated or foreign file) and opens an in-memory DuckDB connection whose views read those runs'
Parquet files (every row carries its ``run``); :func:`query` and :func:`query_batches` run SQL on
it, turning DuckDB errors into one-line :class:`~hardstat.errors.LogError` /
:class:`~hardstat.errors.QueryError`. :func:`check_select` refuses every statement but a single
``SELECT`` (what ``hardstat sql`` runs for its users). No torch.

Read-only, in two layers: the connection cannot touch files outside the runs' directories, load
extensions or change its configuration (:func:`connect`), and user SQL is limited to one SELECT
statement (:func:`check_select`), which also stops ``COPY ... TO`` a file inside a run directory
(an allowed directory, so the first layer alone would let it through).
"""

from __future__ import annotations

import glob as _glob
import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from hardstat import runs as _runs
from hardstat import schema
from hardstat.errors import LogError, QueryError, RunError

DUCKDB_TYPES = {
    "string (dictionary)": "VARCHAR",
    "string": "VARCHAR",
    "int16": "SMALLINT",
    "int32": "INTEGER",
    "float16": "FLOAT",
    "float32": "FLOAT",
    "bool": "BOOLEAN",
}

RUNS_COLUMNS = (
    ("run", "VARCHAR", "Run name."),
    ("path", "VARCHAR", "Run directory."),
    ("status", "VARCHAR", "running, interrupted or finished."),
    ("band", "VARCHAR", "Band spec the loss used."),
    ("band_kept", "INTEGER", "Negatives per query the band keeps."),
    ("kept_fraction", "DOUBLE", "band_kept / queue_size."),
    ("queue_size", "INTEGER", "K, the negatives of every query."),
    ("negatives", "VARCHAR", "queue (a queue or memory bank) or in_batch (the batch's others)."),
    ("seed", "INTEGER", "Random seed."),
    ("dataset", "VARCHAR", "Dataset spec."),
    ("backbone", "VARCHAR", "Backbone."),
    ("batch_size", "INTEGER", "Batch size (the global batch under torchrun)."),
    ("processes", "INTEGER", "Training processes (torchrun's world size; 1 without it)."),
    ("epochs", "INTEGER", "Configured epochs."),
    ("steps_done", "INTEGER", "Optimizer steps completed."),
    ("epochs_done", "INTEGER", "Epochs completed."),
    ("created", "VARCHAR", "Creation time (UTC, ISO 8601)."),
    ("config", "VARCHAR", "Resolved config as JSON."),
)


@dataclass(frozen=True)
class RunInfo:
    """A checked run: its name (the ``run`` column), directory and manifest."""

    name: str
    path: Path
    manifest: dict[str, Any]


def _is_run(path: Path) -> bool:
    return (path / schema.MANIFEST_FILE).is_file()


def find_runs(specs: Iterable[str | Path]) -> list[RunInfo]:
    """Resolve run directories, sweep directories (their child runs) and globs of either.

    Raises RunError when a spec matches no run, LogError for a corrupt manifest or another
    schema version, and RunError when two runs share a name.
    """
    found: list[Path] = []
    for spec in specs:
        text = str(spec)
        matches = (
            sorted(Path(p) for p in _glob.glob(text)) if _glob.has_magic(text) else [Path(text)]
        )
        hits: list[Path] = []
        for m in matches:
            if _is_run(m):
                hits.append(m)
            elif m.is_dir():
                hits.extend(sorted(c for c in m.iterdir() if c.is_dir() and _is_run(c)))
        if not hits:
            if not _glob.has_magic(text) and not Path(text).exists():
                raise RunError(f"{text} does not exist; give a run directory, a sweep or a glob")
            raise RunError(f"no hardstat run matches {text} (a run directory holds manifest.json)")
        found.extend(hits)
    infos: list[RunInfo] = []
    seen: dict[str, Path] = {}
    for path in dict.fromkeys(p.resolve() for p in found):
        manifest = _runs.read_manifest(path)
        name = str(manifest.get("run", path.name))
        if name in seen:
            raise RunError(
                f"two runs are named {name!r} ({seen[name]} and {path}); analyse them separately"
            )
        seen[name] = path
        infos.append(RunInfo(name, path, manifest))
    return infos


def table_files(run: RunInfo, table: str) -> list[Path]:
    """The complete Parquet files of one table of one run (hidden ``.tmp`` files excluded)."""
    folder = run.path / table
    return sorted(folder.glob("*.parquet")) if folder.is_dir() else []


def check_log_files(runs: Sequence[RunInfo]) -> None:
    """Read the footer of every log file; raise LogError naming the first bad one.

    A file is bad when its footer cannot be read (truncated, empty, not Parquet), when it
    carries a schema version outside :data:`hardstat.schema.READABLE_VERSIONS`, or when it lacks
    a column its version's table has. Only footers are read (milliseconds per file); files are
    not changed.
    """
    readable = {str(v).encode(): v for v in schema.READABLE_VERSIONS}
    for run in runs:
        for table, spec in schema.TABLES.items():
            for path in table_files(run, table):
                try:
                    meta = pq.read_metadata(path)
                except (OSError, pa.ArrowException) as e:
                    raise _corrupt(path, str(e)) from e
                version = (meta.metadata or {}).get(b"hardstat.schema_version")
                if version not in readable:
                    found = version.decode(errors="replace") if version else "none"
                    raise LogError(
                        f"log file {path} has schema version {found}, this hardstat reads "
                        f"versions {', '.join(map(str, schema.READABLE_VERSIONS))}; move it out "
                        "of the run directory or use a hardstat release that matches it"
                    )
                missing = [
                    c.name
                    for c in spec.columns
                    if c.since <= readable[version] and c.name not in meta.schema.names
                ]
                if missing:
                    raise LogError(
                        f"log file {path} lacks column(s) {', '.join(missing)} of table "
                        f"{table}; move it out of the run directory (it is not a {table} log)"
                    )


def _corrupt(path: Path | str, detail: str) -> LogError:
    detail = " ".join(detail.split())[:200]
    return LogError(
        f"log file {path} is corrupt or truncated ({detail}); move it out of the run directory "
        "(or restore it from a backup) and try again"
    )


def _table_source(table: str, runs: Sequence[RunInfo]) -> str:
    """SQL reading one table of the runs; runs of an older schema version read with each later
    column set to its default (one ``read_parquet`` per version present)."""
    cols = schema.TABLES[table].columns
    by_version: dict[int, list[str]] = {}
    for r in runs:
        if table_files(r, table):
            version = int(r.manifest.get("schema_version", schema.SCHEMA_VERSION))
            by_version.setdefault(version, []).append(str(r.path / table / "*.parquet"))
    if not by_version:
        typed = ", ".join(f"CAST(NULL AS {DUCKDB_TYPES[c.type]}) AS {c.name}" for c in cols)
        return f"SELECT {typed} WHERE false"
    selects = []
    for version, globs in sorted(by_version.items()):
        files = ", ".join("'" + g.replace("'", "''") + "'" for g in globs)
        names = ", ".join(
            c.name
            if c.since <= version
            else f"CAST({c.default} AS {DUCKDB_TYPES[c.type]}) AS {c.name}"
            for c in cols
        )
        selects.append(f"SELECT {names} FROM read_parquet([{files}])")
    return " UNION ALL ".join(selects)


def _runs_table(runs: Sequence[RunInfo]) -> pa.Table:
    rows: dict[str, list[Any]] = {name: [] for name, _, _ in RUNS_COLUMNS}
    for r in runs:
        m, config = r.manifest, r.manifest.get("config", {})
        k = int(m.get("queue_size", 0)) or None
        kept = m.get("band_kept")
        values = {
            "run": r.name,
            "path": str(r.path),
            "status": m.get("status"),
            "band": m.get("band"),
            "band_kept": kept,
            "kept_fraction": kept / k if kept is not None and k else None,
            "queue_size": k,
            "negatives": m.get("negatives", "queue"),
            "seed": m.get("seed"),
            "dataset": (m.get("dataset") or {}).get("spec"),
            "backbone": config.get("model", {}).get("backbone"),
            "batch_size": config.get("optim", {}).get("batch_size"),
            "processes": m.get("processes", 1),
            "epochs": config.get("optim", {}).get("epochs"),
            "steps_done": m.get("steps_done"),
            "epochs_done": m.get("epochs_done"),
            "created": m.get("created"),
            "config": json.dumps(config),
        }
        for name in rows:
            rows[name].append(values[name])
    types = {
        "VARCHAR": pa.string(),
        "INTEGER": pa.int32(),
        "DOUBLE": pa.float64(),
    }
    return pa.table({name: pa.array(rows[name], types[t]) for name, t, _ in RUNS_COLUMNS})


def connect(
    runs: Sequence[RunInfo],
    *,
    read_only: bool = True,
    threads: int | None = None,
    memory_limit: str | None = None,
) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with the log views of ``runs``.

    Every log file's footer is checked first (:func:`check_log_files`). With ``read_only`` (the
    default) the connection can only read: file access is limited to the runs' directories
    (``allowed_directories``, plus DuckDB's own spill directory), writing files outside them,
    attaching databases and loading extensions are refused, and the configuration is locked.
    Statements that write *inside* a run directory (``COPY ... TO``) are stopped by
    :func:`check_select`, which every user-supplied query must pass.
    """
    if not runs:
        raise RunError("no runs to analyse")
    check_log_files(runs)
    con = duckdb.connect(":memory:")
    try:
        if threads:
            con.execute(f"SET threads = {int(threads)}")
        if memory_limit:
            con.execute("SET memory_limit = ?", [memory_limit])
        # hardstat prints its own progress; DuckDB's bar would mix into stderr (and the
        # configuration is locked below, so it could not be turned off later)
        con.execute("SET enable_progress_bar = false")
        runs_arrow = _runs_table(runs)
        con.register("_runs_arrow", runs_arrow)
        con.execute("CREATE TABLE runs AS SELECT * FROM _runs_arrow")
        con.unregister("_runs_arrow")
        for table in schema.TABLES:
            con.execute(f"CREATE VIEW {table} AS {_table_source(table, runs)}")
        if read_only:
            dirs = sorted({str(r.path) + "/" for r in runs})
            con.execute("SET allowed_directories = ?", [dirs])
            con.execute("SET enable_external_access = false")
            con.execute("SET autoinstall_known_extensions = false")
            con.execute("SET autoload_known_extensions = false")
            con.execute("SET lock_configuration = true")
    except duckdb.Error as e:
        con.close()
        raise translate_error(e, runs=runs) from e
    return con


# Statement types a user query may have. EXPLAIN is allowed only around a SELECT (checked
# separately: EXPLAIN ANALYZE executes its statement).
_ALLOWED = {duckdb.StatementType.SELECT}
_EXPLAIN = re.compile(r"^\s*explain\s+(?:analy[sz]e\s+)?", re.IGNORECASE)
_FIRST_WORD = re.compile(r"[A-Za-z_]+")


def check_select(con: duckdb.DuckDBPyConnection, sql: str) -> duckdb.Statement:
    """Return the single SELECT statement in ``sql``; raise QueryError for anything else.

    Allowed: one statement of type SELECT (including ``WITH``, ``FROM ...``, ``VALUES``,
    ``DESCRIBE``, ``SHOW``, ``SUMMARIZE``, ``PIVOT ... IN (...)``) or ``EXPLAIN [ANALYZE]`` of
    one. Refused, with the statement type in the message: COPY, INSERT, UPDATE, DELETE, MERGE,
    CREATE, DROP, ALTER, ATTACH, DETACH, SET, RESET, USE, PRAGMA, INSTALL, LOAD, EXPORT, CALL,
    PREPARE, EXECUTE, transactions, VACUUM, CHECKPOINT, and several statements at once.
    """
    statements = _parse(con, sql)
    if len(statements) != 1:
        kinds = ", ".join(_kind(st) for st in statements) or "none"
        raise QueryError(
            f"give exactly one SELECT statement (got {len(statements)}: {kinds}); "
            "hardstat sql only reads"
        )
    statement = statements[0]
    kind = _type(statement)
    if kind == duckdb.StatementType.EXPLAIN:
        inner = _parse(con, _EXPLAIN.sub("", statement.query, count=1))
        if len(inner) == 1 and _type(inner[0]) in _ALLOWED:
            return statement
        raise QueryError(
            "EXPLAIN is allowed only as EXPLAIN [ANALYZE] SELECT ... (one SELECT, no options); "
            "hardstat sql only reads"
        )
    if kind not in _ALLOWED:
        hint = (
            "; PIVOT needs an explicit list here: PIVOT ... ON col IN (v1, v2)"
            if kind == duckdb.StatementType.MULTI
            else "; use SELECT * FROM f() instead of CALL f()"
            if kind == duckdb.StatementType.CALL
            else "; save results with --format csv|json or --format parquet --out FILE"
            if kind == duckdb.StatementType.COPY
            else ""
        )
        raise QueryError(
            f"refused a {_kind(statement)} statement: hardstat sql runs only a single SELECT "
            f"and never changes logs or writes files{hint}"
        )
    return statement


def _parse(con: duckdb.DuckDBPyConnection, sql: str) -> list[duckdb.Statement]:
    try:
        return list(con.extract_statements(sql))
    except duckdb.Error as e:
        raise translate_error(e) from e


def _type(statement: duckdb.Statement) -> duckdb.StatementType | None:
    """The statement's type; None for a type the Python client cannot name (never allowed)."""
    try:
        return statement.type
    except ValueError:
        return None


def _kind(statement: duckdb.Statement) -> str:
    """The statement type, with the keyword the user wrote when it differs (LOAD (INSTALL))."""
    kind_type = _type(statement)
    kind = kind_type.name if kind_type is not None else "UNKNOWN"
    m = _FIRST_WORD.search(statement.query)
    word = m.group(0).upper() if m else ""
    return f"{kind} ({word})" if word and word != kind else kind


def query(
    con: duckdb.DuckDBPyConnection,
    sql: str,
    params: Sequence[Any] | Mapping[str, Any] | None = None,
    *,
    select_only: bool = False,
) -> pa.Table:
    """Run one SQL query and return an Arrow table; DuckDB errors become one-line errors.

    ``params`` binds ``?`` / ``$1`` (a sequence) or ``$name`` (a mapping) parameters. With
    ``select_only`` the query must pass :func:`check_select` first (for SQL from users). A
    statement without a result (only possible without ``select_only``) gives an empty table.
    """
    if select_only:
        check_select(con, sql)
    try:
        rel = con.sql(sql, params=_params(params))
        return rel.to_arrow_table() if rel is not None else pa.table({})
    except duckdb.Error as e:
        raise translate_error(e, con=con) from e


def query_batches(
    con: duckdb.DuckDBPyConnection,
    sql: str,
    params: Sequence[Any] | Mapping[str, Any] | None = None,
    *,
    batch_rows: int = 65_536,
    select_only: bool = True,
) -> tuple[pa.Schema, Iterator[pa.RecordBatch]]:
    """Run one SELECT and stream its result: ``(schema, batches)``, each at most ``batch_rows``.

    For results too large to hold at once (``hardstat sql`` writes csv/json/parquet this way).
    Errors while streaming are translated like :func:`query`'s.
    """
    if select_only:
        check_select(con, sql)
    try:
        rel = con.sql(sql, params=_params(params))
        if rel is None:
            raise QueryError("the statement returned no result; give a SELECT")
        reader = rel.to_arrow_reader(batch_rows)
    except duckdb.Error as e:
        raise translate_error(e, con=con) from e

    def batches() -> Iterator[pa.RecordBatch]:
        try:
            yield from reader
        except duckdb.Error as e:
            raise translate_error(e, con=con) from e

    return reader.schema, batches()


def _params(params: Sequence[Any] | Mapping[str, Any] | None) -> Any:
    if params is None:
        return None
    return dict(params) if isinstance(params, Mapping) else list(params)


# DuckDB errors that come from the query itself, never from a damaged file.
_USER_ERRORS = (
    duckdb.ParserException,
    duckdb.BinderException,
    duckdb.CatalogException,
    duckdb.ConversionException,
    duckdb.OutOfRangeException,
    duckdb.TypeMismatchException,
    duckdb.InvalidTypeException,
    duckdb.NotImplementedException,
    duckdb.PermissionException,
    duckdb.OutOfMemoryException,
    duckdb.InterruptException,
)
_FILE_WORDS = (
    "parquet",
    "magic bytes",
    "too small",
    "corrupt",
    "footer",
    "thrift",
    "tprotocol",
    "page header",
    "decompress",
    "zstd",
    "snappy",
    "exceeded size limit",
    "truncated",
)
_PATH_IN_MESSAGE = re.compile(r"""['"]([^'"]+\.parquet)['"]""")


def translate_error(
    e: Exception,
    *,
    con: duckdb.DuckDBPyConnection | None = None,
    runs: Sequence[RunInfo] | None = None,
) -> LogError | QueryError:
    """A DuckDB exception as a one-line hardstat error that says what to do.

    An error that points at a damaged log file becomes a LogError naming the file: taken from
    DuckDB's message, or, when the message names none, found by reading the log files of
    ``runs`` (or of the ``runs`` table of ``con``) until one fails.
    """
    text = _one_line(str(e))
    file_words = any(w in text.lower() for w in _FILE_WORDS)
    if isinstance(e, duckdb.PermissionException):
        return QueryError(f"{text[:400]}; queries read only files inside the runs' directories")
    # Damaged pages surface as DuckDB's base Error class (thrift decoding: "don't know what
    # type", "Varint-decoding found too large number", ...), often without a file name.
    if isinstance(e, _USER_ERRORS) or not (file_words or type(e) is duckdb.Error):
        return QueryError(text[:500])
    m = _PATH_IN_MESSAGE.search(text)
    if m and Path(m.group(1)).is_file():
        return _corrupt(m.group(1), text)
    bad = _find_unreadable_file(runs if runs is not None else _runs_of(con))
    if bad is not None:
        return _corrupt(bad, text)
    if not file_words:
        return QueryError(text[:500])
    return LogError(
        f"a log file is corrupt or truncated ({text[:300]}); find it with 'hardstat sql' on "
        "each table, move it out of the run directory (or restore it) and try again"
    )


def _one_line(message: str) -> str:
    """DuckDB's message without its multi-line ``LINE n: ... ^^^`` context, on one line."""
    message = re.split(r"\n\s*LINE \d+:", message, maxsplit=1)[0]
    return " ".join(message.split())


def _runs_of(con: duckdb.DuckDBPyConnection | None) -> list[RunInfo]:
    if con is None:
        return []
    try:
        rows = con.execute("SELECT run, path FROM runs").fetchall()
    except duckdb.Error:
        return []
    return [RunInfo(str(name), Path(path), {}) for name, path in rows]


def _find_unreadable_file(runs: Sequence[RunInfo]) -> Path | None:
    """The first log file with a page that cannot be decoded (slow: decodes every file)."""
    for run in runs:
        for table in schema.TABLES:
            for path in table_files(run, table):
                try:
                    with pq.ParquetFile(path) as f:
                        for _ in f.iter_batches(batch_size=1 << 20):
                            pass
                except (OSError, pa.ArrowException):
                    return path
    return None
