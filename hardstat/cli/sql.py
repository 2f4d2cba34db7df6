"""``hardstat sql``: one read-only SELECT over the log views of one or more runs.

The views (``pairs, queries, steps, evals, samples, classes`` and the table ``runs``) come from
:func:`hardstat.analysis.logs.connect`; the statement is checked by
:func:`hardstat.analysis.logs.check_select` before it runs. Results go to stdout (table, csv,
json) or to a Parquet file outside every run directory (``--parquet FILE``).
"""

from __future__ import annotations

import datetime as _dt
import decimal
import json
import math
import os
import re
from collections.abc import Iterator, Sequence
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from hardstat.cli.errors import reports_errors
from hardstat.cli.options import OutAlias, either
from hardstat.display import printable

if TYPE_CHECKING:
    import pyarrow as pa

DEFAULT_RUNS = "runs/*"
DEFAULT_TIMEOUT = 3600.0
"""Seconds a query may run (--timeout; 0: no limit)."""
CELL_WIDTH = 60
"""Widest cell of the table format, in characters; longer values end in an ellipsis."""

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_INT = re.compile(r"^[+-]?\d+$")
_FLOAT = re.compile(r"^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$")


class SqlFormat(StrEnum):
    table = "table"
    csv = "csv"
    json = "json"
    parquet = "parquet"


