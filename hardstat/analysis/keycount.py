"""Per-key counts of one run's ``pairs`` table, read straight from its Parquet files.

A key is (run, neg_id, key_step): one augmented view of one image, enqueued at key_step. For
every key the consistency analysis needs ``m`` (its pairs), ``r1`` = sum of rank, ``r2`` = sum
of rank squared, ``k`` (pairs whose rank lies in the hard band) and the first step it was
logged at. :data:`hardstat.analysis.consistency._COUNT_SQL` computes the same in DuckDB and is
the reference (tests compare the two). DuckDB's hash aggregation into ~1.6 M keys runs at a
small fraction of its bare scan; this reader is 2-3 times faster than it
(``python bench/bench_consistency.py --part speed`` prints both, side by side).

How: the rows of a logged step are read one Parquet row group at a time, two row groups at
once on two threads. The trainer writes one logged step per row group, so the step and epoch
of a row group come from its statistics and are not decoded. In a queue log every logged
query of a step ranks the same K keys and its rows lie together, so a key's position in the
first query's rows gives it a column of a (Q, K) matrix of ranks, filled by one scatter::

    slot[neg_id of query 0's rows] = 0 .. K-1        # (K,)
    R[q, slot[neg_id]] = rank                        # (Q, K), every cell filled exactly once
    m, r1, r2, k = Q, sum_q R, sum_q R^2, sum_q [R in band]   # (K,) each

Every row is checked to name the key of its column (the same neg_id and key_step), and every
cell to be filled once. Two keys of one image in the queue and self-negatives (taken out of
the sums afterwards) keep that path; a step of another shape (in-batch negatives, three keys
of one image, a step cut between row groups mid-query) is grouped exactly by sorting its
codes. Keys logged at several steps are merged at the end; when none is (a key logged at one
step, ``log.every`` >= K / batch), nothing is sorted here.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from hardstat.errors import HardstatError

_COLUMNS = ("step", "epoch", "query_id", "neg_id", "rank", "key_step")


class _Rows(NamedTuple):
    """Rows of the pairs table, one (N,) array per column."""

    query: np.ndarray
    neg: np.ndarray
    rank: np.ndarray
    key_step: np.ndarray


@dataclass(frozen=True)
class KeyCounts:
    """One run's keys, each once, in no set order (:func:`count_run` gives them in the order
    of the files, the SQL reference by (neg_id, key_step)); ``key_step`` is -1 where the log
    has none (a random initial key)."""

    neg: np.ndarray  # (n,) int64 sample_id of the negative
    key_step: np.ndarray  # (n,) int64
    step: np.ndarray  # (n,) int64 first logged step
    m: np.ndarray  # (n,) float64 pairs
    r1: np.ndarray  # (n,) float64 sum of rank
    r2: np.ndarray  # (n,) float64 sum of rank^2
    k: np.ndarray  # (n,) float64 pairs in the band
    n_self: int  # self-negative pairs (neg_id = query_id) left out

    @property
    def n_keys(self) -> int:
        return int(self.m.size)


def count_run(
    files: Sequence[Path],
    intervals: Sequence[tuple[int, int]],
    *,
    epochs: Sequence[int] | None = None,
    legacy: bool = False,
    check_stop: Callable[[], None] | None = None,
    threads: int = 2,
) -> KeyCounts:
    """Count the keys of one run's pairs files.

    ``intervals``: the band as ``(lo, hi]`` rank intervals; ``epochs``: keep only pairs logged
    in these epochs; ``legacy``: the log has no key_step (schema 1-2), so a key is (neg_id,
    logged step); ``check_stop`` is called between row groups (it raises to stop); ``threads``
    row groups are read and counted at once (Parquet decoding and NumPy release the GIL).
    """
    wanted = np.asarray(sorted(int(e) for e in epochs), np.int64) if epochs is not None else None
    wanted_set = set() if wanted is None else set(wanted.tolist())
    skip = {"key_step"} if legacy else set()
    if wanted is None:
        skip.add("epoch")
    local = threading.local()
    opened: list[pq.ParquetFile] = []
    lock = threading.Lock()

    def count(path: Path, g: int) -> tuple[list[tuple[np.ndarray, ...]], int]:
        if getattr(local, "path", None) != path:  # row groups come in file order: one file open
            if getattr(local, "file", None) is not None:  # per thread at a time
                local.file.close()
            local.path, local.file = path, None
            local.file = _open(path)
            with lock:
                opened.append(local.file)
        if not hasattr(local, "scratch"):
            local.scratch = _Scratch()
        f = local.file
        try:
            names = set(f.schema_arrow.names)
            ranges = _ranges(f.metadata.row_group(g))
            constant = {
                c: lo for c, (lo, hi) in ranges.items() if lo == hi and c in ("step", "epoch")
            }
            epochs_here = wanted
            if wanted is not None and "epoch" in constant:  # one epoch: all rows or none
                if constant["epoch"] not in wanted_set:
                    return [], 0
                epochs_here = None
            columns = [c for c in _COLUMNS if c in names and c not in skip and c not in constant]
            table = f.read_row_group(g, columns=columns, use_threads=False)
        except (OSError, pa.ArrowException) as e:
            raise _unreadable(path, e) from e
        try:
            checked = _check_ranges(ranges)
            got = _rows(table, legacy, epochs_here, constant.get("step"), checked)
        except _OutOfRange as e:
            raise _corrupt(path, str(e)) from e
        if got is None:
            return [], 0
        step, rows = got
        return _steps(step, rows, intervals, local.scratch)

    parts: list[tuple[np.ndarray, ...]] = []
    n_self = 0
    pool = ThreadPoolExecutor(max(1, threads), thread_name_prefix="hardstat-count")
    try:
        pending: deque[Future[tuple[list[tuple[np.ndarray, ...]], int]]] = deque()
        for path, g in _row_groups(files):
            if check_stop is not None:
                check_stop()
            pending.append(pool.submit(count, path, g))
            while len(pending) > 2 * threads:  # bounded memory: a few row groups at once
                got, own = pending.popleft().result()
                parts.extend(got)
                n_self += own
        while pending:
            got, own = pending.popleft().result()
            parts.extend(got)
            n_self += own
    finally:  # on a stop or an error, queued row groups are dropped, not read
        pool.shutdown(wait=True, cancel_futures=True)
        for f in opened:
            f.close()
    return _merge(parts, n_self)


def _row_groups(files: Sequence[Path]) -> Iterator[tuple[Path, int]]:
    """(file, row group) of every row group of ``files``, in order."""
    for path in files:
        with _open(path) as f:
            n = f.num_row_groups
        for g in range(n):
            yield path, g


def _open(path: Path) -> pq.ParquetFile:
    try:
        return pq.ParquetFile(path, pre_buffer=False)  # faster for one row group at a time
    except (OSError, pa.ArrowException) as e:
        raise _unreadable(path, e) from e


def _corrupt(path: Path, detail: str) -> HardstatError:
    from hardstat.analysis import logs

    return logs._corrupt(path, detail)


def _unreadable(path: Path, e: Exception) -> HardstatError:
    """The analyses' one-line errors: permission or file-system problems as such, a file that
    cannot be decoded as corrupt (what the SQL path says through DuckDB)."""
    from hardstat.analysis import logs

    if isinstance(e, OSError) and e.errno is not None:  # pyarrow's decoding errors have none
        return logs._unreadable(path, e)
    return _corrupt(path, str(e))


class _OutOfRange(ValueError):
    """A value no writer of the log format produces (a negative sample id, say)."""


_ID_RANGE = {"neg_id": (0, 2**31 - 1), "key_step": (0, 2**31 - 1)}
"""Values of the id columns the log format allows (sample ids and steps are int32 >= 0; a
random initial key has a null key_step)."""


def _check_ranges(ranges: dict[str, tuple[int, int]]) -> frozenset[str]:
    """Raise :class:`_OutOfRange` if a row group's statistics show an id outside
    :data:`_ID_RANGE`; returns the id columns they show inside it, without nulls."""
    for column, (lo, hi) in ranges.items():
        if column in _ID_RANGE and not (_ID_RANGE[column][0] <= lo and hi <= _ID_RANGE[column][1]):
            raise _OutOfRange(_out_of_range(column, lo, hi))
    return frozenset(c for c in _ID_RANGE if c in ranges)


def _out_of_range(column: str, lo: Any, hi: Any) -> str:
    low, high = _ID_RANGE[column]
    return f"{column} holds values from {lo} to {hi}; the log format allows {low} to {high}"


def _ranges(group: pq.RowGroupMetaData) -> dict[str, tuple[int, int]]:
    """(min, max) of each integer column of a row group without nulls, from its statistics.
    The trainer writes one logged step per row group, so its step and epoch need not be
    decoded, and a neg_id column without nulls needs no look for them."""
    out: dict[str, tuple[int, int]] = {}
    for i in range(group.num_columns):
        col = group.column(i)
        st = col.statistics
        if (
            st is not None
            and st.has_min_max
            and st.has_null_count
            and st.null_count == 0
            and isinstance(st.min, int)
            and isinstance(st.max, int)
        ):
            out[col.path_in_schema] = (int(st.min), int(st.max))
    return out


def _rows(
    table: pa.Table,
    legacy: bool,
    wanted: np.ndarray | None,
    step_value: int | None = None,
    checked: frozenset[str] = frozenset(),
) -> tuple[np.ndarray | int, _Rows] | None:
    """A row group's rows with a negative's id (in the wanted epochs): step (``step_value``
    when the row group has one step and the column was not read), query_id, neg_id, rank and
    key_step. ``checked``: the id columns the statistics show without nulls and in range;
    the others are checked here (:class:`_OutOfRange`)."""
    query = table.column("query_id").to_numpy()
    step: np.ndarray | int = table.column("step").to_numpy() if step_value is None else step_value
    neg = _ids(table.column("neg_id"), "neg_id" in checked, "neg_id")
    rank = table.column("rank").to_numpy()
    if legacy:
        key_step = np.broadcast_to(np.int32(step), query.shape) if isinstance(step, int) else step
    elif "key_step" not in table.column_names:  # read as null, like the SQL views do
        key_step = np.full(query.size, -1, np.int32)
    else:
        key_step = _ids(table.column("key_step"), "key_step" in checked, "key_step")
    if "neg_id" in checked and wanted is None:  # every row has an id
        return step, _Rows(query, neg, rank, key_step)
    keep = neg >= 0
    if wanted is not None:
        keep &= np.isin(table.column("epoch").to_numpy(), wanted)
    if not keep.any():
        return None
    if not keep.all():
        query, neg, rank, key_step = (a[keep] for a in (query, neg, rank, key_step))
        if not isinstance(step, int):
            step = step[keep]
    return step, _Rows(query, neg, rank, key_step)


def _ids(col: pa.ChunkedArray, checked: bool, name: str) -> np.ndarray:
    """An id column as integers, -1 for a null; values outside :data:`_ID_RANGE` raise
    :class:`_OutOfRange` (unless the statistics have ``checked`` them)."""
    if pa.types.is_dictionary(col.type):  # ids written as a dictionary array: its values
        col = col.cast(col.type.value_type)
    if not checked and len(col) > col.null_count:
        lo, hi = (v.as_py() for v in pc.min_max(col).values())
        if not (_ID_RANGE[name][0] <= lo and hi <= _ID_RANGE[name][1]):
            raise _OutOfRange(_out_of_range(name, lo, hi))
    if not col.null_count:
        return col.to_numpy()
    if not pa.types.is_signed_integer(col.type):  # -1 needs a signed type
        col = col.cast(pa.int64())
    return pc.fill_null(col, -1).to_numpy()


def _steps(
    step: np.ndarray | int, rows: _Rows, intervals: Sequence[tuple[int, int]], scratch: _Scratch
) -> tuple[list[tuple[np.ndarray, ...]], int]:
    """Per-key sums of each run of rows with one step value, self-negatives left out:
    ``(parts, self-negative pairs)``."""
    if isinstance(step, int):
        bounds, values = [0, rows.query.size], [step]
    else:
        cuts = np.flatnonzero(step[1:] != step[:-1]) + 1
        bounds = np.r_[0, cuts, step.size].tolist()
        values = step[bounds[:-1]].tolist()
    out, n_self = [], 0
    for a, z, value in zip(bounds[:-1], bounds[1:], values, strict=True):
        part = _Rows(*(c[a:z] for c in rows))
        got = _one_queue(part, intervals, scratch)
        if got is None:
            got = _grouped(part, intervals)
        sums, n = got
        out.append((*sums[:2], np.full(sums[0].size, int(value), np.int64), *sums[2:]))
        n_self += n
    return out, n_self


class _Scratch:
    """One thread's reusable arrays: the neg_id -> slot map (every entry -1 between steps)
    and work buffers (a fresh array per step would cost page faults on every step)."""

    def __init__(self) -> None:
        self.table = np.full(1024, -1, np.intp)
        self._bufs: dict[str, np.ndarray] = {}
        self._offsets = np.zeros(0, np.intp)
        self._shape = (0, 0)

    def assign(self, ids: np.ndarray, top: int) -> np.ndarray:
        """Slots 0.. for ``ids``; the table covers ids below ``top``."""
        if top > self.table.size:
            self.table = np.full(max(top, 2 * self.table.size), -1, np.intp)
        self.table[ids] = np.arange(ids.size, dtype=np.intp)
        return self.table

    def clear(self, ids: np.ndarray) -> None:
        self.table[ids] = -1

    def buf(self, name: str, size: int, dtype: np.dtype | type) -> np.ndarray:
        b = self._bufs.get(name)
        if b is None or b.size < size or b.dtype != np.dtype(dtype):
            b = self._bufs[name] = np.empty(max(size, 1), dtype)
        return b[:size]

    def offsets(self, q: int, n: int) -> np.ndarray:
        """(Q*n,) the first flat index of each row's query: 0 x n, n x n, ..."""
        if self._shape != (q, n):
            self._offsets = np.arange(0, q * n, n, dtype=np.intp).repeat(n)
            self._shape = (q, n)
        return self._offsets


