"""Per-key counting read from the Parquet files (hardstat.analysis.keycount) against the SQL
reference (consistency._COUNT_SQL) and a slow per-row dictionary: queue logs with self-negatives
and two keys of one image in the queue, old logs without key_step, an epoch filter, several
runs, in-batch and irregular rows, a step split between files, and a damaged file."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from runlogs import rewrite_as_version, write_run
from simlogs import SimSpec, simulate

from hardstat.analysis import keycount, logs
from hardstat.analysis.consistency import KeyTable, count_keys
from hardstat.bands import parse_band
from hardstat.errors import CorruptLogError

# batch 64, K = 512 over 1,000 images: at each epoch boundary the queue holds the last batches
# of one epoch and the first of the next, so some images have two keys in one queue and some
# queries meet their own earlier key (a self-negative)
SPEC = SimSpec(n_images=1000, batch=64, queue=512, every=3, logged_steps=40, queries=8)
FIELDS = ("run", "neg", "key_step", "epoch", "step", "label", "m", "h_sum", "h_sq", "k")
FIELDS += ("stratum", "fitted_h", "fitted_b")


def same(a: KeyTable, b: KeyTable) -> None:
    assert a.runs == b.runs and a.n_self == b.n_self and a.n_params == b.n_params
    assert np.array_equal(a.neg_ids, b.neg_ids)
    for f in FIELDS:
        x, y = getattr(a, f), getattr(b, f)
        assert np.array_equal(x, y), f  # integer sums in float64: exactly equal


def both(con, runs, k, band="0-5", **kw) -> tuple[KeyTable, KeyTable]:  # type: ignore[no-untyped-def]
    b = parse_band(band)
    return count_keys(con, runs, k, b, **kw), count_keys(con, runs, k, b, method="sql", **kw)


@pytest.fixture(scope="module")
def queue_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return simulate(SPEC.scenario("D", 0.05), 3, tmp_path_factory.mktemp("kc"), "q")[0]


def test_queue_log_matches_the_sql_reference_and_a_slow_count(queue_run: Path) -> None:
    con = logs.connect(logs.find_runs([queue_run]))
    files, sql = both(con, ["q"], 512, band="0-5,90-100")
    same(files, sql)
    assert files.n_self > 0  # the log has self-negatives, left out and counted
    # a slow count over every row
    import pyarrow.parquet as pq

    t = pq.read_table(queue_run / "pairs").to_pydict()
    slow: dict[tuple[int, int], list[float]] = {}
    n_self = 0
    for q, n, ks, r in zip(t["query_id"], t["neg_id"], t["key_step"], t["rank"], strict=True):
        if n == q:
            n_self += 1
            continue
        e = slow.setdefault((n, ks), [0, 0, 0, 0])
        e[0] += 1
        e[1] += (512 - r) / 511
        e[2] += ((512 - r) / 511) ** 2
        e[3] += r <= 26 or r > 461  # 0-5 keeps ranks 1..26, 90-100 ranks 462..512
    assert files.n_self == n_self and files.n_keys == len(slow)
    for i in range(files.n_keys):
        m, hs, hq, k = slow[(int(files.neg_ids[files.neg[i]]), int(files.key_step[i]))]
        assert (files.m[i], files.k[i]) == (m, k)
        assert files.h_sum[i] == pytest.approx(hs) and files.h_sq[i] == pytest.approx(hq)


def test_the_fast_path_takes_two_keys_of_one_image_and_self_negatives(queue_run: Path) -> None:
    """Every logged step of the queue log goes through the (Q, K) matrix, none is sorted."""
    import pyarrow.parquet as pq

    t = pq.read_table(queue_run / "pairs")
    cols = {c: t.column(c).to_numpy() for c in ("step", "query_id", "neg_id", "rank", "key_step")}
    doubled = selfs = 0
    scratch = keycount._Scratch()
    for s in np.unique(cols["step"]):
        at = cols["step"] == s
        q, n, r, ks = (cols[c][at] for c in ("query_id", "neg_id", "rank", "key_step"))
        first = n[q == q[0]]
        doubled += np.unique(first).size < first.size
        selfs += bool((n == q).any())
        fast = keycount._one_queue(keycount._Rows(q, n, r, ks), [(0, 26)], scratch)
        assert fast is not None, s
        got, n_self = fast
        ref, ref_self = keycount._grouped(keycount._Rows(q, n, r, ks), [(0, 26)])
        assert n_self == ref_self == np.count_nonzero(n == q)
        order = np.lexsort((got[1], got[0]))
        for x, y in zip((a[order] for a in got), ref, strict=True):
            assert np.array_equal(x, y)
    assert doubled > 0 and selfs > 0  # the log exercises both


def test_rows_of_another_shape_fall_back_to_grouping(tmp_path: Path) -> None:
    scratch = keycount._Scratch()
    q = np.array([1, 1, 1, 2, 2, 2])
    n = np.array([5, 6, 7, 7, 5, 5])  # query 2 ranks key 5 twice and never key 6
    r = np.array([1, 2, 3, 1, 2, 3])
    ks = np.zeros(6, np.int64)
    assert keycount._one_queue(keycount._Rows(q, n, r, ks), [(0, 1)], scratch) is None
    assert (
        keycount._one_queue(keycount._Rows(q[:5], n[:5], r[:5], ks[:5]), [(0, 1)], scratch) is None
    )
    # queries interleaved rather than each with its rows together
    q2, n2 = np.array([1, 2, 1, 2]), np.array([5, 5, 6, 6])
    r2, z = np.array([1, 1, 2, 2]), np.zeros(4, np.int64)
    assert keycount._one_queue(keycount._Rows(q2, n2, r2, z), [(0, 1)], scratch) is None
    # a key of another step under the same id, in another query
    ks3 = np.array([0, 0, 0, 0, 0, 9])
    q3, n3, r3 = np.array([1, 1, 1, 2, 2, 2]), np.array([5, 6, 7, 7, 6, 5]), np.tile([1, 2, 3], 2)
    assert keycount._one_queue(keycount._Rows(q3, n3, r3, ks3), [(0, 1)], scratch) is None
    (neg, key_step, m, r1, r2, k), n_self = keycount._grouped(keycount._Rows(q, n, r, ks), [(0, 1)])
    assert n_self == 0
    assert neg.tolist() == [5, 6, 7] and key_step.tolist() == [0, 0, 0]
    assert m.tolist() == [3, 1, 2] and r1.tolist() == [6, 2, 4] and r2.tolist() == [14, 4, 10]
    assert k.tolist() == [1, 0, 1]
    assert (scratch.table == -1).all()  # the slot map is left clean


def test_in_batch_and_irregular_rows(tmp_path: Path) -> None:
    """Every query its own negatives (in-batch), a step whose rows are split between two files,
    null ids of random initial keys: the files path equals the SQL reference."""
    rng = np.random.default_rng(5)
    steps, queries, negs, ranks, kss = [], [], [], [], []
    for step in range(6):
        for query in range(10):
            others = rng.choice(np.delete(np.arange(30), query), 8, replace=False)
            steps += [step] * 8
            queries += [query] * 8
            negs += others.tolist()
            ranks += list(range(1, 9))
            kss += [step] * 8
    negs = [-1 if i % 17 == 0 else n for i, n in enumerate(negs)]
    pairs = {
        "step": np.array(steps, np.int32),
        "query_id": np.array(queries, np.int32),
        "neg_id": np.array([None if n < 0 else n for n in negs], object),
        "rank": np.array(ranks, np.int32),
        "similarity": np.zeros(len(steps), np.float32),
        "in_band": np.ones(len(steps), bool),
        "key_step": np.array(kss, np.int32),
    }
    run = write_run(tmp_path, "ib", queue_size=8, pairs=pairs, labels=np.arange(30) % 10)
    # the same step again in a second file (a resumed or second process's part)
    import pyarrow.parquet as pq

    (part,) = sorted((run / "pairs").glob("*.parquet"))
    t = pq.read_table(part)
    pq.write_table(t.filter(t.column("step").to_numpy() == 5), run / "pairs" / "z-extra.parquet")
    con = logs.connect(logs.find_runs([run]))
    files, sql = both(con, ["ib"], 8, band="0-25")
    same(files, sql)
    assert files.m.sum() == len(steps) - sum(n < 0 for n in negs) + 80 - sum(
        n < 0 for n in negs[-80:]
    )


def test_old_logs_epochs_and_several_runs(tmp_path: Path) -> None:
    a = simulate(SPEC.scenario("A"), 1, tmp_path, "a")[0]
    b = simulate(SPEC.scenario("A"), 2, tmp_path, "b")[0]
    rewrite_as_version(b, 2)  # no key_step: keys are (neg_id, logged step)
    con = logs.connect(logs.find_runs([a, b]))
    for kw in ({}, {"epochs": [1]}, {"epochs": [0, 2]}):
        files, sql = both(con, ["a", "b"], 512, legacy_runs=["b"], **kw)
        same(files, sql)
        assert files.n_keys > 0
    files, sql = both(con, ["b"], 512, legacy_runs=["b"])
    same(files, sql)
    assert np.array_equal(files.key_step, files.step)  # legacy: the logged step


def test_a_damaged_file_is_one_line(tmp_path: Path, queue_run: Path) -> None:
    import shutil

    run = tmp_path / "q"
    shutil.copytree(queue_run, run)
    con = logs.connect(logs.find_runs([run]))
    (part,) = sorted((run / "pairs").glob("*.parquet"))[:1]
    data = part.read_bytes()
    part.write_bytes(data[:100] + bytes(len(data) // 2) + data[100 + len(data) // 2 :])
    with pytest.raises(CorruptLogError) as e:  # what the SQL path says, so the report stops
        count_keys(con, ["q"], 512, parse_band("0-5"))
    assert "\n" not in str(e.value) and str(part) in str(e.value)


def test_ctrl_c_or_a_time_limit_stops_the_count(
    queue_run: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The count runs in Python, not in a DuckDB query, so it looks for a stop between row
    groups: Ctrl-C (or HARDSTAT_TIMEOUT) during a command ends it with the CLI's one line."""
    from hardstat import interrupts
    from hardstat.errors import HardstatError

    con = logs.connect(logs.find_runs([queue_run]))
    for reason, words in (("interrupt", "interrupted (Ctrl-C)"), ("timeout", "time limit")):
        with interrupts.cli_session():
            monkeypatch.setattr(interrupts, "_limit", 5.0)  # what HARDSTAT_TIMEOUT=5 sets
            interrupts._stop(reason)
            with pytest.raises(HardstatError, match=re.escape(words)):
                count_keys(con, ["q"], 512, parse_band("0-5"))
    count_keys(con, ["q"], 512, parse_band("0-5"))  # outside a command nothing stops it