@reports_errors
def sql(
    args: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="[RUN]... QUERY",
            help="Run directories, sweep directories (holding runs) or globs, then the SQL "
            "query as the last argument (default runs: runs/*).",
            show_default=False,
        ),
    ] = None,
    fmt: Annotated[
        SqlFormat,
        typer.Option(
            "--format",
            "-f",
            help="table (aligned text, at most --limit rows), csv or json (every row, on "
            "stdout), parquet (every row, to --parquet FILE).",
        ),
    ] = SqlFormat.table,
    limit: Annotated[int, typer.Option(min=0, help="Rows shown by --format table (0: all).")] = 100,
    param: Annotated[
        list[str] | None,
        typer.Option(
            "--param",
            "-p",
            metavar="NAME=VALUE",
            help="Bind $NAME in the query (repeatable). Values that look like numbers bind "
            "as integers or floats, anything else as text.",
            show_default=False,
        ),
    ] = None,
    parquet: Annotated[
        Path | None,
        typer.Option(
            metavar="FILE",
            help="Write every row to this Parquet file instead of stdout (never inside a run "
            "directory); implies --format parquet.",
            show_default=False,
        ),
    ] = None,
    out: OutAlias = None,
    show_schema: Annotated[
        bool,
        typer.Option(
            "--schema", help="List the views and their columns (no RUN or QUERY) and exit."
        ),
    ] = False,
    timeout: Annotated[
        float,
        typer.Option(
            min=0,
            metavar="SECONDS",
            help="Stop the query (one line, exit 1) once it has run this long, writing its "
            "result included; 0: no limit.",
        ),
    ] = DEFAULT_TIMEOUT,
    memory_limit: Annotated[
        str,
        typer.Option(
            metavar="SIZE",
            help="Memory DuckDB may use before it spills to disk: a percentage of this "
            "machine's memory (or container limit) or a size such as 4GB or 512MiB. "
            "Default: HARDSTAT_MEMORY_LIMIT, else 50%.",
            show_default=False,
        ),
    ] = "",
) -> None:
    """Run one read-only SELECT over the logs of runs; every row carries its `run`.

    Views: pairs, queries, steps, evals, samples, classes (see docs/schema.md) and the table
    runs (one row per run: band, kept_fraction, seed, status...; see --schema). Only a single
    SELECT (WITH, FROM..., DESCRIBE, SUMMARIZE, EXPLAIN SELECT) is accepted: the logs cannot be
    changed and no file is written, except the one --parquet names. A query that starts with `-`
    goes after `--`. Ctrl-C stops a query at once (exit 130); --timeout and --memory-limit
    bound it.

    Examples:

    * `hardstat sql "SELECT run, band, seed FROM runs"`

    * `hardstat sql runs/sweep "SELECT run, max(top1) FROM evals WHERE kind = 'knn' GROUP BY run"`

    * `hardstat sql runs/a 'SELECT rank, similarity FROM pairs WHERE query_id = $q' -p q=17`

    * `hardstat sql runs/a "SELECT * FROM pairs WHERE rank <= 10" --parquet hard.parquet`
    """
    out = either(parquet, out, "--parquet")
    if out is not None and fmt is SqlFormat.table:
        fmt = SqlFormat.parquet
    if show_schema:
        if args:
            raise typer.BadParameter(
                "--schema lists the fixed views and takes no RUN or QUERY", param_hint="--schema"
            )
        if fmt is SqlFormat.table:
            typer.echo("\n".join(schema_text()))
        else:
            _emit(*_schema_result(), fmt=fmt, limit=0, out=out, run_dirs=[])
        return
    if not args:
        raise typer.BadParameter("give the SQL query (the last argument)", param_hint="QUERY")
    *specs, text = args
    if not text.strip() or names_a_path(text):
        raise typer.BadParameter(
            f"the last argument is the SQL query, got {text!r}; e.g. "
            f"hardstat sql {text} 'SELECT * FROM runs'",
            param_hint="QUERY",
        )
    params = parse_params(param or [])
    if fmt is SqlFormat.parquet and out is None:
        raise typer.BadParameter("--format parquet writes to a file: add --parquet FILE")
    if fmt is not SqlFormat.parquet and out is not None:
        raise typer.BadParameter(
            "--parquet writes Parquet; table, csv and json go to stdout (redirect with >)",
            param_hint="--parquet",
        )

    from hardstat import interrupts
    from hardstat.analysis import logs
    from hardstat.errors import ConfigError, RunError

    if memory_limit:
        try:
            logs.memory_bytes(memory_limit)
        except ConfigError as e:
            raise typer.BadParameter(str(e), param_hint="--memory-limit") from None

    if not specs and not Path(DEFAULT_RUNS).parent.is_dir():
        raise RunError(
            f"no RUN given and ./{Path(DEFAULT_RUNS).parent} does not exist; give run "
            "directories, sweeps or globs before the QUERY"
        )
    runs = logs.find_runs(specs or [DEFAULT_RUNS])
    if out is not None:
        check_out_path(out, [r.path for r in runs])
    con = logs.connect(runs, memory_limit=memory_limit or None)
    try:
        statement = logs.check_select(con, text)
        check_params(set(statement.named_parameters), params)
        with interrupts.time_limit(timeout, con):
            schema, batches = logs.query_batches(con, text, params or None)
            _emit(schema, batches, fmt=fmt, limit=limit, out=out, run_dirs=[r.path for r in runs])
    finally:
        con.close()


def names_a_path(text: str) -> bool:
    """Whether the last argument looks like a run path rather than a query: one word that
    exists on disk. A query too long for a file name (or otherwise not one) is no path."""
    word = text.strip()
    if re.search(r"\s", word):
        return False
    try:
        return Path(word).exists()
    except (OSError, ValueError):  # ENAMETOOLONG, a NUL byte...
        return False


def parse_params(items: Sequence[str]) -> dict[str, Any]:
    """``NAME=VALUE`` strings as a dict; integers and floats by their look, else text."""
    params: dict[str, Any] = {}
    for item in items:
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or not _NAME.match(name):
            raise typer.BadParameter(
                f"{item!r} is not NAME=VALUE (NAME: letters, digits, _), e.g. -p step=100",
                param_hint="--param",
            )
        if name in params:
            raise typer.BadParameter(f"{name} is given twice", param_hint="--param")
        params[name] = parse_value(value)
    return params