def _in_band(rank: np.ndarray, intervals: Sequence[tuple[int, int]]) -> np.ndarray:
    hit = np.zeros(rank.shape, bool)
    for lo, hi in intervals:
        hit |= (rank > lo) & (rank <= hi)
    return hit


def _one_queue(
    rows: _Rows, intervals: Sequence[tuple[int, int]], scratch: _Scratch
) -> tuple[tuple[np.ndarray, ...], int] | None:
    """The queue layout: Q queries, each with its rows together, all ranking the same n keys.
    ``((neg, key_step, m, r1, r2, k), self-negative pairs)``, or None when the rows have
    another shape."""
    query, neg, rank, key_step = rows
    size = query.size
    n = int(np.argmax(query != query[0])) or size  # rows of the first query
    if size % n:
        return None
    q = size // n
    queries = query[::n]  # (Q,)
    same = scratch.buf("same", size, bool)  # work arrays: no allocation per step
    if not np.equal(query.reshape(q, n), queries[:, None], out=same.reshape(q, n)).all():
        return None
    neg0, ks0 = neg[:n], key_step[:n]
    top = int(neg.max()) + 1
    table = scratch.assign(neg0, top)
    s = scratch.buf("slot", size, np.intp)
    try:
        # (Q*n,) slot of each row; -1 for an id query 0 did not rank ("clip": unbuffered, and
        # no index is out of range)
        np.take(table, neg, out=s, mode="clip")
        shadowed = np.flatnonzero(table[neg0] != np.arange(n))  # an id a later slot repeats
    finally:
        scratch.clear(neg0)
    if not shadowed.size:  # every id once in query 0's rows: a slot >= 0 names the same id
        if s.min() < 0:
            return None
    else:  # two keys of one image in the queue: the rows of the other key
        np.maximum(s, 0, out=s)  # a -1 is caught below: neg0[0] is not that row's neg_id
        other = ks0[s] != key_step
        if other.any():
            table = scratch.assign(neg0[shadowed], top)
            try:
                alt = table[neg[other]]
            finally:
                scratch.clear(neg0[shadowed])
            alt[alt < 0] = 0
            s[other] = shadowed[alt]
        if not np.array_equal(neg0[s], neg):
            return None
    looked = scratch.buf("looked", size, ks0.dtype)
    np.take(ks0, s, out=looked, mode="clip")  # 0 <= s < n here
    if not np.equal(looked, key_step, out=same).all():  # the same key, not only the same image
        return None
    np.add(s, scratch.offsets(q, n), out=s)  # (Q*n,) flat index into the (Q, n) matrix
    flat = scratch.buf("flat", size, rank.dtype)
    flat.fill(0)
    flat[s] = rank
    ranks = flat.reshape(q, n)  # (Q, n) rank of slot j for query i
    if not ranks.all():  # a slot twice in one query's rows (and one missing): not a queue
        return None
    values = scratch.buf("values", size, np.float64).reshape(q, n)
    np.copyto(values, ranks)  # integer sums in float64 stay exact below 2^53
    r1 = np.ones(q) @ values  # (n,) sum of rank
    r2 = np.einsum("ij,ij->j", values, values)  # (n,) sum of rank^2
    m = np.full(n, float(q))
    k = _band_counts(flat, q, n, intervals, scratch)
    # self-negatives: query i meets its own image in the slots j with neg0[j] = queries[i]
    mine = np.flatnonzero(np.isin(neg0, queries))  # (J,) slots of a querying image
    n_self = 0
    if mine.size:
        qi, jj = np.nonzero(queries[:, None] == neg0[mine][None, :])  # (P,) pairs (i, j)
        js = mine[jj]
        rs = ranks[qi, js].astype(np.float64)
        n_self = int(js.size)
        np.subtract.at(m, js, 1.0)
        np.subtract.at(r1, js, rs)
        np.subtract.at(r2, js, rs * rs)
        np.subtract.at(k, js, _in_band(ranks[qi, js], intervals).astype(np.float64))
        if not m.all():  # a key seen only by its own image's queries: no pairs left
            keep = m > 0
            neg0, ks0, m, r1, r2, k = (a[keep] for a in (neg0, ks0, m, r1, r2, k))
    return (neg0.astype(np.int64), ks0.astype(np.int64), m, r1, r2, k), n_self