def _queue_rows(step: int, queries: list[int], keys: list[int], rng: np.random.Generator) -> dict:
    """One logged step of a queue: every query ranks the same keys (key_step = step - 1)."""
    out: dict[str, list] = {c: [] for c in ("step", "query_id", "neg_id", "rank", "key_step")}
    for q in queries:
        out["step"] += [step] * len(keys)
        out["query_id"] += [q] * len(keys)
        out["neg_id"] += rng.permutation(keys).tolist()
        out["rank"] += list(range(1, len(keys) + 1))
        out["key_step"] += [step - 1] * len(keys)
    return out


def test_steps_of_different_shapes_in_one_thread(tmp_path: Path) -> None:
    """4 queries x 3 keys, then 2 x 6 (the same number of rows), then 1 x 12, then a queue
    still filling (null ids of random initial keys): the work arrays of one thread are reused
    across shapes, and one thread or three give the same table as the SQL."""
    rng = np.random.default_rng(2)
    steps = [
        _queue_rows(1, [0, 1, 2, 3], [10, 11, 12], rng),
        _queue_rows(2, [4, 5], [13, 14, 15, 16, 17, 18], rng),
        _queue_rows(3, [6], list(range(20, 32)), rng),
        _queue_rows(4, [7, 8, 9], [33, 34, 35, 36], rng),
    ]
    rows = {c: [v for s in steps for v in s[c]] for c in steps[0]}
    neg = np.array(rows["neg_id"], object)
    neg[(np.array(rows["step"]) == 4) & np.isin(np.array(rows["neg_id"]), [35, 36])] = None
    pairs = {
        "step": np.array(rows["step"], np.int32),
        "query_id": np.array(rows["query_id"], np.int32),
        "neg_id": neg,
        "rank": np.array(rows["rank"], np.int32),
        "similarity": np.zeros(len(neg), np.float32),
        "in_band": np.ones(len(neg), bool),
        "key_step": np.array(rows["key_step"], np.int32),
    }
    run = write_run(tmp_path, "sh", queue_size=12, pairs=pairs, labels=np.arange(40) % 10)
    # one row group per step, as the trainer writes them
    import pyarrow.parquet as pq

    (part,) = sorted((run / "pairs").glob("*.parquet"))
    t = pq.read_table(part)
    part.unlink()
    with pq.ParquetWriter(part, t.schema) as w:
        for s in (1, 2, 3, 4):
            w.write_table(t.filter(t.column("step").to_numpy() == s))
    files = logs.table_files(logs.find_runs([run])[0], "pairs")
    one = keycount.count_run(files, [(0, 3)], threads=1)
    three = keycount.count_run(files, [(0, 3)], threads=3)
    for f in ("neg", "key_step", "step", "m", "r1", "r2", "k"):
        assert np.array_equal(getattr(one, f), getattr(three, f)), f
    assert one.n_keys == 3 + 6 + 12 + 2 and one.m.sum() == 12 + 12 + 12 + 6
    con = logs.connect(logs.find_runs([run]))
    same(*both(con, ["sh"], 12, band="0-25"))