def parse_value(text: str) -> int | float | str:
    """``'12'`` -> 12, ``'0.5'``/``'1e-3'`` -> float, anything else stays text."""
    stripped = text.strip()
    if _INT.match(stripped):
        return int(stripped)
    if _FLOAT.match(stripped):
        return float(stripped)
    return text


def check_params(used: set[str], given: dict[str, Any]) -> None:
    """Usage error unless the query's ``$names`` and the ``--param`` names agree."""
    if any(name.isdigit() for name in used):
        raise typer.BadParameter(
            "use named parameters ($name) with --param name=VALUE, not ? or $1",
            param_hint="QUERY",
        )
    missing, unused = sorted(used - set(given)), sorted(set(given) - used)
    if missing:
        raise typer.BadParameter(
            "the query uses "
            + ", ".join(f"${m}" for m in missing)
            + "; give "
            + " ".join(f"-p {m}=VALUE" for m in missing),
            param_hint="--param",
        )
    if unused:
        uses = ", ".join(f"${u}" for u in sorted(used)) or "no parameters"
        raise typer.BadParameter(
            f"{', '.join(unused)} not used by the query (it uses {uses})", param_hint="--param"
        )


def check_out_path(out: Path, run_dirs: Sequence[Path]) -> None:
    """Refuse an output file inside a run directory (any folder holding manifest.json)."""
    from hardstat import schema
    from hardstat.errors import HardstatError

    target = out.expanduser().resolve()
    if target.is_dir():
        raise HardstatError(
            f"--parquet {out} is a directory; give a file name, e.g. {out}/x.parquet"
        )
    resolved = [d.resolve() for d in run_dirs]
    for folder in target.parents:
        if folder in resolved or (folder / schema.MANIFEST_FILE).is_file():
            raise HardstatError(
                f"refusing to write {out} inside run directory {folder} (logs stay read-only); "
                "choose a path outside every run"
            )


def _emit(
    schema: pa.Schema,
    batches: Iterator[pa.RecordBatch],
    *,
    fmt: SqlFormat,
    limit: int,
    out: Path | None,
    run_dirs: Sequence[Path],
) -> None:
    if fmt is SqlFormat.table:
        for line in _table_lines(schema, batches, limit):
            typer.echo(line)
    elif fmt is SqlFormat.csv:
        _write_csv(schema, batches)
    elif fmt is SqlFormat.json:
        _write_json(schema, batches)
    else:
        assert out is not None
        rows = _write_parquet(schema, batches, out)
        typer.echo(f"wrote {rows} row{'s' if rows != 1 else ''} to {out}", err=True)
        typer.echo(str(out))


def _table_lines(schema: pa.Schema, batches: Iterator[pa.RecordBatch], limit: int) -> list[str]:
    import pyarrow as pa

    shown: list[list[Any]] = []
    total = 0
    for batch in batches:
        room = (limit - len(shown)) if limit else batch.num_rows
        if room > 0:
            shown.extend(batch.slice(0, room).to_pylist())
        total += batch.num_rows
    rows = [[cell(row[name]) for name in schema.names] for row in shown]
    numeric = [
        pa.types.is_integer(f.type) or pa.types.is_floating(f.type) or pa.types.is_decimal(f.type)
        for f in schema
    ]
    lines = format_table(list(schema.names), rows, numeric)
    noun = "row" if total == 1 else "rows"
    if len(shown) < total:
        cut = total - len(shown)
        lines.append(
            f"({len(shown)} of {total} {noun} shown; {cut} cut by --limit {limit}: raise it, "
            "or use --format csv/json/parquet for every row)"
        )
    else:
        lines.append(f"({total} {noun})")
    return lines