def _band_counts(
    flat: np.ndarray, q: int, n: int, intervals: Sequence[tuple[int, int]], scratch: _Scratch
) -> np.ndarray:
    """(n,) per column of the (Q, n) rank matrix, the cells in the band. Every cell is a
    rank != 0 here, so as an unsigned number a rank <= hi is 1 <= rank <= hi."""
    hit = scratch.buf("hit", flat.size, bool)
    unsigned = np.dtype(f"u{flat.itemsize}")
    if any(lo < 0 or hi > np.iinfo(flat.dtype).max for lo, hi in intervals):
        hit[:] = _in_band(flat, intervals)  # bounds beyond the ranks' type: compare as written
    elif len(intervals) == 1 and intervals[0][0] == 0:  # a band from the hardest: one compare
        np.less_equal(flat.view(unsigned), intervals[0][1], out=hit)
    else:
        hit.fill(False)
        shifted = scratch.buf("shifted", flat.size, flat.dtype)
        for lo, hi in intervals:  # lo < rank <= hi as one compare: rank - lo - 1 < hi - lo
            if hi > lo:
                np.subtract(flat, lo + 1, out=shifted)
                hit |= shifted.view(unsigned) < hi - lo
    return np.add.reduce(hit.reshape(q, n).view(np.uint8), axis=0, dtype=np.int64).astype(
        np.float64
    )