def test_a_file_the_run_adds_after_the_connection_is_not_counted(
    queue_run: Path, tmp_path: Path
) -> None:
    """A run still training writes new parts: the count reads the files the connection's
    views read (listed when it opened), like the SQL path."""
    import shutil

    run = tmp_path / "q"
    shutil.copytree(queue_run, run)
    con = logs.connect(logs.find_runs([run]))
    before = count_keys(con, ["q"], 512, parse_band("0-5"))
    (part,) = sorted((run / "pairs").glob("*.parquet"))[:1]
    shutil.copy(part, run / "pairs" / "part-p000-999999.parquet")
    same(before, count_keys(con, ["q"], 512, parse_band("0-5")))
    same(*both(con, ["q"], 512))


def test_row_groups_without_statistics_or_with_several_steps(
    queue_run: Path, tmp_path: Path
) -> None:
    """The trainer writes one logged step per row group, so the step (and epoch) of a row group
    is read from its statistics, not decoded. Parts written without statistics, or with many
    steps in one row group, are read in full and give the same table."""
    import shutil

    import pyarrow.parquet as pq

    con = logs.connect(logs.find_runs([queue_run]))
    want = count_keys(con, ["q"], 512, parse_band("0-5"), epochs=[1, 2])
    for name, kw in (("nostats", {"write_statistics": False}), ("big", {"row_group_size": 10**6})):
        run = tmp_path / name / "q"
        shutil.copytree(queue_run, run)
        for part in sorted((run / "pairs").glob("*.parquet")):
            t = pq.read_table(part)
            meta = pq.read_metadata(part)
            assert meta.num_row_groups > 1  # the trainer's parts: a row group per step
            pq.write_table(t, part, **kw)
            if name == "big":
                assert pq.read_metadata(part).num_row_groups == 1
        con2 = logs.connect(logs.find_runs([run]))
        got = count_keys(con2, ["q"], 512, parse_band("0-5"), epochs=[1, 2])
        same(want, got)
        same(got, count_keys(con2, ["q"], 512, parse_band("0-5"), epochs=[1, 2], method="sql"))