def format_table(
    columns: Sequence[str], rows: Sequence[Sequence[str]], numeric: Sequence[bool]
) -> list[str]:
    """An aligned text table: header, rule, rows; numeric columns right-aligned; control
    characters (terminal escapes in run data) shown as escapes."""
    columns = [printable(c) for c in columns]
    rows = [[printable(v) for v in row] for row in rows]
    widths = [len(c) for c in columns]
    for row in rows:
        widths = [max(w, len(v)) for w, v in zip(widths, row, strict=True)]

    def line(values: Sequence[str]) -> str:
        cells = [
            v.rjust(w) if num else v.ljust(w)
            for v, w, num in zip(values, widths, numeric, strict=True)
        ]
        return "  ".join(cells).rstrip()

    return [line(columns), "  ".join("-" * w for w in widths), *(line(r) for r in rows)]


def cell(value: Any, width: int = CELL_WIDTH) -> str:
    """One value as table text: null, true/false, 6 significant digits, one line, capped."""
    if value is None:
        text = "null"
    elif isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, float):
        text = f"{value:.6g}"
    elif isinstance(value, (list, dict)):
        text = json.dumps(_jsonable(value), ensure_ascii=False)
    elif isinstance(value, (_dt.date, _dt.time)):
        text = value.isoformat()
    else:
        text = str(value)
    text = printable(text)  # one line, and no terminal escapes
    return text if len(text) <= width else text[: width - 1] + "…"


def _write_csv(schema: pa.Schema, batches: Iterator[pa.RecordBatch]) -> None:
    import pyarrow.csv as pacsv

    stream = typer.get_binary_stream("stdout")
    options = pacsv.WriteOptions(include_header=True, quoting_style="needed")
    plain = _csv_schema(schema)
    with pacsv.CSVWriter(stream, plain, write_options=options) as writer:
        wrote = False
        for batch in batches:
            writer.write_batch(_csv_batch(batch, plain))
            wrote = True
        if not wrote:
            writer.write_table(plain.empty_table())
    stream.flush()


def _scalar_ok(t: pa.DataType) -> bool:
    """Numbers, booleans, strings and nulls: what every output format writes as it is."""
    import pyarrow as pa

    return (
        pa.types.is_integer(t)
        or pa.types.is_floating(t)
        or pa.types.is_boolean(t)
        or pa.types.is_string(t)
        or pa.types.is_large_string(t)
        or pa.types.is_null(t)
    )


def _csv_ok(t: pa.DataType) -> bool:
    import pyarrow as pa

    return (
        _scalar_ok(t) or pa.types.is_date(t) or pa.types.is_timestamp(t) or pa.types.is_decimal(t)
    )


def _csv_schema(schema: pa.Schema) -> pa.Schema:
    """The schema CSV can write: nested and exotic columns become text (JSON for nested)."""
    import pyarrow as pa

    return pa.schema([f if _csv_ok(f.type) else pa.field(f.name, pa.string()) for f in schema])


def _csv_batch(batch: pa.RecordBatch, plain: pa.Schema) -> pa.RecordBatch:
    import pyarrow as pa

    if batch.schema.equals(plain):
        return batch
    columns = []
    for col, field in zip(batch.columns, batch.schema, strict=True):
        if _csv_ok(field.type):
            columns.append(col)
        else:
            columns.append(
                pa.array(
                    [None if v is None else _text(v) for v in col.to_pylist()], type=pa.string()
                )
            )
    return pa.RecordBatch.from_arrays(columns, schema=plain)


def _text(value: Any) -> str:
    if isinstance(value, (list, dict)):
        return json.dumps(_jsonable(value), ensure_ascii=False)
    return str(value)


