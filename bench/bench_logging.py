"""Benchmark: rank-logging throughput and its cost in a training step (run on demand).

Part 1 (logger): B x K similarity matrices like a real step's (unit 128-d embeddings), pushed
through the recorder (``hardstat.record.Recorder``: CPU copy, checks, background ranking,
Parquet writing) as fast as it takes them, as the trainer calls it (torch tensors, a queue's
(K,) ids), with NumPy arrays, and with in-batch negatives ((B, K) ids, different per query);
reports sustained pairs/s and bytes per pair on disk, beside a plain torch.argsort and
pyarrow's default writer on the same data.

Part 2 (training): the real training loop (``hardstat.train.loop.train``) on the cifar10-cpu
preset for N steps per setting, reading step times from the run's own ``steps`` table: logging
off, default cadence, every step with the whole batch, and band 0-5 (masking cost).

    python bench/bench_logging.py                      # both parts
    python bench/bench_logging.py --part logger --steps 40
    python bench/bench_logging.py --part training --preset cifar10 --device cuda   # on a GPU
"""

from __future__ import annotations

import argparse
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
CIFAR = REPO.parent / "shared" / "data" / "cifar10"


def machine() -> str:
    cpu = "unknown cpu"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{cpu}; torch threads {torch.get_num_threads()}; torch {torch.__version__}; "
        f"pyarrow {pa.__version__}; numpy {np.__version__}; python {platform.python_version()}"
    )


