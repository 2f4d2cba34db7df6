"""Benchmark and calibration of ``hardstat analyze consistency`` (run on demand).

Two jobs, each printing its figures side by side in one run:

* ``--part speed`` (default): a 105 M-pair log (400 logged steps x 64 queries x K = 4,096 over
  50,000 images, a step logged every K / batch = 16 steps, so 1.6 M keys), written once with the
  trainer's own writer (``tests/simlogs.py``) and cached under ``--cache``. Then, each in its
  own process so that peak RSS is that part's alone:

  - ``count``: the per-key aggregation in M pairs/s: the counting itself
    (``keycount.count_run``: the Parquet files read and summed per key) and the whole key
    table the analysis uses (``count_keys``: the counting, then the strata, the additive fits
    and the epochs), beside its SQL reference (DuckDB's hash aggregation) and a bare DuckDB
    scan of the same columns;
  - ``shuffle``: one within-strata permutation of the 1.6 M keys, ``StrataShuffle`` beside a
    per-stratum ``rng.permutation`` loop;
  - ``full``: the whole analysis with 1,000 permutations and 200 bootstrap draws, per stage,
    peak RSS.

  Targets (issue #9): counting >= 50 M pairs/s on 2 cores; the full analysis with 1,000
  permutations on 100 M pairs <= 60 s and <= 1 GB RSS.

* ``--part calibration``: ``--sims`` simulated logs of each scenario in the shape of a real
  study (60 logged steps x 64 queries x K = 4,096 over 50,000 images in 10 classes; ~5 keys per
  image), written with the trainer's writer and analysed by ``consistency()`` end to end:
  (A) per-key hardness only, (B) class-level persistence only, (C) per-image persistence only,
  (D) class + per-image, both at a correlation of centred hardness between keys of one image
  of about 0.05, and (E) scenario A with 500 planted strong persistent images (half harder,
  half easier) for the per-negative calls. Every scenario has the real dependence structure:
  queries of a step share the queue's keys, per-key effects, a same-class bonus and a class
  affinity matrix, key age and (B, D) class effects that drift over training. Results go to a
  JSON-lines file one simulation at a time (``--results``), so the job can be stopped and
  continued; the summary prints rejection rates with 95% Wilson intervals, interval coverage,
  recall and false discovery proportions.

    python bench/bench_consistency.py                          # speed (generates the log once)
    python bench/bench_consistency.py --part calibration --sims 200
    python bench/bench_consistency.py --part summary           # the calibration table so far
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from simlogs import SimSpec, simulate

# image_sd giving a correlation of centred key scores of ~0.05 between keys of one image at the
# study shape (measured with this bench: --part calibrate-effect)
IMAGE_SD = 0.053
SCENARIOS = ("A", "B", "C", "D", "E")


def machine() -> str:
    import duckdb

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
        f"numpy {np.__version__}; python {platform.python_version()}"
    )


def load() -> str:
    one, five, _ = os.getloadavg()
    note = "  (CONTENDED: load > 2 on 2 cores, timings are pessimistic)" if one > 2 else ""
    return f"load average {one:.2f} (1 min), {five:.2f} (5 min){note}"


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# -- speed -----------------------------------------------------------------------------------
SPEED_SPEC = SimSpec(logged_steps=400, every=16, queries=64)


def speed_log(args: argparse.Namespace) -> Path:
    out = Path(args.cache) / "consistency-400x64x4096"
    done = out / "sim" / ".complete"
    if done.is_file():
        return out / "sim"
    if out.exists():
        import shutil

        shutil.rmtree(out)
    t0 = time.perf_counter()
    print(f"generating {out} (once) ...", file=sys.stderr)
    run, _ = simulate(SPEED_SPEC.scenario("A"), 0, out, "sim")
    done.write_text(f"{time.perf_counter() - t0:.1f}\n")
    return run


def part_count(args: argparse.Namespace) -> dict[str, Any]:
    from hardstat.analysis import keycount, logs
    from hardstat.analysis.consistency import count_keys
    from hardstat.bands import parse_band

    run = speed_log(args)
    con = logs.connect(logs.find_runs([run]), threads=args.threads)
    n = con.sql("SELECT count(*) FROM pairs").fetchall()[0][0]
    files = logs.connected_files(con, "sim", "pairs")
    scans, runs, counts, sqls = [], [], [], []
    band = parse_band("0-5")
    for _ in range(args.repeat):  # alternated, so a change of load hits all four
        t0 = time.perf_counter()
        con.sql(
            "SELECT sum(rank), count(neg_id), count(key_step), count(query_id), max(epoch) "
            "FROM pairs"
        ).fetchall()
        scans.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        keycount.count_run(files, band.rank_intervals(4096), threads=args.threads)
        runs.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        keys = count_keys(con, ["sim"], 4096, band)
        counts.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        count_keys(con, ["sim"], 4096, band, filter_runs=False, method="sql")
        sqls.append(time.perf_counter() - t0)
    return {
        "pairs": n,
        "keys": keys.n_keys,
        "scan_seconds": min(scans),
        "run_seconds": min(runs),
        "run_all": runs,
        "count_seconds": min(counts),
        "count_all": counts,
        "sql_seconds": min(sqls),
        "sql_all": sqls,
        "rss_mib": peak_rss_mib(),
    }


def part_shuffle(args: argparse.Namespace) -> dict[str, Any]:
    """One draw of the consistency null at 1.6 M keys in 4,000 strata: a random rotation of
    every stratum (what the analysis uses), a full shuffle of every stratum (StrataShuffle),
    and a per-stratum rng.permutation loop."""
    from hardstat.analysis import stats

    rng = np.random.default_rng(0)
    sizes = rng.poisson(410, 4000)  # 400 logged steps x 10 classes of ~410 keys
    stratum = np.repeat(np.arange(sizes.size), sizes)
    values = rng.integers(0, 50_000, stratum.size)
    t0 = time.perf_counter()
    shuffle = stats.StrataShuffle(stratum)
    rotation = stats.StrataRotation(stratum, rng)
    setup = time.perf_counter() - t0
    rotated, shuffled = rotation.permuter(values), shuffle.permuter(values)

    def best(f: Any, n: int) -> float:
        times = []
        for _ in range(n):
            t = time.perf_counter()
            f()
            times.append(time.perf_counter() - t)
        return min(times)

    starts = np.r_[0, np.cumsum(sizes)[:-1]]

    def loop() -> None:
        idx = np.empty(stratum.size, np.int64)
        for s, n in zip(starts.tolist(), sizes.tolist(), strict=True):
            idx[s : s + n] = s + rng.permutation(n)

    return {
        "keys": int(stratum.size),
        "setup": setup,
        "rotation": best(lambda: rotated(rng), args.repeat * 5),
        "shuffle": best(lambda: shuffled(rng), args.repeat * 3),
        "loop": best(loop, args.repeat),
    }


def part_full(args: argparse.Namespace) -> dict[str, Any]:
    from hardstat.analysis import logs
    from hardstat.analysis.consistency import consistency

    run = speed_log(args)
    stamps: list[tuple[str, float]] = []
    rss: list[tuple[str, float]] = [("imports", peak_rss_mib())]
    t0 = time.perf_counter()
    con = logs.connect(logs.find_runs([run]), threads=args.threads, memory_limit=args.memory_limit)
    stamps.append(("connect", time.perf_counter()))
    result = consistency(
        con,
        permutations=args.permutations,
        bootstrap=args.bootstrap,
        shuffle_check=not args.no_shuffle_check,
        progress=lambda msg: (
            stamps.append((msg.split(" ")[0], time.perf_counter())),
            rss.append((msg.split(" ")[0], peak_rss_mib())),
        ),
    )
    end = time.perf_counter()
    marks = [("start", t0), *stamps, ("end", end)]
    stages = {a[0]: b[1] - a[1] for a, b in itertools.pairwise(marks)}
    return {
        "seconds": end - t0,
        "stages": stages,
        "rss_mib": peak_rss_mib(),
        "rss_before": dict(rss),
        "keys": result.n_keys,
        "pairs": result.n_pairs,
        "p": result.p_value,
        "statistic": result.persistence.statistic,
    }


def run_part(args: argparse.Namespace, part: str) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--part", part, "--cache", args.cache]
    cmd += ["--threads", str(args.threads), "--repeat", str(args.repeat)]
    cmd += ["--permutations", str(args.permutations), "--bootstrap", str(args.bootstrap)]
    if args.memory_limit:
        cmd += ["--memory-limit", args.memory_limit]
    if args.no_shuffle_check:
        cmd.append("--no-shuffle-check")
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        return {"error": (done.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def speed(args: argparse.Namespace) -> None:
    print(f"machine: {machine()}")
    t0 = time.perf_counter()
    run = speed_log(args)
    print(f"log: {run} (ready in {time.perf_counter() - t0:.0f} s)")
    print(load())
    count = run_part(args, "count")
    if "error" in count:
        print(f"count failed: {count['error']}")
        return
    pairs = float(count["pairs"])
    rate_scan = pairs / float(count["scan_seconds"]) / 1e6
    rate_run = pairs / float(count["run_seconds"]) / 1e6
    rate_count = pairs / float(count["count_seconds"]) / 1e6
    rate_sql = pairs / float(count["sql_seconds"]) / 1e6
    print(
        f"\n== counting: {pairs / 1e6:.1f} M pairs -> {int(count['keys']):,} keys, DuckDB "
        f"{args.threads} threads, best of {args.repeat}"
    )
    print(f"{'':<40}{'seconds':>10}{'M pairs/s':>12}")
    for what, secs, rate in (
        ("bare DuckDB scan of the columns", count["scan_seconds"], rate_scan),
        ("count_keys, SQL reference (DuckDB)", count["sql_seconds"], rate_sql),
        ("counting: keycount.count_run", count["run_seconds"], rate_run),
        ("count_keys (counting + strata, fits)", count["count_seconds"], rate_count),
    ):
        print(f"{what:<40}{secs:>10.2f}{rate:>12.1f}")
    for what, key in (("SQL", "sql_all"), ("count_run", "run_all"), ("count_keys", "count_all")):
        median = statistics.median(float(t) for t in count[key])
        print(
            f"  {what}: every repetition {', '.join(f'{t:.2f}' for t in count[key])} s; median "
            f"{median:.2f} s ({pairs / median / 1e6:.1f} M pairs/s)"
        )
    print(
        f"  ratio count_keys files / SQL: {rate_count / rate_sql:.2f}; count / scan: "
        f"{rate_count / rate_scan:.2f}; peak RSS {count['rss_mib']:.0f} MiB"
    )
    print(
        f"  target >= 50 M pairs/s: counting {'MET' if rate_run >= 50 else 'NOT MET'}, "
        f"with the key table {'MET' if rate_count >= 50 else 'NOT MET'}"
    )
    print(load())
    sh = run_part(args, "shuffle")
    if "error" not in sh:
        print(
            f"\n== one draw of the null, {int(sh['keys']):,} keys in 4,000 strata (best of several)"
        )
        for what, key in (
            ("random rotation of every stratum (used)", "rotation"),
            ("full shuffle of every stratum", "shuffle"),
            ("per-stratum rng.permutation loop", "loop"),
        ):
            ratio = sh[key] / sh["rotation"]
            print(f"  {what:<42}{sh[key] * 1e3:8.1f} ms  {ratio:5.1f}x")
        print(f"  setup of both, once: {sh['setup'] * 1e3:.0f} ms")
    print(load())
    full = run_part(args, "full")
    if "error" in full:
        print(f"full analysis failed: {full['error']}")
        return
    print(
        f"\n== full analysis: {args.permutations} permutations, {args.bootstrap} bootstrap "
        f"draws, shuffle check {'off' if args.no_shuffle_check else 'on'}, DuckDB memory_limit "
        f"{args.memory_limit or 'default (50% of RAM)'}"
    )
    stages = ", ".join(f"{k} {v:.1f} s" for k, v in full["stages"].items())
    print(f"  total {full['seconds']:.1f} s, peak RSS {full['rss_mib']:.0f} MiB; {stages}")
    before = ", ".join(f"{k} {v:.0f}" for k, v in full["rss_before"].items())
    print(f"  peak RSS (MiB) before each stage: {before}")
    ok = float(full["seconds"]) <= 60 and float(full["rss_mib"]) <= 1024
    print(f"  target <= 60 s and <= 1 GB: {'MET' if ok else 'NOT MET'}")
    print(load())


# -- calibration -----------------------------------------------------------------------------
PLANTED_EFFECT = 0.35  # scenario E's default: the shift of a planted image's key similarities


def scenario_spec(name: str, planted_effect: float = PLANTED_EFFECT) -> SimSpec:
    base = SimSpec()
    if name == "E":
        return SimSpec(**{**base.__dict__, "planted": 500, "planted_effect": planted_effect})
    return base.scenario(name, IMAGE_SD)


def one_sim(
    scenario: str,
    index: int,
    permutations: int,
    bootstrap: int,
    planted_effect: float = PLANTED_EFFECT,
) -> dict[str, Any]:
    import shutil

    from hardstat.analysis import logs
    from hardstat.analysis.consistency import consistency

    root = Path(tempfile.mkdtemp(prefix="hardstat-cal-"))
    try:
        t0 = time.perf_counter()
        seed = 1000 * SCENARIOS.index(scenario) + index
        run, truth = simulate(scenario_spec(scenario, planted_effect), seed, root, "sim")
        t1 = time.perf_counter()
        con = logs.connect(logs.find_runs([run]))
        r = consistency(con, permutations=permutations, bootstrap=bootstrap, shuffle_check=False)
        con.close()
        t2 = time.perf_counter()
        hard, easy = set(r.hard_ids), set(r.easy_ids)
        ph, pe = set(truth.planted_hard.tolist()), set(truth.planted_easy.tolist())
        per = r.per_negative
        testable = set(per.filter(per["p"].is_not_null())["neg_id"].to_list())
        planted_testable = (ph | pe) & testable
        true_calls = len(hard & ph) + len(easy & pe)
        calls = len(hard) + len(easy)
        return {
            "scenario": scenario,
            "index": index,
            **({"planted_effect": planted_effect} if scenario == "E" else {}),
            "p": r.p_value,
            "statistic": r.persistence.statistic,
            "ci": list(r.persistence.ci),
            "interval": "normal",  # estimate -/+ 1.96 bootstrap SE (percentile before)
            "icc_within": r.icc_within_key.value,
            "icc_between": r.icc_between_key.value,
            "icc_between_ci": list(r.icc_between_key.ci),
            "calls": calls,
            "false_calls": calls - true_calls,
            "planted_testable": len(planted_testable),
            "recall": true_calls / len(planted_testable) if planted_testable else None,
            "dispersion_ratio": r.diagnostics.dispersion_ratio,
            "seconds_simulate": t1 - t0,
            "seconds_analyse": t2 - t1,
        }
    finally:
        shutil.rmtree(root, ignore_errors=True)


def calibration(args: argparse.Namespace) -> None:
    path = Path(args.results)
    path.parent.mkdir(parents=True, exist_ok=True)

    def label(scenario: str, effect: float | None) -> str:  # E at another effect is its own row
        if scenario != "E" or effect in (None, PLANTED_EFFECT):
            return scenario
        return f"E@{effect:g}"

    done = {(label(r["scenario"], r.get("planted_effect")), r["index"]) for r in read_results(path)}
    scenarios = [s for s in args.scenarios.split(",") if s]
    print(f"machine: {machine()}\n{load()}", file=sys.stderr)
    for index in range(args.sims):  # interleaved, so a stopped job has every scenario
        for scenario in scenarios:
            if (label(scenario, args.planted_effect), index) in done:
                continue
            row = one_sim(scenario, index, args.permutations, args.bootstrap, args.planted_effect)
            with path.open("a") as f:
                f.write(json.dumps(row) + "\n")
            print(
                f"{scenario}{index}: p {row['p']:.3f}, statistic {row['statistic']:+.4f}, "
                f"calls {row['calls']}, "
                f"{row['seconds_simulate']:.0f}+{row['seconds_analyse']:.0f} s",
                file=sys.stderr,
            )
    summary(args)


def read_results(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def wilson(k: int, n: int) -> tuple[float, float]:
    if n == 0:
        return float("nan"), float("nan")
    z = 1.959964
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def summary(args: argparse.Namespace) -> None:
    rows = read_results(Path(args.results))
    print(f"calibration results: {args.results} ({len(rows)} simulated logs)")
    print(
        f"{'scenario':<10}{'n':>5}{'reject @0.05':>14}{'95% CI':>18}{'mean stat':>11}"
        f"{'CI covers':>11}{'any call':>10}{'mean FDP':>10}{'recall':>9}{'s/sim':>8}"
    )
    effects = sorted(
        {float(r.get("planted_effect", PLANTED_EFFECT)) for r in rows if r["scenario"] == "E"}
    )
    groups = [(s, s) for s in SCENARIOS if s != "E"] + [
        ("E" if e == PLANTED_EFFECT else f"E@{e:g}", e) for e in effects
    ]
    for name, key in groups:
        s = "E" if name.startswith("E") else name
        sub = [
            r
            for r in rows
            if r["scenario"] == s
            and (s != "E" or float(r.get("planted_effect", PLANTED_EFFECT)) == key)
        ]
        if not sub:
            continue
        n = len(sub)
        rej = sum(float(r["p"]) < 0.05 for r in sub)
        lo, hi = wilson(rej, n)
        stats_ = np.array([float(r["statistic"]) for r in sub])
        # A, B: no persistence, truth 0; C, D, E: the mean estimate over the scenario's logs
        truth = 0.0 if s in ("A", "B") else float(stats_.mean())
        normal = [r for r in sub if r.get("interval") == "normal"]
        cover = np.mean([r["ci"][0] <= truth <= r["ci"][1] for r in normal]) if normal else np.nan
        any_call = np.mean([int(r["calls"]) > 0 for r in sub])
        # a false call is one of an image without a planted effect: defined where the truth
        # separates images (A, B: none persist; E: the planted ones); in C and D every image
        # has its own persistent effect, so no call is false by construction of the truth
        fdp = (
            np.mean(
                [int(r["false_calls"]) / int(r["calls"]) if int(r["calls"]) else 0.0 for r in sub]
            )
            if s in ("A", "B", "E")
            else np.nan
        )
        recalls = [float(r["recall"]) for r in sub if r["recall"] is not None]
        recall = f"{np.mean(recalls):.3f}" if recalls else "-"
        secs = np.mean([float(r["seconds_simulate"]) + float(r["seconds_analyse"]) for r in sub])
        print(
            f"{name:<10}{n:>5}{rej / n:>14.3f}{f'[{lo:.3f}, {hi:.3f}]':>18}{stats_.mean():>11.4f}"
            f"{cover:>11.3f}{any_call:>10.3f}{fdp:>10.3f}{recall:>9}{secs:>8.0f}"
        )
    print(
        "CI covers: share of 95% bootstrap intervals of the persistence statistic (estimate -/+ "
        "1.96 bootstrap SE, logs analysed since that became the interval) that contain the truth "
        "(0 for A, B; the mean estimate over the scenario's logs for C, D, E). E@x: scenario E "
        f"with planted effect x (E: {PLANTED_EFFECT:g})"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--part",
        choices=["speed", "count", "shuffle", "full", "calibration", "summary"],
        default="speed",
    )
    p.add_argument("--cache", default="/tmp/hardstat-bench", help="where the speed log is kept")
    p.add_argument("--threads", type=int, default=2, help="DuckDB threads")
    p.add_argument("--repeat", type=int, default=3, help="repetitions of a timing")
    p.add_argument("--permutations", type=int, default=1000)
    p.add_argument("--bootstrap", type=int, default=200)
    p.add_argument("--no-shuffle-check", action="store_true")
    p.add_argument(
        "--memory-limit",
        default=None,
        help="DuckDB memory_limit of the full analysis (default: hardstat's, 50%% of RAM)",
    )
    p.add_argument("--sims", type=int, default=200, help="calibration logs per scenario")
    p.add_argument("--scenarios", default=",".join(SCENARIOS))
    p.add_argument(
        "--planted-effect",
        type=float,
        default=PLANTED_EFFECT,
        help="scenario E: shift of a planted image's key similarities (a power curve: rerun "
        "with several values)",
    )
    p.add_argument(
        "--results",
        default="/tmp/hardstat-bench/consistency-calibration.jsonl",
        help="calibration results, one JSON line per simulated log (the job resumes from it)",
    )
    args = p.parse_args()
    if args.part in ("count", "shuffle", "full"):
        part = {"count": part_count, "shuffle": part_shuffle, "full": part_full}[args.part]
        print(json.dumps(part(args)))
    elif args.part == "speed":
        speed(args)
    elif args.part == "calibration":
        calibration(args)
    else:
        summary(args)


if __name__ == "__main__":
    main()