def test_merge_sums_a_key_logged_at_several_steps_and_passes_distinct_keys_through() -> None:
    f = np.array
    one = (f([5, 6]), f([0, 0]), f([3, 3]), f([2.0, 2]), f([3.0, 4]), f([5.0, 8]), f([1.0, 0]))
    two = (f([7]), f([2]), f([4]), f([1.0]), f([9.0]), f([81.0]), f([0.0]))
    got = keycount._merge([one, two], 4)
    assert got.neg.tolist() == [5, 6, 7] and got.step.tolist() == [3, 3, 4]  # as they came
    assert got.n_self == 4 and got.r1.tolist() == [3.0, 4.0, 9.0]
    again = (f([6]), f([0]), f([2]), f([1.0]), f([1.0]), f([1.0]), f([1.0]))  # key (6, 0) again
    got = keycount._merge([one, two, again], 0)
    assert got.neg.tolist() == [5, 6, 7] and got.key_step.tolist() == [0, 0, 2]
    assert got.step.tolist() == [3, 2, 4]  # the first step it was logged at
    assert got.m.tolist() == [2.0, 3.0, 1.0] and got.r1.tolist() == [3.0, 5.0, 9.0]
    assert got.r2.tolist() == [5.0, 9.0, 81.0] and got.k.tolist() == [1.0, 1.0, 0.0]


def test_key_order_sorts_by_stratum_negative_and_key_step_with_or_without_packing() -> None:
    from hardstat.analysis.consistency import _key_order

    rng = np.random.default_rng(3)
    n = 5000
    codes = [rng.integers(0, s, n) for s in (40, 300, 50)]
    keys = np.unique(np.stack(codes), axis=1)  # distinct (stratum, neg, key step)
    keys = keys[:, rng.permutation(keys.shape[1])]
    want = np.lexsort((keys[2], keys[1], keys[0]))
    packed = _key_order(keys[0], keys[1], keys[2], (40, 300, 50))
    wide = _key_order(keys[0], keys[1], keys[2], (2**30, 2**30, 2**10))  # 70 bits: lexsort
    assert np.array_equal(packed, want) and np.array_equal(wide, want)


