"""Simulated MoCo rank logs with known truth, written with the trainer's own writer.

Importable from tests as ``from simlogs import SimSpec, simulate`` (pytest's ``pythonpath``
includes ``tests/``) and from ``bench/bench_consistency.py``.

The log has the shape of a real study: ``n_images`` images in ``n_classes`` classes, batches of
``batch`` images in a fresh random order every epoch, a queue holding the keys of the last
``queue / batch`` batches (``key_step`` = the step of the batch that enqueued a key), and at
every ``every``-th step ``queries`` queries of the current batch logged against the whole
queue. The similarity of query q and key a is

    same_class * [class(q) == class(a)] + affinity[class(q), class(a)]   the class structure
    + class_effect[key_step(a), class(a)]                               class-level hardness
    + key_effect[a]                                                     this key's own hardness
    + image_effect[image(a)]                                            persistent, per image
    - drift * (step - key_step(a))                                      older keys drift away
    + self_bonus * [image(q) == image(a)]                               self-negatives
    + N(0, 1)

and ranks are 1 = most similar. ``class_effect`` is a per-class level plus a random walk over
the steps (drift in training). The truth: the image effects (``Truth.image_effect``), which
are the only thing that makes a negative's hardness persist across its keys beyond its class.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from hardstat import runs, schema
from hardstat.classes import CIFAR10_CLASSES
from hardstat.logwriter import RunLogWriter


@dataclass(frozen=True)
class SimSpec:
    n_images: int = 50_000
    n_classes: int = 10
    batch: int = 256
    queue: int = 4096
    every: int = 16
    logged_steps: int = 60
    queries: int = 64
    key_sd: float = 0.19  # gives a within-key ICC of hardness near 0.034 (measured on real logs)
    image_sd: float = 0.0
    class_sd: float = 0.0
    class_walk_sd: float = 0.0
    same_class: float = 0.6
    affinity_sd: float = 0.15
    drift: float = 0.005
    self_bonus: float = 2.0
    planted: int = 0  # images with a strong persistent effect, half harder and half easier
    planted_effect: float = 0.0

    def scenario(self, name: str, image_sd: float = 0.0) -> SimSpec:
        """The issue's scenarios: A per-key hardness only, B class-level persistence only,
        C per-image persistence only, D class + per-image."""
        classy = {"class_sd": 0.3, "class_walk_sd": 0.01}
        return {
            "A": replace(self),
            "B": replace(self, **classy),
            "C": replace(self, image_sd=image_sd),
            "D": replace(self, image_sd=image_sd, **classy),
        }[name]


@dataclass(frozen=True)
class Truth:
    labels: np.ndarray  # (n_images,) class of each image
    image_effect: np.ndarray  # (n_images,) persistent effect (0 = none)
    planted_hard: np.ndarray  # sample ids planted consistently harder
    planted_easy: np.ndarray  # sample ids planted consistently easier


def simulate(
    spec: SimSpec,
    seed: int,
    root: Path,
    name: str,
    *,
    world: int | None = None,
    key_steps: bool = True,
) -> tuple[Path, Truth]:
    """Write one simulated run to ``root / name``; return its directory and the truth.

    ``world`` seeds what two trainings on the same data share (labels, the class structure,
    the image effects; default ``seed``); ``seed`` the rest (data order, queries, key effects,
    noise). ``key_steps=False`` writes ``key_step`` as null, like a schema-2 log.
    """
    base = np.random.default_rng(seed if world is None else world)
    rng = np.random.default_rng([seed, 1])
    n, c, b, k = spec.n_images, spec.n_classes, spec.batch, spec.queue
    if k % b:
        raise ValueError("queue must be a multiple of batch")
    per_queue = k // b
    labels = base.permutation(np.arange(n) % c)
    image_effect = base.normal(0.0, spec.image_sd, n) if spec.image_sd > 0 else np.zeros(n)
    planted_hard = planted_easy = np.zeros(0, np.int64)
    if spec.planted:
        chosen = base.choice(n, spec.planted, replace=False)
        planted_hard, planted_easy = np.sort(chosen[::2]), np.sort(chosen[1::2])
        image_effect[planted_hard] += spec.planted_effect
        image_effect[planted_easy] -= spec.planted_effect
    affinity = base.normal(0.0, spec.affinity_sd, (c, c))
    affinity = (affinity + affinity.T) / 2
    steps_per_epoch = n // b
    first = per_queue  # the queue is full of real keys from this step on
    last = first + spec.every * (spec.logged_steps - 1)
    class_level = base.normal(0.0, spec.class_sd, c) if spec.class_sd > 0 else np.zeros(c)
    walk = np.cumsum(rng.normal(0.0, spec.class_walk_sd, (last + 1, c)), axis=0)
    class_effect = class_level[None, :] + walk  # (steps, C)
    orders: dict[int, np.ndarray] = {}

    def batch_ids(step: int) -> np.ndarray:
        epoch, pos = divmod(step, steps_per_epoch)
        if epoch not in orders:
            orders[epoch] = rng.permutation(n)
        return orders[epoch][pos * b : (pos + 1) * b]

    run_dir = root / name
    run_dir.mkdir(parents=True)
    _manifest(run_dir, name, spec, seed)
    w = RunLogWriter(run_dir, name)
    _static_tables(w, labels, c)
    key_effect_cache: dict[int, np.ndarray] = {}
    ranks = np.arange(1, k + 1, dtype=np.int32)
    for step in range(first, last + 1, spec.every):
        ks = np.arange(step - per_queue, step)  # key steps of the queue's batches
        neg_ids = np.concatenate([batch_ids(int(t)) for t in ks])  # (K,)
        key_step = np.repeat(ks, b).astype(np.int32)  # (K,)
        for t in ks.tolist():
            if t not in key_effect_cache:
                key_effect_cache[t] = rng.normal(0.0, spec.key_sd, b)
        key_effect = np.concatenate([key_effect_cache[int(t)] for t in ks])
        for t in [t for t in key_effect_cache if t < step - per_queue]:
            del key_effect_cache[t]
        q_ids = rng.choice(batch_ids(step), spec.queries, replace=False)  # (Q,)
        ql, nl = labels[q_ids], labels[neg_ids]
        sim = (
            spec.same_class * (ql[:, None] == nl[None, :])
            + affinity[ql[:, None], nl[None, :]]
            + (class_effect[key_step, nl] + key_effect + image_effect[neg_ids])[None, :]
            - spec.drift * (step - key_step)[None, :]
            + spec.self_bonus * (q_ids[:, None] == neg_ids[None, :])
            + rng.standard_normal((spec.queries, k))
        )  # (Q, K)
        order = np.argsort(-sim, axis=1)  # (Q, K) queue slots, hardest first
        w_ids = neg_ids[order]
        w.write(
            "pairs",
            {
                "step": step,
                "epoch": step // steps_per_epoch,
                "query_id": np.repeat(q_ids.astype(np.int32), k),
                "neg_id": w_ids.ravel().astype(np.int32),
                "rank": np.tile(ranks, spec.queries),
                "similarity": np.clip(np.take_along_axis(sim, order, 1).ravel() / 8, -1, 1),
                "in_band": True,
                "key_step": key_step[order].ravel() if key_steps else None,
            },
        )
        w.write(
            "queries",
            {
                "step": step,
                "epoch": step // steps_per_epoch,
                "query_id": q_ids.astype(np.int32),
                "label": ql.astype(np.int16),
                "pos_similarity": np.float32(0.9),
                "loss": np.float32(1.0),
                "n_in_band": np.int32(k),
            },
        )
    w.close()
    return run_dir, Truth(labels, image_effect, planted_hard, planted_easy)


def _manifest(run_dir: Path, name: str, spec: SimSpec, seed: int) -> None:
    manifest = runs.new_manifest(
        name,
        config={
            "model": {"backbone": "convnet", "queue_size": spec.queue},
            "optim": {"batch_size": spec.batch, "epochs": 1},
            "log": {"every": spec.every, "queries": spec.queries},
        },
        dataset={
            "spec": f"simulated:{spec.n_images}",
            "name": "simulated",
            "num_classes": spec.n_classes,
            "train_size": spec.n_images,
        },
        queue_size=spec.queue,
        band="0-100",
        band_kept=spec.queue,
        seed=seed,
        versions={},
        device="cpu",
    )
    manifest["status"] = "finished"
    runs.write_json_atomic(run_dir / schema.MANIFEST_FILE, manifest)


def _static_tables(w: RunLogWriter, labels: np.ndarray, n_classes: int) -> None:
    w.write(
        "samples",
        {
            "sample_id": np.arange(labels.size, dtype=np.int32),
            "split": "train",
            "label": labels.astype(np.int16),
        },
    )
    classes = CIFAR10_CLASSES[:n_classes]
    w.write(
        "classes",
        {
            "label": np.array([x.label for x in classes], np.int16),
            "name": np.array([x.name for x in classes], object),
            "synset": np.array([x.synset for x in classes], object),
            "wnid": np.array([x.wnid for x in classes], object),
        },
    )