def _grouped(
    rows: _Rows, intervals: Sequence[tuple[int, int]]
) -> tuple[tuple[np.ndarray, ...], int]:
    """Any rows: group by (neg_id, key_step) by sorting. ``(sums, self-negative pairs)``."""
    query, neg, rank, key_step = rows
    own = neg == query  # self-negatives: counted, then left out
    if own.any():
        neg, rank, key_step = neg[~own], rank[~own], key_step[~own]
    code = (neg.astype(np.int64) << 32) | (key_step.astype(np.int64) + 1)
    u, inv = np.unique(code, return_inverse=True)
    r = rank.astype(np.float64)
    m = np.bincount(inv, minlength=u.size).astype(np.float64)
    r1 = np.bincount(inv, weights=r, minlength=u.size)
    r2 = np.bincount(inv, weights=r * r, minlength=u.size)
    k = np.bincount(inv, weights=_in_band(rank, intervals), minlength=u.size)
    return (u >> 32, (u & 0xFFFFFFFF) - 1, m, r1, r2, k), int(np.count_nonzero(own))


def _merge(parts: list[tuple[np.ndarray, ...]], n_self: int) -> KeyCounts:
    """Keys logged at several steps (or split between row groups) summed into one row each."""
    if not parts:
        empty_i, empty_f = np.zeros(0, np.int64), np.zeros(0)
        return KeyCounts(empty_i, empty_i, empty_i, empty_f, empty_f, empty_f, empty_f, n_self)
    neg, ks, step, m, r1, r2, k = (np.concatenate(c) for c in zip(*parts, strict=True))
    code = (neg << 32) | (ks + 1)
    if _distinct(code):  # every key once (a key logged at one step): nothing to merge
        return KeyCounts(neg, ks, step, m, r1, r2, k, n_self)
    order = np.argsort(code, kind="stable")
    code = code[order]
    start = np.flatnonzero(np.r_[True, code[1:] != code[:-1]])
    first = order[start]
    m, r1, r2, k = (np.add.reduceat(x[order], start) for x in (m, r1, r2, k))
    return KeyCounts(
        neg[first], ks[first], np.minimum.reduceat(step[order], start), m, r1, r2, k, n_self
    )


def _distinct(code: np.ndarray) -> bool:
    """Whether no value of ``code`` repeats (polars' hash count: no sort of the keys)."""
    import polars as pl

    return bool(pl.Series(code).n_unique() == code.size)
