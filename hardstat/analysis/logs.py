"""Run logs as DuckDB views: ``pairs, queries, steps, evals, samples, classes, runs``.

:func:`find_runs` turns run directories, sweep directories (holding runs) and globs into checked
runs; :func:`connect` opens an in-memory DuckDB connection whose views read those runs' Parquet
files (every row carries its ``run``), and :func:`query` runs SQL on it, turning DuckDB errors
into one-line :class:`~hardstat.errors.LogError` / :class:`~hardstat.errors.QueryError`. No torch.
"""

from __future__ import annotations

import glob as _glob
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

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
    ("queue_size", "INTEGER", "K."),
    ("seed", "INTEGER", "Random seed."),
    ("dataset", "VARCHAR", "Dataset spec."),
    ("backbone", "VARCHAR", "Backbone."),
    ("batch_size", "INTEGER", "Batch size."),
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
        matches = sorted(Path(p) for p in _glob.glob(text)) if _glob.has_magic(text) else [
            Path(text)
        ]
        hits: list[Path] = []
        for m in matches:
            if _is_run(m):
                hits.append(m)
            elif m.is_dir():
                hits.extend(sorted(c for c in m.iterdir() if c.is_dir() and _is_run(c)))
        if not hits:
            if not _glob.has_magic(text) and not Path(text).exists():
                raise RunError(f"{text} does not exist; give a run directory, a sweep or a glob")
            raise RunError(
                f"no hardstat run matches {text} (a run directory holds manifest.json)"
            )
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


def _table_source(table: str, runs: Sequence[RunInfo]) -> str:
    globs = [
        str(r.path / table / "*.parquet")
        for r in runs
        if (r.path / table).is_dir() and any((r.path / table).glob("*.parquet"))
    ]
    cols = schema.TABLES[table].columns
    if not globs:
        typed = ", ".join(f"CAST(NULL AS {DUCKDB_TYPES[c.type]}) AS {c.name}" for c in cols)
        return f"SELECT {typed} WHERE false"
    files = ", ".join("'" + g.replace("'", "''") + "'" for g in globs)
    names = ", ".join(c.name for c in cols)
    return f"SELECT {names} FROM read_parquet([{files}])"


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
            "seed": m.get("seed"),
            "dataset": (m.get("dataset") or {}).get("spec"),
            "backbone": config.get("model", {}).get("backbone"),
            "batch_size": config.get("optim", {}).get("batch_size"),
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
    return pa.table(
        {name: pa.array(rows[name], types[t]) for name, t, _ in RUNS_COLUMNS}
    )


def connect(
    runs: Sequence[RunInfo],
    *,
    read_only: bool = True,
    threads: int | None = None,
    memory_limit: str | None = None,
) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with the log views of ``runs``.

    With ``read_only`` (the default) the connection can only read: file access is limited to
    the runs' directories (``allowed_directories``), writing files, attaching databases and
    loading extensions are refused, and the configuration is locked.
    """
    if not runs:
        raise RunError("no runs to analyse")
    con = duckdb.connect(":memory:")
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    if memory_limit:
        con.execute("SET memory_limit = ?", [memory_limit])
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
    return con


def query(
    con: duckdb.DuckDBPyConnection, sql: str, params: Sequence[Any] | dict[str, Any] | None = None
) -> pa.Table:
    """Run one SQL query and return an Arrow table; DuckDB errors become one-line errors."""
    try:
        rel = con.execute(sql, params) if params is not None else con.execute(sql)
        return rel.to_arrow_table()
    except duckdb.Error as e:
        raise translate_error(e) from e


def translate_error(e: Exception) -> LogError | QueryError:
    """A DuckDB exception as a one-line hardstat error that says what to do."""
    text = " ".join(str(e).split())
    lowered = text.lower()
    if "parquet" in lowered and any(
        w in lowered for w in ("magic", "too small", "corrupt", "invalid", "footer", "metadata")
    ):
        return LogError(
            f"a log file is corrupt or truncated ({text[:300]}); move that file out of the run "
            "directory (or restore it) and try again"
        )
    return QueryError(text[:500])