def _write_json(schema: pa.Schema, batches: Iterator[pa.RecordBatch]) -> None:
    """A JSON array of row objects, one row per line, streamed batch by batch.

    Flat numeric, boolean and text columns (the common case) are serialised by polars, about
    ten times faster than row dictionaries through :mod:`json`; other types go through
    :func:`_jsonable`. Both write NaN and infinities as null.
    """
    import polars as pl

    fast = all(_polars_json_ok(f.type) for f in schema)
    stream = typer.get_text_stream("stdout")
    first = True
    stream.write("[")
    for batch in batches:
        if batch.num_rows == 0:
            continue
        if fast:
            frame = pl.from_arrow(batch)
            assert isinstance(frame, pl.DataFrame)
            body = ",\n".join(frame.write_ndjson().splitlines())
        else:
            body = ",\n".join(
                json.dumps(_jsonable(r), ensure_ascii=False, separators=(",", ":"))
                for r in batch.to_pylist()
            )
        stream.write(("\n" if first else ",\n") + body)
        first = False
    stream.write("]\n" if first else "\n]\n")
    stream.flush()


def _polars_json_ok(t: pa.DataType) -> bool:
    import pyarrow as pa

    if pa.types.is_dictionary(t):
        return pa.types.is_string(t.value_type) or pa.types.is_large_string(t.value_type)
    return _scalar_ok(t)


def _jsonable(value: Any) -> Any:
    """Strict JSON values: NaN and infinities become null, times ISO 8601, bytes hex."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (_dt.date, _dt.time)):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return float(value) if value.is_finite() else None
    if isinstance(value, bytes):
        return value.hex()
    return str(value)


def _write_parquet(schema: pa.Schema, batches: Iterator[pa.RecordBatch], out: Path) -> int:
    """Write every batch to ``out`` (atomically: a hidden temporary file, then a rename)."""
    import pyarrow.parquet as pq

    from hardstat.runs import write_failed

    out = out.expanduser()
    tmp = out.with_name(f".{out.name}.tmp")
    rows = 0
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        with pq.ParquetWriter(tmp, schema, compression="zstd") as writer:
            for batch in batches:
                writer.write_batch(batch)
                rows += batch.num_rows
        os.replace(tmp, out)
    except OSError as e:
        raise write_failed(out, e, "run the query again") from e
    finally:
        tmp.unlink(missing_ok=True)
    return rows


def _schema_result() -> tuple[pa.Schema, Iterator[pa.RecordBatch]]:
    """The views and their columns as rows: view, column, type, nullable, meaning."""
    import pyarrow as pa

    from hardstat import schema
    from hardstat.analysis.logs import DUCKDB_TYPES, RUNS_COLUMNS

    rows: list[dict[str, Any]] = []
    for table in schema.TABLES.values():
        rows += [
            {
                "view": table.name,
                "column": c.name,
                "type": DUCKDB_TYPES[c.type],
                "nullable": c.nullable,
                "meaning": c.doc,
            }
            for c in table.columns
        ]
    rows += [
        {
            "view": "runs",
            "column": name,
            "type": type_,
            "nullable": name not in ("run", "path", "config"),
            "meaning": doc,
        }
        for name, type_, doc in RUNS_COLUMNS
    ]
    result = pa.Table.from_pylist(rows)
    return result.schema, iter(result.to_batches())


def schema_text() -> list[str]:
    """The views and their columns as readable text (``--schema``)."""
    from hardstat import schema
    from hardstat.analysis.logs import DUCKDB_TYPES, RUNS_COLUMNS

    lines: list[str] = []
    for table in schema.TABLES.values():
        lines += [f"{table.name}: {table.doc}"]
        cols = [(c.name, DUCKDB_TYPES[c.type], c.doc) for c in table.columns]
        lines += [*_column_lines(cols), ""]
    lines += ["runs: One row per run, from its manifest (a table, not a view)."]
    lines += _column_lines(list(RUNS_COLUMNS))
    return lines


def _column_lines(cols: Sequence[tuple[str, str, str]]) -> list[str]:
    name_w = max(len(c[0]) for c in cols)
    type_w = max(len(c[1]) for c in cols)
    return [f"  {n.ljust(name_w)}  {t.ljust(type_w)}  {doc}" for n, t, doc in cols]
