"""Writes a run's log tables as Parquet part files, atomically (pyarrow; no torch).

The trainer and the test fixtures use this same writer. Each table of :mod:`hardstat.schema` is a
directory of part files ``part-p<process>-<seq>.parquet``. Rows are appended to an open file under
a hidden temporary name (``.part-...parquet.tmp``, invisible to ``*.parquet`` globs) as row
groups; :meth:`RunLogWriter.flush` closes and renames every open file, so a part file is visible
only once complete. :meth:`RunLogWriter.state` records what is committed, so a resumed run can set
aside files written after its checkpoint (:func:`set_aside_uncommitted`) and never log a step
twice.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from hardstat import schema
from hardstat.errors import LogError

_PART = re.compile(r"^part-p(\d{3})-(\d{6})\.parquet$")

# Encodings chosen for pairs (see bench/bench_logging.py): ids as dictionaries (a row group is
# one logged step, whose K queue ids form a 12-bit dictionary and key steps K/B values), rank
# (stored in rank order, so deltas of 1) delta-packed, float16 similarity plain (DuckDB cannot
# read byte-stream-split float16), all zstd: about 3.3 bytes per pair.
_PAIRS_DICT = ["run", "step", "epoch", "query_id", "neg_id", "process", "key_step"]
_PAIRS_ENCODING = {
    "rank": "DELTA_BINARY_PACKED",
    "similarity": "PLAIN",
    "in_band": "RLE",
}


def part_name(process: int, seq: int) -> str:
    return f"part-p{process:03d}-{seq:06d}.parquet"


class _OpenPart:
    def __init__(self, final: Path, writer: pq.ParquetWriter, tmp: Path) -> None:
        self.final = final
        self.tmp = tmp
        self.writer = writer
        self.rows = 0


class RunLogWriter:
    """Appends rows to the log tables of one run directory for one process.

    ``tag`` replaces the ``part-p<process>`` prefix for files written outside training (e.g.
    ``posthoc-<time>`` for a later linear probe), which a resumed run never sets aside.

    ``write(table, columns)`` takes a mapping of column name to 1-D NumPy array (or a scalar,
    broadcast to the batch length) for every column of the table except ``run`` and
    ``process``, which the writer fills in.
    """

    def __init__(
        self,
        run_dir: Path,
        run: str,
        *,
        process: int = 0,
        file_rows: int = 8_388_608,
        next_seq: Mapping[str, int] | None = None,
        tag: str | None = None,
    ) -> None:
        self.run_dir = Path(run_dir)
        self.run = run
        self.process = process
        self.tag = tag
        self.file_rows = file_rows
        self._seq = {t: 0 for t in schema.TABLES}
        if next_seq:
            self._seq.update(next_seq)
        self._open: dict[str, _OpenPart] = {}
        self._schemas = {t: schema.arrow_schema(t) for t in schema.TABLES}
        self._run_dict = pa.array([run], pa.string())
        self.rows_written = {t: 0 for t in schema.TABLES}

    # -- writing ---------------------------------------------------------------------------
    def write(self, table: str, columns: Mapping[str, Any]) -> None:
        batch = self._to_table(table, columns)
        if batch.num_rows == 0:
            return
        part = self._open.get(table) or self._open_part(table)
        part.writer.write_table(batch, row_group_size=max(batch.num_rows, 1))
        part.rows += batch.num_rows
        self.rows_written[table] += batch.num_rows
        if part.rows >= self.file_rows:
            self._commit(table)

    def flush(self) -> None:
        """Close and publish every open part file."""
        for table in list(self._open):
            self._commit(table)

    def close(self) -> None:
        self.flush()

    def discard(self) -> None:
        """Drop every open part file (after a failed write): close it if possible and remove
        its temporary file; committed files stay."""
        for part in self._open.values():
            with contextlib.suppress(OSError, pa.ArrowException):
                part.writer.close()
            with contextlib.suppress(OSError):
                part.tmp.unlink(missing_ok=True)
        self._open.clear()

    def state(self) -> dict[str, Any]:
        """Logger position: next part number per table and the files committed so far.

        Call after :meth:`flush` (a checkpoint does both), so nothing is left open.
        """
        if self._open:
            raise LogError("internal error: logger state taken with open part files; flush first")
        committed = sorted(
            f"{t}/{p.name}"
            for t in schema.TABLES
            if (self.run_dir / t).is_dir()
            for p in (self.run_dir / t).iterdir()
            if _PART.match(p.name) and int(_PART.match(p.name).group(1)) == self.process  # type: ignore[union-attr]
        )
        return {"process": self.process, "next_seq": dict(self._seq), "committed": committed}

    # -- internals -------------------------------------------------------------------------
    def _open_part(self, table: str) -> _OpenPart:
        directory = self.run_dir / table
        directory.mkdir(parents=True, exist_ok=True)
        seq = self._seq[table]
        if self.tag:  # an evaluation after training: the next name not taken (under the lock)
            while (directory / f"{self.tag}-{seq:06d}.parquet").exists():
                seq += 1
        name = f"{self.tag}-{seq:06d}.parquet" if self.tag else part_name(self.process, seq)
        self._seq[table] = seq + 1
        final = directory / name
        if final.exists():
            raise LogError(
                f"log file {final} already exists; refusing to overwrite it "
                "(is another process writing this run?)"
            )
        tmp = directory / f".{name}.tmp"
        kwargs: dict[str, Any] = {"compression": "zstd", "compression_level": 1}
        if table == "pairs":
            kwargs.update(use_dictionary=_PAIRS_DICT, column_encoding=_PAIRS_ENCODING)
        writer = pq.ParquetWriter(tmp, self._schemas[table], **kwargs)
        part = _OpenPart(final, writer, tmp)
        self._open[table] = part
        return part

    def _commit(self, table: str) -> None:
        part = self._open.pop(table)
        part.writer.close()
        os.replace(part.tmp, part.final)

    def _to_table(self, table: str, columns: Mapping[str, Any]) -> pa.Table:
        sch = self._schemas[table]
        if "process" in sch.names and "process" not in columns:
            columns = {**columns, "process": self.process}
        names = [n for n in sch.names if n != "run"]
        missing = [n for n in names if n not in columns]
        extra = sorted(set(columns) - set(names))
        if missing or extra:
            raise LogError(
                f"internal error: table {table} got columns missing={missing} extra={extra}"
            )
        n = max((len(v) for v in columns.values() if np.ndim(v) == 1), default=1)
        arrays = [pa.DictionaryArray.from_arrays(np.zeros(n, np.int32), self._run_dict)]
        for name in names:
            typ = sch.field(name).type
            value = columns[name]
            if isinstance(value, pa.Array):
                arrays.append(value.cast(typ) if value.type != typ else value)
                continue
            if np.ndim(value) == 0:
                if value is None:
                    arrays.append(pa.nulls(n, typ))
                    continue
                value = np.full(n, value)
            if typ == pa.string():
                arrays.append(pa.array(np.asarray(value, dtype=object), typ))
            elif typ == pa.float16():
                arrays.append(pa.array(np.asarray(value, dtype=np.float16), typ))
            else:
                arrays.append(pa.array(np.asarray(value), typ, from_pandas=False))
        return pa.Table.from_arrays(arrays, schema=sch)


def set_aside_uncommitted(run_dir: Path, committed: list[str], process: int = 0) -> list[Path]:
    """Move this process's part files not in ``committed`` to ``RUN/superseded/<time>/``.

    Used on resume: files written after the checkpoint hold steps that will be trained (and
    logged) again. They are moved, never deleted. Incomplete temporary files are removed (they
    were never part of the log).
    """
    keep = set(committed)
    moved: list[Path] = []
    stamp = time.strftime("%Y%m%dT%H%M%S")
    for table in schema.TABLES:
        directory = run_dir / table
        if not directory.is_dir():
            continue
        for p in sorted(directory.iterdir()):
            m = _PART.match(p.name)
            if p.name.startswith(".part-p") and p.name.endswith(".tmp"):
                if p.name.startswith(f".part-p{process:03d}-"):
                    p.unlink()
                continue
            if not m or int(m.group(1)) != process or f"{table}/{p.name}" in keep:
                continue
            dest = run_dir / "superseded" / stamp / table / p.name
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(p, dest)
            moved.append(dest)
    return moved
