"""Evaluations of a run after training, from its last checkpoint (``hardstat eval``)."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from hardstat import runs, seeds
from hardstat.config import TrainConfig
from hardstat.errors import CheckpointError, ConfigError, DatasetError
from hardstat.logwriter import RunLogWriter
from hardstat.train.checkpoint import brief, checkpoint_path, load_checkpoint
from hardstat.train.evaluate import EvalResult, Knn, LinearProbe, evaluate_backbone
from hardstat.train.loop import build_model, open_dataset, resolve_device

__all__ = ["EvalResult", "evaluate_run"]


def evaluate_run(
    run_dir: Path,
    *,
    linear: bool = True,
    knn: bool = False,
    linear_epochs: int = 100,
    linear_lr: float = 0.1,
    device: str = "auto",
    dataset_spec: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[EvalResult]:
    """Evaluate the run's checkpointed query backbone; append rows to its ``evals`` table.

    Holds the run's lock throughout (:class:`hardstat.runs.RunLock`): a run that is training,
    or being evaluated by another process, is refused with one line. ``progress`` receives a
    line per stage and about every tenth of the linear probe's epochs.
    """
    run_dir = Path(run_dir)
    manifest = runs.read_manifest(run_dir)
    say = progress or (lambda _line: None)
    with runs.RunLock(run_dir):
        return _evaluate_locked(
            run_dir, manifest, linear, knn, linear_epochs, linear_lr, device, dataset_spec, say
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
    say: Callable[[str], None],
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
    dataset = open_dataset(config, spec)
    if dataset.test is None:
        raise DatasetError(f"dataset {dataset.spec} has no test split to evaluate on")
    model = build_model(config, config.model.bn_splits)
    try:
        model.load_state_dict(state["model"])
    except (RuntimeError, KeyError, ValueError) as e:
        raise CheckpointError(
            f"checkpoint {path} does not fit the run's model ({brief(e)}); it is damaged or "
            "belongs to another run"
        ) from e
    backbone = model.encoder_q.backbone.to(dev)
    step = int(state["step"]) - 1
    steps_per_epoch = max(1, len(dataset.train) // config.optim.batch_size)
    epoch = max(0, (step + 1) // steps_per_epoch - 1)
    probes: list[Knn | LinearProbe] = []
    if knn:
        probes.append(Knn(k=config.eval.knn_k, t=config.eval.knn_t))
    if linear:
        every = max(1, linear_epochs // 10)

        def epoch_done(done: int) -> None:
            if done % every == 0 or done == linear_epochs:
                say(f"linear probe: epoch {done}/{linear_epochs}")

        seed = seeds.linear_probe(config.seed)
        probes.append(LinearProbe(linear_epochs, linear_lr, seed, on_epoch=epoch_done))
    results = evaluate_backbone(backbone, dataset, dev, probes, step=step, epoch=epoch, say=say)
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
