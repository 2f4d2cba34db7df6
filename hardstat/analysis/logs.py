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
import os
import re
import weakref
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from hardstat import interrupts, schema
from hardstat import runs as _runs
from hardstat.errors import (
    ConfigError,
    CorruptLogError,
    HardstatError,
    Interrupted,
    LogError,
    QueryError,
    RunError,
)

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
    (
        "status",
        "VARCHAR",
        "running, interrupted, finished, or crashed (the manifest says running but no process "
        "holds the run's lock: its training died; resume it).",
    ),
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
        # a path that exists is that path, even when it holds glob characters ([, *, ?);
        # only text that names nothing is a pattern
        pattern = _glob.has_magic(text) and not Path(text).exists()
        matches = sorted(Path(p) for p in _glob.glob(text)) if pattern else [Path(text)]
        hits: list[Path] = []
        for m in matches:
            try:
                if _is_run(m):
                    hits.append(m)
                elif m.is_dir():
                    hits.extend(sorted(c for c in m.iterdir() if c.is_dir() and _is_run(c)))
            except PermissionError as e:
                raise RunError(
                    f"cannot read {m} (permission denied); ask its owner for read access"
                ) from e
        if not hits:
            if not pattern and not Path(text).exists():
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
    """The complete Parquet files of one table of one run (hidden ``.tmp`` files excluded),
    listed from the directory (so glob characters in the run's path are never a pattern)."""
    folder = run.path / table
    try:
        return sorted(
            p for p in folder.iterdir() if p.suffix == ".parquet" and not p.name.startswith(".")
        )
    except FileNotFoundError:
        return []
    except OSError as e:
        raise _unreadable(folder, e) from e


def _unreadable(path: Path, e: OSError) -> HardstatError:
    if isinstance(e, PermissionError):
        return RunError(f"cannot read {path} (permission denied); ask its owner for read access")
    return LogError(f"cannot read {path} ({_runs.os_reason(e)}); check the file system")


def glob_literal(path: str) -> str:
    """A path as a DuckDB glob that matches only itself (``[``, ``*`` and ``?`` bracketed)."""
    return "".join(f"[{c}]" if c in "*?[" else c for c in path)


def check_log_files(runs: Sequence[RunInfo]) -> None:
    """Read the footer of every log file; raise LogError naming the first bad one.

    A file is bad when its footer cannot be read (truncated, empty, not Parquet), when it
    carries a schema version outside :data:`hardstat.schema.READABLE_VERSIONS`, when it lacks
    a column its version's table has or holds one of another type (text ranks, say), when a
    column the schema declares non-nullable holds nulls, when its ``run`` column names another
    run than the run directory's manifest, or when a pairs ``rank`` lies outside 1..K or a
    ``label`` is negative. Only footers and their statistics are read (milliseconds per file;
    a column is read only for a file written without statistics); files are not changed.
    """
    readable = {str(v).encode(): v for v in schema.READABLE_VERSIONS}
    for run in runs:
        for table, spec in schema.TABLES.items():
            for path in table_files(run, table):
                try:
                    meta = pq.read_metadata(path)
                    arrow = meta.schema.to_arrow_schema()
                except PermissionError as e:
                    raise _unreadable(path, e) from e
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
                columns = [c for c in spec.columns if c.since <= readable[version]]
                missing = [c.name for c in columns if c.name not in arrow.names]
                if missing:
                    raise LogError(
                        f"log file {path} lacks column(s) {', '.join(missing)} of table "
                        f"{table}; move it out of the run directory (it is not a {table} log)"
                    )
                for c in columns:
                    found_type = arrow.field(c.name).type
                    if not _type_fits(c.type, found_type):
                        raise CorruptLogError(
                            f"log file {path}: column {c.name} has type {found_type}, the "
                            f"schema says {c.type}; move the file out of the run directory "
                            "(it was not written by hardstat)"
                        )
                _check_values(path, meta, run, table, columns)


