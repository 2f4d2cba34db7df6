"""Benchmark: ``hardstat analyze consistency`` on a log of 100 M pairs (run on demand).

Generates (once, cached under ``--cache``, default /tmp/hardstat-bench) a run log written with
the trainer's own writer (RunLogWriter): ``--steps`` logged steps x ``--queries`` queries x
``--queue`` negatives from a ``--ids`` sample-id space, rows in rank order like the trainer's.
The queue follows a real MoCo queue (the keys of the last K / 256 batches of a shuffled epoch
order, null ids while the queue still holds its random initial keys), similarities carry a
per-sample hardness propensity and a same-class bonus, so the statistics have work to do.

Then, each part in its own process (so peak RSS is that part's alone):

* ``core``: the per-negative aggregation plus the statistics (``consistency`` with the
  permutation, class-conditional and temporal checks off), M pairs/s and peak RSS;
* ``full``: ``consistency`` with every check (permutation shuffle, class-conditional, halves);
* ``pandas``: a straightforward pandas implementation of the core statistic, on the whole log
  or on a slice of ``--pandas-rows`` rows (pandas is not a hardstat dependency; install it into
  the venv with ``pip install pandas`` for this part, which is skipped without it);
* ``limited``: the core and the full analysis under DuckDB ``memory_limit`` (default 200MB),
  far below the decoded size of the log, to show a log larger than memory works.

    python bench/bench_consistency.py                    # generate if needed, then all parts
    python bench/bench_consistency.py --steps 40         # a 10 M pair log, quick
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

BATCH = 256


def machine() -> str:
    import duckdb
    import pyarrow as pa

    cpu = "unknown cpu"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"{cpu}; {os.cpu_count()} cores; {mem:.1f} GiB RAM; duckdb {duckdb.__version__}; "
        f"pyarrow {pa.__version__}; numpy {np.__version__}; python {platform.python_version()}"
    )


def load() -> str:
    one, five, _ = os.getloadavg()
    note = "  (CONTENDED: load > 2 on this machine, timings are pessimistic)" if one > 2 else ""
    return f"load average {one:.2f} (1 min), {five:.2f} (5 min){note}"


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


# -- the log ---------------------------------------------------------------------------------
def run_dir(args: argparse.Namespace) -> Path:
    name = f"consistency-{args.steps}x{args.queries}x{args.queue}-ids{args.ids}"
    return Path(args.cache) / name


def generate(args: argparse.Namespace) -> Path:
    """Write the benchmark log once (a finished manifest marks it complete)."""
    import shutil

    import pyarrow as pa

    from hardstat import runs, schema
    from hardstat.classes import CIFAR10_CLASSES
    from hardstat.logwriter import RunLogWriter

    out = run_dir(args)
    manifest_path = out / schema.MANIFEST_FILE
    if manifest_path.is_file() and json.loads(manifest_path.read_text())["status"] == "finished":
        return out
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    n_ids, k, q, every = args.ids, args.queue, args.queries, 50
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, n_ids).astype(np.int16)
    propensity = rng.normal(0.0, 1.0, n_ids).astype(np.float32)
    steps_per_epoch = n_ids // BATCH
    orders: dict[int, np.ndarray] = {}

    def batch_ids(step: int) -> np.ndarray:
        epoch, b = divmod(step, steps_per_epoch)
        if epoch not in orders:
            if len(orders) > 4:
                orders.clear()
            orders[epoch] = np.random.default_rng(1000 + epoch).permutation(n_ids)
        return orders[epoch][b * BATCH : (b + 1) * BATCH].astype(np.int32)

    manifest = runs.new_manifest(
        out.name,
        config={
            "model": {"backbone": "convnet", "queue_size": k},
            "optim": {"batch_size": BATCH, "epochs": (args.steps * every) // steps_per_epoch + 1},
        },
        dataset={"spec": "synthetic:bench", "name": "synthetic", "num_classes": 10},
        queue_size=k,
        band="0-100",
        band_kept=k,
        seed=0,
        versions={},
        device="cpu",
    )
    runs.write_json_atomic(manifest_path, manifest)
    w = RunLogWriter(out, out.name)
    w.write(
        "samples",
        {"sample_id": np.arange(n_ids, dtype=np.int32), "split": "train", "label": labels},
    )
    w.write(
        "classes",
        {
            "label": np.array([c.label for c in CIFAR10_CLASSES], np.int16),
            "name": np.array([c.name for c in CIFAR10_CLASSES], object),
            "synset": np.array([c.synset for c in CIFAR10_CLASSES], object),
            "wnid": np.array([c.wnid for c in CIFAR10_CLASSES], object),
        },
    )
    slots = k // BATCH
    rank = np.tile(np.arange(1, k + 1, dtype=np.int32), q)
    t0 = time.perf_counter()
    for i in range(args.steps):
        step = i * every
        # queue: keys of the previous `slots` batches, oldest first; none before step 0
        queue = np.full(k, -1, np.int32)
        for j in range(slots):
            s = step - slots + j
            if s >= 0:
                queue[j * BATCH : (j + 1) * BATCH] = batch_ids(s)
        queries = batch_ids(step)[:q]
        known = queue >= 0
        safe = np.where(known, queue, 0)
        score = (
            0.15 * propensity[safe][None, :]
            + 0.1 * (labels[safe][None, :] == labels[queries][:, None])
            + 0.2 * rng.standard_normal((q, k), dtype=np.float32)
        )
        order = np.argsort(-score, axis=1, kind="stable")  # rank order per query
        sim = np.clip(np.take_along_axis(score, order, axis=1), -1, 1).ravel()
        neg = queue[order].ravel()
        w.write(
            "pairs",
            {
                "step": np.int32(step),
                "epoch": np.int16(step // steps_per_epoch),
                "query_id": np.repeat(queries, k),
                "neg_id": pa.array(neg, pa.int32(), mask=neg < 0),
                "rank": rank,
                "similarity": sim,
                "in_band": True,
            },
        )
        w.write(
            "queries",
            {
                "step": np.int32(step),
                "epoch": np.int16(step // steps_per_epoch),
                "query_id": queries,
                "label": labels[queries],
                "pos_similarity": np.float32(0.5),
                "loss": np.float32(5.0),
                "n_in_band": np.int32(k),
            },
        )
        if (i + 1) % 50 == 0:
            rate = (i + 1) * q * k / (time.perf_counter() - t0) / 1e6
            print(
                f"  generated {i + 1}/{args.steps} logged steps ({rate:.1f} M pairs/s)",
                file=sys.stderr,
            )
    w.close()
    manifest["status"] = "finished"
    manifest["steps_done"] = (args.steps - 1) * every + 1
    runs.write_json_atomic(manifest_path, manifest)
    return out


# -- parts (each in its own process) ---------------------------------------------------------
def part_core(args: argparse.Namespace) -> dict[str, object]:
    import scipy.stats  # noqa: F401  (imported before timing, as in the pandas part)

    from hardstat.analysis import logs
    from hardstat.analysis.consistency import consistency

    run = logs.find_runs([run_dir(args)])
    baseline = current_rss_mib()  # the interpreter with hardstat, DuckDB, polars, scipy loaded
    times = []
    for _ in range(args.repeat):
        con = logs.connect(run, threads=args.threads, memory_limit=args.memory_limit)
        t0 = time.perf_counter()
        r = consistency(
            con, band=args.band, permutation_check=False, class_check=False, temporal_check=False
        )
        times.append(time.perf_counter() - t0)
        con.close()
    return {
        "seconds": min(times),
        "seconds_all": times,
        "n_pairs": r.n_pairs,
        "n_negatives": r.n_negatives,
        "dispersion_ratio": r.dispersion_ratio,
        "statistic": r.statistic,
        "n_consistently_hard": r.n_consistently_hard,
        "rss_mib": peak_rss_mib(),
        "rss_baseline_mib": baseline,
    }


def part_full(args: argparse.Namespace) -> dict[str, object]:
    from hardstat.analysis import logs
    from hardstat.analysis.consistency import consistency

    run = logs.find_runs([run_dir(args)])
    con = logs.connect(run, threads=args.threads, memory_limit=args.memory_limit)
    stamps: list[tuple[float, str]] = []
    t0 = time.perf_counter()
    r = consistency(
        con,
        band=args.band,
        permutations=1000,
        progress=lambda msg: stamps.append((time.perf_counter() - t0, msg.split(":")[0])),
    )
    total = time.perf_counter() - t0
    stages = {"setup": stamps[0][0] if stamps else total}  # runs, band, halves split
    ends = [t for t, _ in stamps[1:]] + [total]
    for (start, name), end in zip(stamps, ends, strict=True):
        stages[name.split(" ")[0]] = end - start
    return {
        "seconds": total,
        "stages": stages,
        "n_pairs": r.n_pairs,
        "dispersion_ratio": r.dispersion_ratio,
        "shuffled_ratio": r.permutation.dispersion_ratio if r.permutation else None,
        "shuffled_p": r.permutation.p_value if r.permutation else None,
        "class_ratio": r.class_conditional.dispersion_ratio if r.class_conditional else None,
        "rho": r.temporal.rho if r.temporal else None,
        "rss_mib": peak_rss_mib(),
    }


def part_pandas(args: argparse.Namespace) -> dict[str, object]:
    """The same core statistic, written the straightforward way with pandas."""
    try:
        import pandas as pd
    except ImportError:
        return {"skipped": "pandas is not installed (pip install pandas into the venv)"}
    import math

    import pyarrow.parquet as pq
    from scipy.stats import binom, chi2

    from hardstat.bands import parse_band

    files = sorted((run_dir(args) / "pairs").glob("*.parquet"))
    t0 = time.perf_counter()
    if args.pandas_rows:
        parts, have = [], 0
        for f in files:
            pf = pq.ParquetFile(f)
            for g in range(pf.num_row_groups):
                if have >= args.pandas_rows:
                    break
                parts.append(pf.read_row_group(g, columns=["neg_id", "rank"]).to_pandas())
                have += len(parts[-1])
        df = pd.concat(parts, ignore_index=True)
    else:
        df = pd.read_parquet(run_dir(args) / "pairs", columns=["neg_id", "rank"])
    rows = len(df)
    df = df[df["neg_id"].notna()]
    band = parse_band(args.band)
    kept = band.kept_count(args.queue)
    p = kept / args.queue
    hit = pd.Series(False, index=df.index)
    for lo, hi in band.rank_intervals(args.queue):
        hit |= (df["rank"] > lo) & (df["rank"] <= hi)
    df = df.assign(hit=hit)
    g = df.groupby("neg_id")
    m = g.size().to_numpy().astype(float)
    k = g["hit"].sum().to_numpy().astype(float)
    x2 = float(np.sum((k - m * p) ** 2 / (m * p * (1 - p))))
    log_p = chi2.logsf(x2, len(m))  # noqa: F841 (computed like hardstat's, not reported)
    s = np.sum((k - m * p) ** 2 - k * (1 - 2 * p) - m * p * p) / (p * (1 - p))
    tarone = s / math.sqrt(2 * np.sum(m * (m - 1)))  # noqa: F841
    two = np.minimum(1, 2 * np.minimum(binom.sf(k - 1, m, p), binom.cdf(k, m, p)))
    order = np.argsort(two)
    q_sorted = (two[order] * len(two) / np.arange(1, len(two) + 1))[::-1]
    q = np.empty(len(two))
    q[order] = np.minimum.accumulate(q_sorted)[::-1]
    n_hard = int(np.count_nonzero((q <= 0.05) & (k > m * p)))
    seconds = time.perf_counter() - t0
    return {
        "seconds": seconds,
        "rows": rows,
        "whole": not args.pandas_rows,
        "statistic": x2,
        "n_consistently_hard": n_hard,
        "n_negatives": len(m),
        "rss_mib": peak_rss_mib(),
        "pandas": pd.__version__,
    }


PARTS = {"core": part_core, "full": part_full, "pandas": part_pandas}


def run_part(args: argparse.Namespace, part: str, *extra: str) -> dict[str, object]:
    cmd = [sys.executable, __file__, "--part", part, *extra]
    for name in ("steps", "queries", "queue", "ids", "cache", "threads", "band", "repeat"):
        cmd += [f"--{name}", str(getattr(args, name))]
    if args.pandas_rows:
        cmd += ["--pandas-rows", str(args.pandas_rows)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        return {"error": (done.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--part", choices=["all", "generate", *PARTS], default="all")
    p.add_argument("--steps", type=int, default=400, help="logged steps")
    p.add_argument("--queries", type=int, default=64, help="logged queries per step")
    p.add_argument("--queue", type=int, default=4096, help="K")
    p.add_argument("--ids", type=int, default=50_000, help="size of the sample-id space")
    p.add_argument("--cache", default="/tmp/hardstat-bench", help="where the log is kept")
    p.add_argument("--threads", type=int, default=2, help="DuckDB threads")
    p.add_argument("--band", default="0-5")
    p.add_argument("--repeat", type=int, default=3, help="repetitions of the core timing")
    p.add_argument("--memory-limit", default=None, help="DuckDB memory_limit for a part")
    p.add_argument("--limit", default="200MB", help="memory_limit of the larger-than-memory run")
    p.add_argument(
        "--pandas-rows", type=int, default=0, help="pandas on the first N rows (0: whole log)"
    )
    args = p.parse_args()
    if args.part in PARTS:
        print(json.dumps(PARTS[args.part](args)))
        return
    print(f"machine: {machine()}")
    t0 = time.perf_counter()
    path = generate(args)
    print(f"log: {path} (ready in {time.perf_counter() - t0:.1f} s)")
    if args.part == "generate":
        return
    import duckdb

    glob = str(path / "pairs" / "*.parquet")
    rows, with_id = duckdb.sql(f"SELECT count(*), count(neg_id) FROM '{glob}'").fetchall()[0]
    disk = sum(f.stat().st_size for f in (path / "pairs").glob("*.parquet"))
    decoded = rows * (4 * 5 + 2 * 2 + 1)  # run (dict index), step, query_id, neg_id, rank ...
    print(
        f"     {rows / 1e6:.1f} M pairs ({with_id / 1e6:.1f} M with a negative id), "
        f"{disk / 2**20:.0f} MiB on disk, about {decoded / 2**30:.1f} GiB decoded"
    )
    print(load())

    print(
        f"\n== core: per-negative aggregation + statistics, band {args.band}, "
        f"DuckDB {args.threads} threads (best of {args.repeat})"
    )
    core = run_part(args, "core")
    print(load())
    pandas = run_part(args, "pandas")
    print(load())
    print(f"{'implementation':<44}{'seconds':>10}{'M pairs/s':>12}{'peak RSS MiB':>14}")
    core_rate = rows / float(core["seconds"]) / 1e6 if "seconds" in core else float("nan")
    if "seconds" in core:
        print(
            f"{'hardstat consistency() core (DuckDB)':<44}{core['seconds']:>10.2f}"
            f"{core_rate:>12.1f}{core['rss_mib']:>14.0f}"
        )
        print(
            f"  all repetitions: {', '.join(f'{t:.2f}' for t in core['seconds_all'])} s; "
            f"RSS before the first query (imports only) {core['rss_baseline_mib']:.0f} MiB; "
            f"dispersion ratio {core['dispersion_ratio']:.2f}"
        )
    else:
        print(f"hardstat core failed: {core['error']}")
    if "seconds" in pandas:
        n = int(pandas["rows"])
        rate = n / float(pandas["seconds"]) / 1e6
        what = "pandas read_parquet + groupby" + (
            "" if pandas["whole"] else f" ({n / 1e6:.0f} M-row slice)"
        )
        print(f"{what:<44}{pandas['seconds']:>10.2f}{rate:>12.1f}{pandas['rss_mib']:>14.0f}")
        print(
            f"  pandas {pandas['pandas']} (not a hardstat dependency; installed for this "
            f"benchmark only); ratio hardstat / pandas: {core_rate / rate:.1f}x in M pairs/s"
        )
        if pandas["whole"] and "statistic" in core:
            same = (
                abs(float(pandas["statistic"]) - float(core["statistic"]))
                <= 1e-9 * abs(float(core["statistic"]))
                and pandas["n_consistently_hard"] == core["n_consistently_hard"]
            )
            print(f"  same X2 and consistently-hard count as hardstat: {same}")
    else:
        print(f"pandas: {pandas.get('skipped') or pandas.get('error')}")
    print(
        f"target: >= 50 M pairs/s on {args.threads} threads -> "
        f"{'MET' if core_rate >= 50 else 'NOT MET'}"
    )

    print("\n== full analysis: core + rank shuffle + class-conditional + halves (1000 perms)")
    full = run_part(args, "full")
    print(load())
    if "seconds" in full:
        stages = ", ".join(f"{k} {v:.2f} s" for k, v in full["stages"].items())
        print(
            f"total {full['seconds']:.2f} s ({rows / full['seconds'] / 1e6:.1f} M pairs/s), "
            f"peak RSS {full['rss_mib']:.0f} MiB; stages: {stages}"
        )
        print(
            f"  shuffled ranks: ratio {full['shuffled_ratio']:.4f}, p {full['shuffled_p']:.3f}; "
            f"class-conditional ratio {full['class_ratio']:.2f}; halves rho {full['rho']:.3f}"
        )
    else:
        print(f"full analysis failed: {full['error']}")

    print(
        f"\n== larger than memory: DuckDB memory_limit = {args.limit} "
        f"(log: {decoded / 2**30:.1f} GiB decoded, {disk / 2**20:.0f} MiB on disk)"
    )
    for part in ("core", "full"):
        res = run_part(args, part, "--memory-limit", args.limit)
        if "seconds" in res:
            print(
                f"{part}: works, {res['seconds']:.2f} s "
                f"({rows / float(res['seconds']) / 1e6:.1f} M pairs/s), peak RSS "
                f"{res['rss_mib']:.0f} MiB (whole process: Python, NumPy, Arrow included)"
            )
        else:
            print(f"{part}: FAILED under the limit: {res['error']}")
    print(load())


if __name__ == "__main__":
    main()
