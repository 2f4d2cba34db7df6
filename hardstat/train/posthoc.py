"""Evaluations of a run after training, from its last checkpoint (``hardstat eval``)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch

from hardstat import runs, seeds
from hardstat.config import TrainConfig
from hardstat.errors import CheckpointError, ConfigError, DatasetError
from hardstat.logwriter import RunLogWriter
from hardstat.train.augment import eval_transform
from hardstat.train.checkpoint import brief, checkpoint_path, load_checkpoint
from hardstat.train.data import load_dataset
from hardstat.train.evaluate import extract_features, knn_eval, linear_probe
from hardstat.train.loop import resolve_device
from hardstat.train.model import MoCo


@dataclass(frozen=True)
class EvalResult:
    kind: str
    step: int
    epoch: int
    top1: float
    top5: float | None
    params: dict[str, object]


def evaluate_run(
    run_dir: Path,
    *,
    linear: bool = True,
    knn: bool = False,
    linear_epochs: int = 100,
    linear_lr: float = 0.1,
    device: str = "auto",
    dataset_spec: str | None = None,
) -> list[EvalResult]:
    """Evaluate the run's checkpointed query backbone; append rows to its ``evals`` table.

    Holds the run's lock throughout (:class:`hardstat.runs.RunLock`): a run that is training,
    or being evaluated by another process, is refused with one line.
    """
    run_dir = Path(run_dir)
    manifest = runs.read_manifest(run_dir)
    with runs.RunLock(run_dir):
        return _evaluate_locked(
            run_dir, manifest, linear, knn, linear_epochs, linear_lr, device, dataset_spec
        )


def _evaluate_locked(
    run_dir: Path,
    manifest: dict[str, object],
    linear: bool,
    knn: bool,
    linear_epochs: int,
    linear_lr: float,
    device: str,
    dataset_spec: str | None,
) -> list[EvalResult]:
    path = checkpoint_path(run_dir)
    state = load_checkpoint(path, resume=False)
    try:
        config = TrainConfig.from_dict(json.loads(state["config"]))
    except (ValueError, ConfigError) as e:
        raise CheckpointError(
            f"checkpoint {path} holds an invalid config ({e}); restore it from a backup"
        ) from e
    dev = resolve_device(device)
    spec = dataset_spec or manifest["dataset"].get("spec") or config.data.dataset  # type: ignore[attr-defined]
    dataset = load_dataset(
        spec,
        download=config.data.download,
        image_size=config.data.image_size,
        subset=config.data.subset,
        seed=config.seed,
    )
    if dataset.test is None:
        raise DatasetError(f"dataset {dataset.spec} has no test split to evaluate on")
    model = MoCo(
        backbone=config.model.backbone,
        width=config.model.width,
        dim=config.model.dim,
        queue_size=config.model.queue_size,
        bn_splits=config.model.bn_splits,
    )
    try:
        model.load_state_dict(state["model"])
    except (RuntimeError, KeyError, ValueError) as e:
        raise CheckpointError(
            f"checkpoint {path} does not fit the run's model ({brief(e)}); it is damaged or "
            "belongs to another run"
        ) from e
    backbone = model.encoder_q.backbone.to(dev)

    def tf(images: torch.Tensor) -> torch.Tensor:
        return eval_transform(images, dataset.train.image_size, dataset.mean, dataset.std)

    x_train, y_train = extract_features(backbone, dataset.train, tf, dev)
    x_test, y_test = extract_features(backbone, dataset.test, tf, dev)
    step = int(state["step"]) - 1
    steps_per_epoch = max(1, len(dataset.train) // config.optim.batch_size)
    epoch = max(0, (step + 1) // steps_per_epoch - 1)
    n_classes = len(dataset.classes)
    results: list[EvalResult] = []
    if knn:
        params: dict[str, object] = {
            "k": config.eval.knn_k,
            "t": config.eval.knn_t,
            "bank": "train",
        }
        top1, top5 = knn_eval(
            x_train, y_train, x_test, y_test, n_classes, k=config.eval.knn_k, t=config.eval.knn_t
        )
        results.append(EvalResult("knn", step, epoch, top1, top5, params))
    if linear:
        params = {
            "epochs": linear_epochs,
            "lr": linear_lr,
            "optimizer": "sgd-cosine",
            "features": "backbone, standardized",
        }
        top1, top5 = linear_probe(
            x_train,
            y_train,
            x_test,
            y_test,
            n_classes,
            epochs=linear_epochs,
            lr=linear_lr,
            seed=seeds.linear_probe(config.seed),
        )
        results.append(EvalResult("linear", step, epoch, top1, top5, params))
    # a name no earlier evaluation has (microseconds; the lock orders evaluations of one run)
    now = datetime.now(UTC)
    stamp = (
        f"{now.year:04d}{now.month:02d}{now.day:02d}T{now.hour:02d}{now.minute:02d}"
        f"{now.second:02d}{now.microsecond:06d}"
    )
    writer = RunLogWriter(run_dir, str(manifest["run"]), tag=f"posthoc-{stamp}")
    try:
        writer.write(
            "evals",
            {
                "step": np.array([r.step for r in results], dtype=np.int32),
                "epoch": np.array([r.epoch for r in results], dtype=np.int16),
                "kind": np.array([r.kind for r in results], dtype=object),
                "top1": np.array([r.top1 for r in results], dtype=np.float32),
                "top5": _floats_or_null([r.top5 for r in results]),
                "params": np.array([json.dumps(r.params) for r in results], dtype=object),
            },
        )
        writer.close()
    except OSError as e:
        writer.discard()
        raise runs.write_failed(run_dir / "evals", e, "evaluate again") from e
    return results


def _floats_or_null(values: list[float | None]) -> object:
    import pyarrow as pa

    return pa.array(values, pa.float32())