def _type_fits(declared: str, found: pa.DataType) -> bool:
    """Whether a Parquet column's Arrow type can stand for a schema type (any integer width
    for an integer, any float for a float, plain or dictionary-encoded text)."""
    if pa.types.is_dictionary(found):
        found = found.value_type
    if declared.startswith("string"):
        return pa.types.is_string(found) or pa.types.is_large_string(found)
    if declared.startswith("int"):
        return pa.types.is_integer(found)
    if declared.startswith("float"):
        return pa.types.is_floating(found)
    return declared == "bool" and pa.types.is_boolean(found)


def _check_values(
    path: Path, meta: pq.FileMetaData, run: RunInfo, table: str, columns: Sequence[Any]
) -> None:
    """Nulls in non-nullable columns, the run name, ranks and labels, from the statistics."""
    index = {meta.row_group(0).column(j).path_in_schema: j for j in range(meta.num_columns)}
    k = run.manifest.get("queue_size")
    for c in columns:
        j = index.get(c.name)
        if j is None:
            continue
        nulls, low, high = 0, None, None
        for g in range(meta.num_row_groups):
            stats = meta.row_group(g).column(j).statistics
            if stats is None or not stats.has_null_count:
                nulls = _count_nulls(path, c.name) if not c.nullable else 0
                low = high = None
                break
            nulls += stats.null_count
            if stats.has_min_max:
                low = stats.min if low is None else min(low, stats.min)
                high = stats.max if high is None else max(high, stats.max)
        if nulls and not c.nullable:
            raise CorruptLogError(
                f"log file {path}: column {c.name} holds {nulls} null(s), which the schema does "
                "not allow; move the file out of the run directory (or restore it)"
            )
        if low is None or high is None:
            continue
        if c.name == "run" and (_text(low) != run.name or _text(high) != run.name):
            other = _text(low) if _text(low) != run.name else _text(high)
            raise CorruptLogError(
                f"log file {path} holds rows of run {other!r} but its run directory's manifest "
                f"names the run {run.name!r}; move the file to its own run directory"
            )
        if (
            table == "pairs"
            and c.name == "rank"
            and isinstance(k, int)
            and (int(low) < 1 or int(high) > k)
        ):
            raise CorruptLogError(
                f"log file {path}: ranks run from {low} to {high}, outside 1..{k} (the "
                "run's queue size); the file is damaged or belongs to another run"
            )
        if c.name == "label" and int(low) < 0:
            raise CorruptLogError(
                f"log file {path}: a label is negative ({low}); the file is damaged"
            )


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _count_nulls(path: Path, column: str) -> int:
    try:
        return int(pq.read_table(path, columns=[column]).column(column).null_count)
    except (OSError, pa.ArrowException) as e:
        raise _corrupt(path, str(e)) from e


def _corrupt(path: Path | str, detail: str) -> LogError:
    detail = " ".join(detail.split())[:200]
    return CorruptLogError(
        f"log file {path} is corrupt or truncated ({detail}); move it out of the run directory "
        "(or restore it from a backup) and try again"
    )


_CONNECTED: weakref.WeakKeyDictionary[Any, dict[tuple[str, str], list[Path]]] = (
    weakref.WeakKeyDictionary()
)
"""The files behind each connection's views, per (run, table), as listed when it opened."""


def connected_files(con: Any, run: str, table: str) -> list[Path]:
    """The files of ``table`` of ``run`` that ``con``'s views read: listed once, when
    :func:`connect` opened it, so files a still-training run adds later are not among them.
    A connection made elsewhere gets the run directory's files as listed now."""
    known = _CONNECTED.get(con)
    if known is not None and (run, table) in known:
        return list(known[(run, table)])
    rows = con.execute("SELECT path FROM runs WHERE run = ?", [run]).fetchall()
    if not rows:
        raise RunError(f"run {run} is not on this connection")
    return table_files(RunInfo(run, Path(rows[0][0]), {}), table)