def fake_step(b: int, k: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
    """A step's tensors as the trainer hands them to the recorder (queue layout)."""
    q = F.normalize(torch.randn(b, 128, generator=gen), dim=1)
    queue = F.normalize(torch.randn(k, 128, generator=gen), dim=1)
    l_neg = q @ queue.T  # (B, K)
    return {
        "query_ids": torch.arange(b),
        "query_labels": torch.zeros(b, dtype=torch.long),
        "pos_similarity": (q * q).sum(1) * 0.8,
        "neg_similarity": l_neg,
        "neg_ids": torch.randperm(max(50_000, 2 * k), generator=gen)[:k],
        "neg_key_steps": torch.randint(0, 1000, (k,), generator=gen),
        "losses": torch.full((b,), 5.0),
    }


def in_batch_step(step: dict[str, torch.Tensor], gen: torch.Generator) -> dict[str, torch.Tensor]:
    """The same similarities as in-batch negatives: (B, K) ids, different for every query."""
    b, k = step["neg_similarity"].shape
    ids = torch.randint(b, 50_000 + k, (b, k), generator=gen)  # never a query's own id (< b)
    return {**step, "neg_ids": ids, "neg_key_steps": None}  # type: ignore[dict-item]


def as_numpy(step: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    return {n: None if v is None else v.numpy() for n, v in step.items()}  # type: ignore[misc]


def run_recorder(steps: int, inputs: list[dict], negatives: str) -> tuple[float, int]:  # type: ignore[type-arg]
    """Sustained pairs/s of the recorder on ``inputs`` (every step logged, every query) and the
    bytes of the pairs files."""
    from hardstat.logwriter import RunLogWriter
    from hardstat.record import Recorder

    b, k = inputs[0]["neg_similarity"].shape
    tmp = Path(tempfile.mkdtemp(prefix="hardstat-bench-"))
    try:
        rec = Recorder(
            RunLogWriter(tmp, "bench"),
            negatives=negatives,  # type: ignore[arg-type]
            negatives_per_query=k,
            every=1,
            queries=0,
            seed=0,
        )
        t0 = time.perf_counter()
        for step in range(steps):
            # from step 1000 on: the fake key steps (0..999) are all earlier
            rec.log_step(
                1000 + step, epoch=0, lr=0.1, started=time.perf_counter(), **inputs[step % 4]
            )
        rec.flush()
        dt = time.perf_counter() - t0
        rec.close()
        pairs = steps * b * k
        files = list((tmp / "pairs").glob("*.parquet"))
        rows = sum(pq.ParquetFile(p).metadata.num_rows for p in files)
        assert rows == pairs, (rows, pairs)
        size = sum(p.stat().st_size for p in files)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return pairs / dt, size


def bench_logger(steps: int, b: int, k: int, rounds: int) -> None:
    import statistics

    gen = torch.Generator().manual_seed(0)
    queue = [fake_step(b, k, gen) for _ in range(4)]
    in_batch = [in_batch_step(s, gen) for s in queue]
    variants = {
        "Recorder, queue: the trainer's call (tensors, (K,) ids)": (queue, "queue"),
        "Recorder, queue, NumPy arrays": ([as_numpy(s) for s in queue], "queue"),
        "Recorder, in-batch ((B, K) ids per query)": (in_batch, "in_batch"),
    }
    rates: dict[str, list[float]] = {name: [] for name in variants}
    sizes: dict[str, int] = {}
    for _ in range(rounds):  # interleaved, so drift hits every variant alike
        for name, (inputs, negatives) in variants.items():
            rate, size = run_recorder(steps, inputs, negatives)
            rates[name].append(rate)
            sizes[name] = size
    pairs = steps * b * k
    # references on the same data
    l_neg = queue[0]["neg_similarity"]
    t1 = time.perf_counter()
    for _ in range(5):
        torch.argsort(l_neg, dim=1, descending=True)
    argsort_rate = 5 * b * k / (time.perf_counter() - t1)
    tmp = Path(tempfile.mkdtemp(prefix="hardstat-bench-"))
    try:
        from hardstat.logwriter import RunLogWriter
        from hardstat.record import Recorder

        rec = Recorder(RunLogWriter(tmp, "ref"), negatives_per_query=k, every=1, queries=0, seed=0)
        rec.log_step(1000, epoch=0, lr=0.1, **queue[0])
        rec.close()
        table = pq.read_table(next((tmp / "pairs").glob("*.parquet")))
        t2 = time.perf_counter()
        pq.write_table(table, tmp / "default.parquet")
        default_rate = table.num_rows / (time.perf_counter() - t2)
        default_bytes = (tmp / "default.parquet").stat().st_size / table.num_rows
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(
        f"\n== rank logging, B={b}, K={k}, {steps} logged steps ({pairs / 1e6:.1f} M pairs), "
        f"median of {rounds} interleaved rounds"
    )
    print(f"{'what':<58}{'M pairs/s':>12}{'bytes/pair':>12}   per round")
    for name, values in rates.items():
        per_round = " ".join(f"{v / 1e6:.1f}" for v in values)
        print(
            f"{name:<58}{statistics.median(values) / 1e6:>12.1f}"
            f"{sizes[name] / pairs:>12.2f}   {per_round}"
        )
    print(f"{'reference: torch.argsort rows only':<58}{argsort_rate / 1e6:>12.1f}{'':>12}")
    print(
        f"{'reference: pyarrow default write only':<58}{default_rate / 1e6:>12.1f}"
        f"{default_bytes:>12.2f}"
    )
    trainer = statistics.median(next(iter(rates.values())))
    met = trainer >= 8e6 and sizes[next(iter(sizes))] / pairs <= 4
    verdict = "MET" if met else "NOT MET"
    print(f"targets: >= 8 M pairs/s, <= 4 bytes/pair (trainer's call) -> {verdict}")


def mean_step_seconds(run: Path, warmup: int) -> float:
    """Mean ``seconds`` of the run's ``steps`` rows from step ``warmup`` on (pyarrow only, so
    this runs where DuckDB is not installed, e.g. a bare GPU machine)."""
    table = pq.read_table(run / "steps", columns=["step", "seconds"])
    step = table.column("step").to_numpy()
    seconds = table.column("seconds").to_numpy()
    return float(seconds[step >= warmup].mean())


def bench_training(
    steps: int, dataset: str, rounds: int, preset_name: str, device: str, warmup: int = 5
) -> None:
    import statistics

    from hardstat.config import preset
    from hardstat.train.loop import train

    base = preset(preset_name).replace(
        **{
            "data.dataset": dataset,
            # enough epochs that the run never ends before ``steps`` (stop_after ends it), and
            # no checkpoints or kNN evaluations in between
            "optim.epochs": 10_000,
            "checkpoint_every": 0,
            "threads": torch.get_num_threads(),
            "eval.knn_every": 0,
            "device": device,
        }
    )
    settings = {
        "logging off": base.replace(**{"log.enabled": False}),
        "default cadence (every 50, 64 queries)": base,
        "every step, whole batch": base.replace(**{"log.every": 1, "log.queries": 0}),
        "band 0-5, logging off": base.replace(band="0-5", **{"log.enabled": False}),
    }
    tmp = Path(tempfile.mkdtemp(prefix="hardstat-bench-"))
    means: dict[str, list[float]] = {name: [] for name in settings}
    try:
        for r in range(rounds):  # settings interleaved, so drift hits them alike
            for i, (name, config) in enumerate(settings.items()):
                run = tmp / f"r{r}-{i}"
                train(config, run, progress=False, stop_after=steps)
                means[name].append(mean_step_seconds(run, warmup))
                print(f"  round {r}: {name}: {means[name][-1]:.4f} s/step", flush=True)
                shutil.rmtree(run)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    off = means["logging off"]
    print(
        f"\n== training step time, {preset_name} preset on {device} ({dataset}), mean of steps "
        f"{warmup}..{steps - 1}, {rounds} interleaved rounds"
    )
    print(f"{'setting':<42}{'s/step (median)':>16}{'ratio of medians':>18}{'ratio per round':>26}")
    med_off = statistics.median(off)
    ratios = {}
    for name, values in means.items():
        med = statistics.median(values)
        ratios[name] = med / med_off
        per_round = " ".join(f"{v / o:.3f}" for v, o in zip(values, off, strict=True))
        print(f"{name:<42}{med:>16.3f}{med / med_off:>18.3f}{per_round:>26}")
    print(
        "targets: default cadence <= 1.05x, band masking <= 1.05x -> "
        f"default {ratios['default cadence (every 50, 64 queries)']:.3f}x, "
        f"band {ratios['band 0-5, logging off']:.3f}x"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--part", choices=["logger", "training", "all"], default="all")
    p.add_argument("--steps", type=int, default=40, help="logged steps for the logger part")
    p.add_argument("--batch", type=int, default=256, help="logged queries per step (logger part)")
    p.add_argument("--queue-size", type=int, default=4096, help="K for the logger part")
    p.add_argument("--logger-rounds", type=int, default=3, help="rounds of the logger part")
    p.add_argument("--train-steps", type=int, default=100, help="steps per training setting")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds of all settings")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--preset", default="cifar10-cpu", help="cifar10 for the GPU recipe")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--dataset", help="dataset spec (default: ../shared CIFAR-10, else synthetic)")
    p.add_argument("--warmup", type=int, default=5, help="first steps left out of the means")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    print(f"machine: {machine()}")
    if args.part in ("logger", "all"):
        bench_logger(args.steps, args.batch, args.queue_size, args.logger_rounds)
    if args.part in ("training", "all"):
        dataset = args.dataset or (f"npz:{CIFAR}" if CIFAR.is_dir() else "synthetic:20000")
        if args.dataset is None and not CIFAR.is_dir():
            print(f"note: {CIFAR} not found; using synthetic data")
        bench_training(
            args.train_steps, dataset, args.rounds, args.preset, args.device, args.warmup
        )


if __name__ == "__main__":
    main()