@pytest.mark.parametrize("band", ["0-5", "5-100", "0-100", "0.1-100", "10-20,50-60"])
def test_every_kind_of_band_matches_the_sql_reference(queue_run: Path, band: str) -> None:
    """A band from the hardest (one unsigned compare), one that starts lower (a shifted
    compare), all ranks, several intervals."""
    con = logs.connect(logs.find_runs([queue_run]))
    files, sql = both(con, ["q"], 512, band=band)
    same(files, sql)
    assert 0 < files.k.sum() <= files.m.sum()


def test_band_bounds_beyond_the_rank_type_are_compared_as_written() -> None:
    """The unsigned compares assume the band fits the ranks' integer type; bounds that do not
    (a negative lo, hi past int32) take the plain comparison, as the SQL does."""
    q = np.repeat(np.array([1, 2], np.int32), 3)
    neg = np.array([5, 6, 7, 7, 5, 6], np.int32)
    rank = np.array([1, -1, 3, 2, 3, -1], np.int32)  # junk ranks, still a queue layout
    ks = np.zeros(6, np.int32)
    for band in ([(0, 2**40)], [(2, 2**40), (0, 1)], [(-3, 2)], [(0, 2)]):
        fast = keycount._one_queue(keycount._Rows(q, neg, rank, ks), band, keycount._Scratch())
        assert fast is not None
        ref = keycount._grouped(keycount._Rows(q, neg, rank, ks), band)
        assert np.array_equal(fast[0][5], ref[0][5]), band  # k, in neg_id order both


def _rewritten(tmp_path: Path, name: str, column: str, values: pa.Array, **kw: object) -> Path:
    """A 2-query x 3-key queue log whose ``column`` is replaced by ``values``."""
    import pyarrow.parquet as pq

    pairs = {
        "step": np.ones(6, np.int32),
        "query_id": np.repeat(np.array([0, 1], np.int32), 3),
        "neg_id": np.array([5, 6, 7, 7, 5, 6], object),
        "rank": np.tile(np.arange(1, 4, dtype=np.int32), 2),
        "similarity": np.zeros(6, np.float32),
        "in_band": np.ones(6, bool),
        "key_step": np.zeros(6, object),
    }
    run = write_run(tmp_path / name, "x", queue_size=3, pairs=pairs, labels=np.arange(40) % 10)
    (part,) = sorted((run / "pairs").glob("*.parquet"))
    t = pq.read_table(part)
    i = t.column_names.index(column)
    t = t.set_column(i, pa.field(column, values.type), values)
    part.unlink()
    pq.write_table(t, part, **kw)  # type: ignore[arg-type]
    return run


@pytest.mark.parametrize("stats", [True, False])
def test_ids_outside_the_format_are_one_line_errors(tmp_path: Path, stats: bool) -> None:
    """A negative sample id or key step (which no writer of the format produces) stops the
    count with the corrupt-file line, found in the statistics or, without them, in the data;
    ids of another integer type, nulls included, count as the SQL does."""
    bad = {
        "neg_id": pa.array([5, -6, 7, 7, 5, -6], pa.int32()),
        "key_step": pa.array([-2] * 6, pa.int32()),
    }
    for column, values in bad.items():
        run = _rewritten(tmp_path, f"{column}-{stats}", column, values, write_statistics=stats)
        con = logs.connect(logs.find_runs([run]))
        with pytest.raises(CorruptLogError, match=f"{column} holds values from -") as e:
            count_keys(con, ["x"], 3, parse_band("0-50"))
        assert "\n" not in str(e.value)
    fine = {
        "u32": pa.array([5, None, 7, 7, 5, 6], pa.uint32()),
        "dict": pa.array([5, None, 7, 7, 5, 6], pa.int32()).dictionary_encode(),
    }
    for name, values in fine.items():
        run = _rewritten(tmp_path, f"{name}-{stats}", "neg_id", values, write_statistics=stats)
        con = logs.connect(logs.find_runs([run]))
        files, sql = both(con, ["x"], 3, band="0-50")
        same(files, sql)
        assert files.m.sum() == 5  # the null's row left out