def _table_source(
    table: str, runs: Sequence[RunInfo], found: dict[tuple[str, str], list[Path]] | None = None
) -> str:
    """SQL reading one table of the runs; runs of an older schema version read with each later
    column set to its default (one ``read_parquet`` per version present). ``found`` collects
    the files per (run, table)."""
    cols = schema.TABLES[table].columns
    by_version: dict[int, list[str]] = {}
    for r in runs:
        files = table_files(r, table)  # listed, each a glob that matches only itself
        if found is not None:
            found[(r.name, table)] = files
        if files:
            version = int(r.manifest.get("schema_version", schema.SCHEMA_VERSION))
            by_version.setdefault(version, []).extend(glob_literal(str(f)) for f in files)
    if not by_version:
        typed = ", ".join(f"CAST(NULL AS {DUCKDB_TYPES[c.type]}) AS {c.name}" for c in cols)
        return f"SELECT {typed} WHERE false"
    selects = []
    for version, globs in sorted(by_version.items()):
        listed = ", ".join("'" + g.replace("'", "''") + "'" for g in globs)
        names = ", ".join(
            c.name
            if c.since <= version
            else f"CAST({c.default} AS {DUCKDB_TYPES[c.type]}) AS {c.name}"
            for c in cols
        )
        selects.append(f"SELECT {names} FROM read_parquet([{listed}])")
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
            "status": _runs.effective_status(r.path, m),
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

    Every log file's footer is checked first (:func:`check_log_files`). DuckDB may use at most
    ``memory_limit`` (:func:`memory_bytes`; default ``HARDSTAT_MEMORY_LIMIT`` or
    :data:`MEMORY_LIMIT`) and spills to disk beyond it. With ``read_only`` (the
    default) the connection can only read: file access is limited to the runs' directories
    (``allowed_directories``, plus DuckDB's own spill directory), writing files outside them,
    attaching databases and loading extensions are refused, and the configuration is locked.
    Statements that write *inside* a run directory (``COPY ... TO``) are stopped by
    :func:`check_select`, which every user-supplied query must pass.
    """
    if not runs:
        raise RunError("no runs to analyse")
    check_log_files(runs)
    limit = memory_bytes(memory_limit or os.environ.get("HARDSTAT_MEMORY_LIMIT") or MEMORY_LIMIT)
    con = duckdb.connect(":memory:")
    interrupts.register(con)  # Ctrl-C stops its queries (during a CLI command)
    try:
        if threads:
            con.execute(f"SET threads = {int(threads)}")
        con.execute("SET memory_limit = ?", [f"{limit // 2**20}MiB"])
        # hardstat prints its own progress; DuckDB's bar would mix into stderr (and the
        # configuration is locked below, so it could not be turned off later)
        con.execute("SET enable_progress_bar = false")
        runs_arrow = _runs_table(runs)
        con.register("_runs_arrow", runs_arrow)
        con.execute("CREATE TABLE runs AS SELECT * FROM _runs_arrow")
        con.unregister("_runs_arrow")
        found: dict[tuple[str, str], list[Path]] = {}
        for table in schema.TABLES:
            con.execute(f"CREATE VIEW {table} AS {_table_source(table, runs, found)}")
        _CONNECTED[con] = found
        if read_only:
            # each run directory as itself and as the literal glob that lists its files
            dirs = sorted({d + "/" for r in runs for d in (str(r.path), glob_literal(str(r.path)))})
            con.execute("SET allowed_directories = ?", [dirs])
            con.execute("SET enable_external_access = false")
            con.execute("SET autoinstall_known_extensions = false")
            con.execute("SET autoload_known_extensions = false")
            con.execute("SET lock_configuration = true")
    except duckdb.Error as e:
        con.close()
        raise translate_error(e, runs=runs) from e
    return con


MEMORY_LIMIT = "50%"
"""Default memory limit of a log connection: half of this machine's memory (or of the
container's limit), rather than DuckDB's own 80%."""

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(%|b|kb|mb|gb|tb|kib|mib|gib|tib)?\s*$", re.IGNORECASE)
_UNITS = {
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}


def memory_bytes(text: str) -> int:
    """``"50%"`` (of the machine's memory), ``"4GB"``, ``"512MiB"`` -> bytes; ConfigError for
    anything else or less than 64 MiB."""
    m = _SIZE.match(str(text))
    if not m:
        raise ConfigError(
            f"memory limit {text!r} is not a size; give a percentage of this machine's memory "
            "(50%) or a size (4GB, 512MiB)"
        )
    value, unit = float(m.group(1)), (m.group(2) or "b").lower()
    if unit == "%":
        if not 0 < value <= 100:
            raise ConfigError(f"memory limit {text!r}: a percentage must be in (0, 100]")
        total = physical_memory()
        size = int(total * value / 100)
    else:
        size = int(value * _UNITS[unit])
    if size < 64 * 2**20:
        raise ConfigError(f"memory limit {text!r} is below 64 MiB; give more")
    return size


def physical_memory() -> int:
    """This machine's memory in bytes, or the container's (cgroup) limit when smaller."""
    total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    for cgroup in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(cgroup).read_text().strip()
        except OSError:
            continue
        if text.isdigit():
            total = min(total, int(text))
    return total


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
            _check_tree(con, inner[0])
            return statement
        raise QueryError(
            "EXPLAIN is allowed only as EXPLAIN [ANALYZE] SELECT ... (one SELECT, no options); "
            "hardstat sql only reads"
        )
    if kind in _ALLOWED:
        _check_tree(con, statement)
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


# Query nodes a read-only statement may contain; a CTE or subquery that is an INSERT, UPDATE,
# DELETE (``WITH d AS (DELETE ... RETURNING *) SELECT ...``) or anything else is refused.
_READ_NODES = {"SELECT_NODE", "SET_OPERATION_NODE", "RECURSIVE_CTE_NODE", "CTE_NODE"}


def _check_tree(con: duckdb.DuckDBPyConnection, statement: duckdb.Statement) -> None:
    """Refuse a SELECT whose statement tree (DuckDB's own parse, as JSON) holds any query node
    but a read: the first keyword alone says nothing about what a CTE does."""
    try:
        rows = con.execute("SELECT json_serialize_sql(?)", [statement.query]).fetchall()
    except duckdb.Error as e:
        raise QueryError(f"cannot check the statement ({_one_line(str(e))[:200]})") from e
    tree = json.loads(rows[0][0]) if rows else {"error": True}
    if tree.get("error"):
        raise QueryError(
            "cannot check that this statement only reads "
            f"({_one_line(str(tree.get('error_message', '')))[:200]}); hardstat sql runs only a "
            "single plain SELECT"
        )
    kinds = sorted(_node_types(tree) - _READ_NODES)
    if kinds:
        what = ", ".join(k.removesuffix("_NODE").removesuffix("_QUERY") for k in kinds)
        raise QueryError(
            f"refused a SELECT that contains {what}: hardstat sql runs only statements that "
            "read, and never changes logs or tables"
        )


def _node_types(tree: Any) -> set[str]:
    """Every query node type (``SELECT_NODE``, ``DELETE_QUERY_NODE``...) in a serialized
    statement."""
    found: set[str] = set()
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            kind = node.get("type")
            if isinstance(kind, str) and kind.endswith("_NODE"):
                found.add(kind)
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return found


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
        except (RuntimeError, pa.ArrowException) as e:  # "Query interrupted" from the stream
            if interrupts.stop_reason() is None:
                raise
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
) -> HardstatError:
    """A DuckDB exception as a one-line hardstat error that says what to do.

    An error that points at a damaged log file becomes a LogError naming the file: taken from
    DuckDB's message, or, when the message names none, found by reading the log files of
    ``runs`` (or of the ``runs`` table of ``con``) until one fails.
    """
    stopped = interrupts.stop_reason()
    if stopped == "interrupt":
        return Interrupted("interrupted (Ctrl-C); the query was stopped")
    if stopped == "timeout":
        return QueryError(
            f"the query ran longer than its time limit ({interrupts.time_limit_seconds():g} s) "
            "and was stopped; raise --timeout or narrow the query (e.g. WHERE step = ...)"
        )
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
