"""Validation and benchmark of ``hardstat analyze semantic`` (run on demand).

Parts:

* ``coverage``: the coverage of the 95% intervals of each resampling design on simulated crossed
  logs (``tests/crossedlogs.py``: step, query and negative effects, negatives shared by
  neighbouring steps and recurring as the pool wraps like epochs), for several dependence
  structures and more logs than the unit test (``tests/analysis/test_stats.py``);
* ``widths``: on real runs (``--runs DIR ...``), the interval widths of the contrasts under each
  design, relative to resampling queries only (the old default);
* ``speed``: ``semantic`` with 1000 bootstrap replicates and 1000 permutations on a MoCo-shaped
  log of ``--steps`` x 64 queries x K = 4096 (400 steps: 105 M pairs; written once with the
  trainer's writer and cached under ``--cache``), wall time and peak RSS.

    python bench/bench_semantic.py --part coverage
    python bench/bench_semantic.py --part widths --runs runs/demo-s1 runs/demo-s2 [--epochs 0-]
    python bench/bench_semantic.py --part speed --steps 100
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

SCENARIOS = {
    "steps, queries and negatives": {},
    "negatives only (shared by steps)": {"sd_step": 0.0, "sd_query": 0.0, "sd_neg": 0.5},
    "steps only": {"sd_query": 0.0, "sd_neg": 0.0},
    "queries only": {"sd_step": 0.0, "sd_neg": 0.0},
    "no effects (pair noise only)": {"sd_step": 0.0, "sd_query": 0.0, "sd_neg": 0.0},
    "negatives nested in steps": {"sd_step": 0.1, "pool": 100_000, "shift": 64},
    "8 steps": {"steps": 8},
}


def part_coverage(args: argparse.Namespace) -> None:
    from crossedlogs import DESIGNS, coverage

    print(f"coverage of nominal 95% intervals, {args.logs} logs x {args.reps} replicates each")
    print(f"{'scenario':36s}" + "".join(f"{d:>22s}" for d in DESIGNS))
    for i, (name, log) in enumerate(SCENARIOS.items()):
        t0 = time.perf_counter()
        res = coverage(args.logs, args.reps, seed=100 + i, **log)
        cells = "".join(f"{100 * c:>12.1f}% w{w:>7.3f}" for c, w in res.values())
        print(f"{name:36s}{cells}  ({time.perf_counter() - t0:.0f} s)", flush=True)


def part_widths(args: argparse.Namespace) -> None:
    from hardstat.analysis import logs
    from hardstat.analysis.semantic import RESAMPLING, parse_range, semantic

    con = logs.connect(logs.find_runs(args.runs))
    epochs = parse_range(args.epochs) if args.epochs else None
    width: dict[str, np.ndarray] = {}
    for design in RESAMPLING:
        r = semantic(con, bootstrap=args.reps, permutations=0, resampling=design, epochs=epochs)
        width[design] = np.array([c.ci_hi - c.ci_lo for c in r.contrasts])
        names = [f"{c.run}:{c.contrast}" for c in r.contrasts]
    print(
        f"interval widths relative to resampling queries only ({args.reps} replicates; "
        f"window: {r.window})"
    )
    for i, name in enumerate(names):
        ratios = "  ".join(f"{d} {width[d][i] / width['query'][i]:.2f}" for d in RESAMPLING)
        print(f"{name:45s} {ratios}")


def generate(args: argparse.Namespace) -> Path:
    """A MoCo-shaped log (every 50 steps, batch 256, queue = the last K / 256 batches with
    key_step, class-structured and per-image hardness, self-negatives), written once."""
    import shutil

    import pyarrow as pa

    from hardstat import runs, schema
    from hardstat.classes import CIFAR10_CLASSES
    from hardstat.logwriter import RunLogWriter

    batch, every, n_ids, k, q = 256, 50, 50_000, 4096, 64
    out = Path(args.cache) / f"semantic-{args.steps}x{q}x{k}"
    manifest_path = out / schema.MANIFEST_FILE
    if manifest_path.is_file() and json.loads(manifest_path.read_text())["status"] == "finished":
        return out
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, n_ids).astype(np.int16)
    propensity = rng.normal(0.0, 1.0, n_ids).astype(np.float32)
    per_epoch = n_ids // batch
    manifest = runs.new_manifest(
        out.name,
        config={
            "model": {"backbone": "convnet", "queue_size": k},
            "optim": {"batch_size": batch, "epochs": args.steps * every // per_epoch + 1},
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
    w.write("samples", {"sample_id": np.arange(n_ids, dtype=np.int32), "split": "train",
                        "label": labels})  # fmt: skip
    w.write(
        "classes",
        {
            "label": np.array([c.label for c in CIFAR10_CLASSES], np.int16),
            "name": np.array([c.name for c in CIFAR10_CLASSES], object),
            "synset": np.array([c.synset for c in CIFAR10_CLASSES], object),
            "wnid": np.array([c.wnid for c in CIFAR10_CLASSES], object),
        },
    )

    def batch_ids(step: int) -> np.ndarray:
        epoch, b = divmod(step, per_epoch)
        order = np.random.default_rng(1000 + epoch).permutation(n_ids)
        return order[b * batch : (b + 1) * batch].astype(np.int32)

    slots = k // batch
    rank = np.tile(np.arange(1, k + 1, dtype=np.int32), q)
    for i in range(args.steps):
        step = (i + 1) * every
        queue = np.concatenate([batch_ids(step - slots + j) for j in range(slots)])  # (K,)
        key_step = np.repeat(np.arange(step - slots, step, dtype=np.int32), batch)  # (K,)
        queries = batch_ids(step)[:q]  # (q,)
        score = (
            0.15 * propensity[queue][None, :]
            + 0.1 * (labels[queue][None, :] == labels[queries][:, None])
            + 0.5 * (queue[None, :] == queries[:, None])
            + 0.2 * rng.standard_normal((q, k), dtype=np.float32)
        )  # (q, K)
        order = np.argsort(-score, axis=1, kind="stable")  # rank order per query
        w.write(
            "pairs",
            {
                "step": np.int32(step),
                "epoch": np.int16(step // per_epoch),
                "query_id": np.repeat(queries, k),
                "neg_id": pa.array(queue[order].ravel(), pa.int32()),
                "key_step": pa.array(key_step[order].ravel(), pa.int32()),
                "rank": rank,
                "similarity": np.clip(np.take_along_axis(score, order, axis=1), -1, 1).ravel(),
                "in_band": True,
            },
        )
        w.write(
            "queries",
            {
                "step": np.int32(step),
                "epoch": np.int16(step // per_epoch),
                "query_id": queries,
                "label": labels[queries],
                "pos_similarity": np.float32(0.5),
                "loss": np.float32(5.0),
                "n_in_band": np.int32(k),
            },
        )
        if (i + 1) % 50 == 0:
            print(f"  generated {i + 1}/{args.steps} logged steps", file=sys.stderr)
    w.close()
    manifest["status"] = "finished"
    manifest["steps_done"] = args.steps * every + 1
    runs.write_json_atomic(manifest_path, manifest)
    return out


def part_speed(args: argparse.Namespace) -> None:
    from hardstat.analysis import logs
    from hardstat.analysis.semantic import semantic

    run = generate(args)
    con = logs.connect(logs.find_runs([run]), threads=args.threads)
    one, five, _ = os.getloadavg()
    print(
        f"{os.cpu_count()} cores, DuckDB threads {args.threads}, load average {one:.1f} (1 min),"
        f" {five:.1f} (5 min){'  CONTENDED: timings are pessimistic' if one > 2 else ''}"
    )
    for label, kw in (
        ("late third, no resampling", {"bootstrap": 0, "permutations": 0}),
        ("late third, 1000 bootstrap + 1000 permutations", {}),
        ("all steps (--epochs 0-), 1000 + 1000", {"epochs": (0, None)}),
    ):
        t0 = time.perf_counter()
        r = semantic(con, **kw)  # type: ignore[arg-type]
        dt = time.perf_counter() - t0
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(
            f"{label:48s} {dt:6.1f} s  {r.n_pairs / 1e6:6.1f} M pairs in the window, "
            f"peak RSS {rss:.0f} MiB",
            flush=True,
        )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--part", choices=["coverage", "widths", "speed"], required=True)
    p.add_argument("--logs", type=int, default=400, help="simulated logs per scenario")
    p.add_argument("--reps", type=int, default=1000, help="bootstrap replicates")
    p.add_argument("--runs", nargs="*", default=[], help="run directories (widths)")
    p.add_argument("--epochs", default=None, help="epochs of the runs, e.g. 0- (widths)")
    p.add_argument("--steps", type=int, default=400, help="logged steps of the speed log")
    p.add_argument("--cache", default="/tmp/hardstat-bench", help="where the speed log is kept")
    p.add_argument("--threads", type=int, default=2, help="DuckDB threads")
    args = p.parse_args()
    {"coverage": part_coverage, "widths": part_widths, "speed": part_speed}[args.part](args)


if __name__ == "__main__":
    main()
