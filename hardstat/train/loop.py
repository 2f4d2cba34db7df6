"""The training function: one readable loop from data to logged, checkpointed MoCo v2 run."""

from __future__ import annotations

import contextlib
import json
import math
import platform
import shlex
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np
import torch

import hardstat
from hardstat import runs, schema, seeds
from hardstat.config import TrainConfig
from hardstat.display import SafeStream
from hardstat.errors import CheckpointError, ConfigError, LogError, RecordError, RunError
from hardstat.logwriter import RunLogWriter
from hardstat.record import Recorder
from hardstat.train import distributed
from hardstat.train.augment import MocoV2Augment
from hardstat.train.checkpoint import (
    CHECKPOINT_FORMAT,
    brief,
    checkpoint_path,
    load_checkpoint,
    save_checkpoint,
)
from hardstat.train.data import Dataset, ImageSplit, load_dataset
from hardstat.train.evaluate import Knn, evaluate_backbone
from hardstat.train.model import MoCo, StepOutput


@dataclass(frozen=True)
class TrainResult:
    run_dir: Path
    steps_done: int
    epochs_done: int
    knn_top1: float | None
    interrupted: bool
    main: bool = True  # False in all but the main process under torchrun


def resolve_device(name: str) -> torch.device:
    """The device for config ``device`` in a single process (see :func:`distributed.setup`)."""
    return distributed.setup_device(name)


def learning_rate(step: int, total_steps: int, base_lr: float, schedule: str) -> float:
    """Cosine decay from ``base_lr`` to 0 over the run (per step), or constant."""
    if schedule == "constant":
        return base_lr
    return base_lr * 0.5 * (1.0 + math.cos(math.pi * step / total_steps))


def epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The sample order of an epoch: a permutation of 0..n-1 fixed by (seed, epoch)."""
    generator = torch.Generator().manual_seed(seeds.epoch_order(seed, epoch))
    return torch.randperm(n, generator=generator)


class _StopFlag:
    """Turns the first SIGINT/SIGTERM into a request to stop at the next step boundary."""

    def __init__(self, announce: bool = True, stream: Any = None) -> None:
        self.requested = False
        self.announce = announce
        self.stream = stream if stream is not None else SafeStream(sys.stderr)
        self._previous: dict[signal.Signals, Any] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested:  # second signal: stop now
            raise KeyboardInterrupt
        self.requested = True
        if not self.announce:
            return
        print(
            "\nstopping after this step (press Ctrl-C again to abort at once)...",
            file=self.stream,
        )

    @contextlib.contextmanager
    def installed(self) -> Iterator[_StopFlag]:
        import threading

        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handle)
        try:
            yield self
        finally:
            for sig, handler in self._previous.items():
                signal.signal(sig, handler)


def versions() -> dict[str, str]:
    import pyarrow
    import torchvision

    return {
        "hardstat": hardstat.__version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "numpy": np.__version__,
        "pyarrow": pyarrow.__version__,
    }


def _new_run(
    run_dir: Path,
    lock: runs.RunLock | None,
    config: TrainConfig,
    dataset: Dataset,
    device: torch.device,
    processes: int,
) -> None:
    runs.check_run_name(run_dir.name)
    runs.check_new_run_dir(run_dir)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise runs.write_failed(run_dir, e, "choose another --out") from e
    if lock is not None:
        lock.acquire()
    runs.check_new_run_dir(run_dir)  # again under the lock: another process may have started
    band = config.parsed_band
    manifest = runs.new_manifest(
        run_dir.name,
        config=config.to_dict(),
        dataset={
            "spec": dataset.spec,
            "name": dataset.name,
            "train_size": len(dataset.train),
            "test_size": len(dataset.test) if dataset.test is not None else 0,
            "image_size": dataset.train.image_size,
            "num_classes": len(dataset.classes),
        },
        queue_size=config.model.queue_size,
        negatives="queue",
        band=band.spec,
        band_kept=band.kept_count(config.model.queue_size),
        seed=config.seed,
        versions=versions(),
        device=str(device),
        processes=processes,
    )
    runs.write_json_atomic(run_dir / schema.MANIFEST_FILE, manifest, todo="start the run again")


def _static_tables(logger: Recorder, dataset: Dataset) -> None:
    splits = [("train", dataset.train)] + ([("test", dataset.test)] if dataset.test else [])
    for name, split in splits:
        logger.write_table(
            "samples",
            {
                "sample_id": np.asarray(split.sample_ids, dtype=np.int32),
                "split": name,
                "label": np.asarray(split.labels, dtype=np.int16),
            },
        )
    logger.write_table(
        "classes",
        {
            "label": np.array([c.label for c in dataset.classes], dtype=np.int16),
            "name": np.array([c.name for c in dataset.classes], dtype=object),
            "synset": np.array([c.synset for c in dataset.classes], dtype=object),
            "wnid": np.array([c.wnid for c in dataset.classes], dtype=object),
        },
    )


def process_shares(batch_size: int, bn_splits: int, processes: int) -> tuple[int, int]:
    """Each process's share of the global batch, and its BatchNorm groups: ``bn_splits`` groups
    over the global batch, dealt out to the processes (each normalises its own share, as
    multi-GPU MoCo does)."""
    if batch_size % processes != 0:
        raise ConfigError(
            f"the global batch size {batch_size} is not divisible by the {processes} "
            "processes; choose --batch-size as a multiple of the process count"
        )
    if bn_splits % processes != 0:
        raise ConfigError(
            f"model.bn_splits={bn_splits} is not a multiple of the {processes} processes; "
            f"each process normalises bn_splits/processes groups of its share of the batch: "
            f"use --set model.bn_splits={processes * max(1, bn_splits // processes)}"
        )
    return batch_size // processes, bn_splits // processes


def train(
    config: TrainConfig,
    run_dir: Path,
    *,
    resume: bool = False,
    progress: bool = True,
    stop_after: int | None = None,
) -> TrainResult:
    """Train (or resume) a MoCo v2 run in ``run_dir``; returns where it got to.

    Under ``torchrun`` every process calls this with the same arguments: the processes share
    the global batch ``optim.batch_size`` evenly, and each logs its own share of the logged
    queries to its own part files (``part-pNNN-*``); the main process writes the manifest,
    ``steps``, ``evals`` and the checkpoint. ``stop_after`` stops cleanly (checkpoint, flushed
    logs, status 'interrupted') once that many steps are done, exactly as a Ctrl-C would.
    """
    procs, device = distributed.setup(config.device)
    # every process uses the main process's run directory (a default name holds the time)
    run_dir = distributed.broadcast_object(Path(run_dir))
    # the main process holds the run's lock from before it reads or writes anything until the
    # run's last checkpoint is on disk; a second trainer (or eval) of the run is refused
    lock = runs.RunLock(run_dir) if procs.main else None
    try:
        return _train_locked(config, run_dir, procs, device, resume, progress, stop_after, lock)
    except RuntimeError as e:
        if not (procs.distributed and _lost_contact(e)):
            raise
        # another training process died (killed, out of memory...): its collectives fail here
        again = shlex.join(["hardstat", "train", "--resume", str(run_dir)])
        raise RunError(
            f"training stopped: lost contact with another training process ({brief(e)[:160]}); "
            f"the last checkpoint is intact: continue with the same torchrun command and {again}"
        ) from None
    except LogError as e:
        if not isinstance(e.__cause__, OSError):
            raise
        # a log file could not be written (disk full...): the last checkpoint is intact
        again = shlex.join(["hardstat", "train", "--resume", str(run_dir)])
        raise e.reworded(
            f"{e}; fix that (e.g. free some space), then continue with: {again}"
        ) from e
    finally:
        if lock is not None:
            lock.release()


def _train_locked(
    config: TrainConfig,
    run_dir: Path,
    procs: distributed.Processes,
    device: torch.device,
    resume: bool,
    progress: bool,
    stop_after: int | None,
    lock: runs.RunLock | None,
) -> TrainResult:
    if config.threads:
        torch.set_num_threads(config.threads)
    run = _open_run(config, run_dir, procs, device, resume, lock)
    moco, optimizer, gen = _build(config, run, procs, device)
    step = _restore(run, moco, optimizer, gen)
    # DistributedDataParallel averages the gradients of the query encoder over processes; the
    # queue and key encoder are kept identical by construction (same keys enqueued everywhere),
    # so their buffers are not re-broadcast every step
    model: torch.nn.Module = distributed.data_parallel(moco) if procs.distributed else moco
    logger = _recorder(config, run, procs)
    ckpt = _Checkpointer(run_dir, config, moco, optimizer, gen, logger, run.steps_per_epoch)
    augment = MocoV2Augment(run.dataset.train.image_size, run.dataset.mean, run.dataset.std)
    train_set, band = run.dataset.train, config.parsed_band
    big_b, spe = run.batch, run.steps_per_epoch  # global batch size, steps per epoch
    base_lr, schedule = config.optim.resolved_lr, config.optim.schedule
    use_amp = config.amp and device.type == "cuda"
    mine = slice(procs.index * run.share, (procs.index + 1) * run.share)  # my share of a batch
    knn_top1: float | None = None
    stream = SafeStream(sys.stderr)  # a closed or broken stderr turns progress off, no more
    bar = _Progress(run.total_steps, step, progress and procs.main, run_dir.name, stream, big_b)
    stop = _StopFlag(announce=procs.main, stream=stream)
    interrupted = False
    with stop.installed():  # from here on Ctrl-C / SIGTERM stop cleanly, with a checkpoint
        if run.state is None:  # a new run is resumable from its first step on
            ckpt.save(step, "running")
        model.train()
        while step < run.total_steps:
            epoch = step // spe
            order = epoch_order(len(train_set), config.seed, epoch)
            for i in range(step % spe, spe):
                t0 = time.perf_counter()
                index = order[i * big_b : (i + 1) * big_b][mine].numpy()  # global batch i, mine
                images, ids, labels = _batch(train_set, index, device)
                lr = _set_lr(optimizer, learning_rate(step, run.total_steps, base_lr, schedule))
                im_q, im_k = augment.two_views(images, gen.augment)
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
                    out = model(im_q, im_k, ids, labels, step, band, gen.model)
                optimizer.zero_grad(set_to_none=True)
                out.loss.backward()
                optimizer.step()
                summary = _summary(out)  # (3,) loss, l_pos, l_neg: means over the global batch
                logger.log_step(
                    step,
                    epoch=epoch,
                    query_ids=ids,
                    query_labels=labels,
                    pos_similarity=out.l_pos,
                    neg_similarity=out.l_neg,
                    neg_ids=out.neg_ids,
                    neg_key_steps=out.neg_key_steps,
                    in_band=out.mask,
                    losses=out.losses,
                    lr=lr,
                    started=t0,
                    summary=summary,
                )
                step += 1
                bar.step(epoch, summary, t0, show=step % 10 == 1)
                # every process stops (or checkpoints) after the same step, whichever asked
                stop_now, due = distributed.any_flags(
                    stop.requested or (stop_after is not None and step >= stop_after), ckpt.due()
                )
                if stop_now:
                    interrupted = True
                    break
                if due and step % spe != 0 and step < run.total_steps:
                    ckpt.save(step, "running")  # mid-epoch, so a crash loses a bounded time
            if step % spe == 0:  # the epoch is complete (also when stopping now)
                last = step == run.total_steps
                if (_every(config.eval.knn_every, epoch) or last) and procs.main:
                    knn_top1 = _monitor(moco, run.dataset, device, config, logger, step, epoch)
                    if knn_top1 is not None:
                        bar.write(f"epoch {epoch}: kNN top-1 {knn_top1:.4f}")
                if _every(config.checkpoint_every, epoch) and not last and not interrupted:
                    ckpt.save(step, "running")
            if interrupted:
                break
        bar.close()
        ckpt.save(step, "interrupted" if interrupted else "finished")
        logger.close()
        distributed.barrier()  # no process leaves before the checkpoint is on disk
    return TrainResult(run_dir, step, step // spe, knn_top1, interrupted, main=procs.main)


def _batch(
    split: ImageSplit, index: np.ndarray, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Images (B, 3, S, S) uint8, sample ids (B,) and labels (B,) of ``index``, on ``device``."""
    images = split.get_batch(index).to(device, non_blocking=True)
    ids = torch.as_tensor(split.sample_ids[index], device=device)
    labels = torch.as_tensor(split.labels[index], device=device)
    return images, ids, labels


def _summary(out: StepOutput) -> torch.Tensor:
    """(3,) mean loss, positive and negative similarity over the global batch."""
    return distributed.mean_over_processes(
        torch.stack([out.loss.detach(), out.l_pos.mean(), out.l_neg.mean()]).float()
    )


def _every(n: int, epoch: int) -> bool:
    """Whether something done every ``n`` epochs (0 = never) is due after ``epoch``."""
    return bool(n) and (epoch + 1) % n == 0


def _set_lr(optimizer: torch.optim.Optimizer, lr: float) -> float:
    for group in optimizer.param_groups:
        group["lr"] = lr
    return lr


@dataclass
class _Run:
    """What opening a run found out: its dataset, batch shape and length, and (resuming) the
    checkpoint with this process's entry."""

    run_dir: Path
    name: str  # the `run` column; a resumed run keeps its manifest's name
    dataset: Dataset
    batch: int  # global batch size
    share: int  # this process's share of it
    bn_splits: int  # this process's BatchNorm groups
    steps_per_epoch: int
    total_steps: int
    state: dict[str, Any] | None = None  # the checkpoint, when resuming
    mine: dict[str, Any] | None = None  # this process's entry of the checkpoint


def _open_run(
    config: TrainConfig,
    run_dir: Path,
    procs: distributed.Processes,
    device: torch.device,
    resume: bool,
    lock: runs.RunLock | None,
) -> _Run:
    """Check the run directory (and a resumed run's checkpoint) and load the dataset; every
    process passes these checks, or all stop with one error. Takes the run's lock, and starts
    a new run's directory and manifest."""
    with distributed.agreed():
        run_name = run_dir.name
        # a resumed run reads the dataset from where the run first found it (an absolute
        # spec), so a relative npz:../path still works from another working directory
        if resume:  # checked before locking (a refused resume writes nothing), see below
            manifest = _resumable_manifest(run_dir)
            run_name = manifest["run"]  # (the directory may have been renamed or copied)
            spec = manifest["dataset"].get("spec")
            if not isinstance(spec, str):
                raise RunError(
                    f"{run_dir / schema.MANIFEST_FILE} names no dataset spec (dataset.spec); "
                    "restore the manifest from a backup"
                )
        else:
            spec = config.data.dataset
        dataset = distributed.local_first(lambda: open_dataset(config, spec))  # one download
        big_b = config.optim.batch_size
        b, bn_splits = process_shares(big_b, config.model.bn_splits, procs.count)
        steps_per_epoch = len(dataset.train) // big_b
        if steps_per_epoch == 0:
            raise ConfigError(
                f"batch size {big_b} is larger than the {len(dataset.train)} training images; "
                "lower --batch-size"
            )
        run = _Run(
            run_dir,
            run_name,
            dataset,
            big_b,
            b,
            bn_splits,
            steps_per_epoch,
            steps_per_epoch * config.optim.epochs,
        )
        if resume:
            run.state, run.mine = _read_checkpoint(config, run, procs, lock)
    if not resume:
        distributed.on_main(lambda: _new_run(run_dir, lock, config, dataset, device, procs.count))
    return run


def open_dataset(config: TrainConfig, spec: str) -> Dataset:
    """The dataset ``spec`` as the run's config loads it (size, subset, seed)."""
    return load_dataset(
        spec,
        download=config.data.download,
        image_size=config.data.image_size,
        subset=config.data.subset,
        seed=config.seed,
    )


def _resumable_manifest(run_dir: Path) -> dict[str, Any]:
    manifest = runs.read_manifest(run_dir)
    runs.check_writable(run_dir, manifest)
    runs.check_resumable(run_dir, manifest)
    return manifest


def _read_checkpoint(
    config: TrainConfig, run: _Run, procs: distributed.Processes, lock: runs.RunLock | None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The checkpoint of a resumed run and this process's entry, read and checked before and
    again under the run's lock (unless the file was not replaced meanwhile)."""
    path = checkpoint_path(run.run_dir)
    seen: tuple[int, int, int] | None = None
    for locked in (False, True):
        if locked:  # the run's lock, then the same checks on what is there now
            if lock is not None:
                lock.acquire()
            _resumable_manifest(run.run_dir)
            if _identity(path) == seen:  # not replaced while unlocked
                break
        seen = _identity(path)
        state = load_checkpoint(path)
        if _saved_config(state, path) != config:
            raise ConfigError(
                f"the config differs from the one {run.run_dir} was trained with; resume "
                "with only --resume RUN (the saved config is used)"
            )
        if len(state["processes"]) != procs.count:
            raise ConfigError(
                f"{run.run_dir} was trained by {len(state['processes'])} process(es) and "
                f"this resume has {procs.count}; resume it with the same count (torchrun "
                "--nproc-per-node and --nnodes), so every process continues its own "
                "random streams and logs"
            )
        mine = state["processes"][procs.index]
        _check_resume_point(state, mine, run.run_dir, run.total_steps)
    return state, mine


@dataclass
class _Generators:
    """A process's own random streams (:mod:`hardstat.seeds`), saved in checkpoints."""

    augment: torch.Generator  # both views' augmentations
    model: torch.Generator  # key shuffle, random-band draws


def build_model(config: TrainConfig, bn_splits: int, queue_seed: int | None = None) -> MoCo:
    """The run's MoCo model (``bn_splits``: this process's BatchNorm groups); the queue's
    random initial keys from ``queue_seed`` (None: torch's global generator)."""
    return MoCo(
        backbone=config.model.backbone,
        width=config.model.width,
        dim=config.model.dim,
        queue_size=config.model.queue_size,
        momentum=config.model.momentum,
        temperature=config.model.temperature,
        bn_splits=bn_splits,
        symmetric=config.model.symmetric,
        generator=None if queue_seed is None else torch.Generator().manual_seed(queue_seed),
    )


def _build(
    config: TrainConfig, run: _Run, procs: distributed.Processes, device: torch.device
) -> tuple[MoCo, torch.optim.Optimizer, _Generators]:
    """Model, optimizer and this process's random streams, as a new run starts them."""
    torch.manual_seed(seeds.weights(config.seed))  # the same initial weights in every process
    moco = build_model(config, run.bn_splits, seeds.queue(config.seed)).to(device)
    optimizer = torch.optim.SGD(
        moco.encoder_q.parameters(),
        lr=config.optim.resolved_lr,
        momentum=config.optim.momentum,
        weight_decay=config.optim.weight_decay,
    )
    own = seeds.process(config.seed, procs.index)
    gen = _Generators(
        augment=torch.Generator(device=device).manual_seed(seeds.augment(own)),
        model=torch.Generator(device=device).manual_seed(seeds.model(own)),
    )
    return moco, optimizer, gen


def _restore(run: _Run, moco: MoCo, optimizer: torch.optim.Optimizer, gen: _Generators) -> int:
    """Load a resumed run's weights, optimizer and random streams; the step to continue from
    (0 for a new run). A file that does not fit this run's model (another size, a damaged
    entry) is a one-line error."""
    if run.state is None or run.mine is None:
        return 0
    path = checkpoint_path(run.run_dir)
    with distributed.agreed():
        try:
            moco.load_state_dict(run.state["model"])
            optimizer.load_state_dict(run.state["optimizer"])
            gen.augment.set_state(run.mine["gen_aug"])
            gen.model.set_state(run.mine["gen_model"])
        except (RuntimeError, KeyError, ValueError, TypeError, IndexError, OverflowError) as e:
            raise CheckpointError(
                f"checkpoint {path} does not fit this run ({type(e).__name__}: {brief(e)}); it "
                "is damaged or belongs to another run (restore it, or start a new run)"
            ) from e
    return int(run.state["step"])


def _recorder(config: TrainConfig, run: _Run, procs: distributed.Processes) -> Recorder:
    """This process's recorder: a new run's, or a resumed run's at its checkpointed position
    (log files written after the checkpoint are set aside)."""
    writer = RunLogWriter(
        run.run_dir, run.name, process=procs.index, file_rows=config.log.file_rows
    )
    # the logged queries of a step are dealt out to the processes; 0 = every query
    queries = procs.share(config.log.queries) if config.log.queries else 0
    train_set = run.dataset.train
    logger = Recorder(  # hardstat.record: the same recorder any training loop can use
        writer,
        negatives="queue",
        negatives_per_query=config.model.queue_size,
        enabled=config.log.enabled and (queries > 0 or not config.log.queries),
        every=config.log.every,
        queries=queries,
        seed=seeds.process(config.seed, procs.index),
        record_steps=procs.main,
        num_samples=int(train_set.sample_ids.max()) + 1,
        num_classes=len(run.dataset.classes),
    )
    if run.mine is None:
        if procs.main:
            _static_tables(logger, run.dataset)
        return logger
    try:
        logger.load_state(run.mine["logger"])
    except OSError as e:
        raise runs.write_failed(
            run.run_dir,
            e,
            f"resume again (files written after the checkpoint are moved "
            f"to {run.run_dir / 'superseded'})",
        ) from e
    except (RecordError, RuntimeError, KeyError, TypeError) as e:
        raise CheckpointError(
            f"checkpoint {checkpoint_path(run.run_dir)} holds a damaged logger state ({e}); "
            "restore it, or start a new run"
        ) from e
    return logger


class _Checkpointer:
    """Saves the run's state (weights, optimizer, every process's random streams and log
    position) and keeps the manifest's status; knows when a timed checkpoint is due."""

    def __init__(
        self,
        run_dir: Path,
        config: TrainConfig,
        moco: MoCo,
        optimizer: torch.optim.Optimizer,
        gen: _Generators,
        logger: Recorder,
        steps_per_epoch: int,
    ) -> None:
        self.run_dir, self.config, self.moco, self.optimizer = run_dir, config, moco, optimizer
        self.gen, self.logger, self.steps_per_epoch = gen, logger, steps_per_epoch
        self.every_s = 60 * config.checkpoint_minutes
        self.last = time.monotonic()

    def due(self) -> bool:
        """Whether ``checkpoint_minutes`` have passed since the last checkpoint."""
        return bool(self.every_s) and time.monotonic() - self.last >= self.every_s

    def save(self, step: int, status: str) -> None:
        """Collective: flush the logs, gather every process's state, write it on the main
        process, and set the manifest's status."""
        self.logger.flush()
        own = {
            "gen_aug": self.gen.augment.get_state(),
            "gen_model": self.gen.model.get_state(),
            "logger": self.logger.state(),
        }
        every = distributed.gather_objects(own)  # every process's streams and log position

        def write() -> None:
            again = shlex.join(["hardstat", "train", "--resume", str(self.run_dir)])
            save_checkpoint(
                checkpoint_path(self.run_dir),
                todo=f"resume the run from its previous checkpoint with: {again}",
                state={
                    "format": CHECKPOINT_FORMAT,
                    "step": step,
                    "model": self.moco.state_dict(),
                    "optimizer": self.optimizer.state_dict(),
                    "processes": every,
                    "config": json.dumps(self.config.to_dict()),
                },
            )
            runs.update_manifest(
                self.run_dir,
                status=status,
                steps_done=step,
                epochs_done=step // self.steps_per_epoch,
            )

        distributed.on_main(write)
        self.last = time.monotonic()


def _monitor(
    moco: MoCo,
    dataset: Dataset,
    device: torch.device,
    config: TrainConfig,
    logger: Recorder,
    step: int,
    epoch: int,
) -> float | None:
    """The kNN monitor after ``epoch`` (``step`` steps done), logged as an ``evals`` row; its
    top-1 (None without a test split)."""
    if dataset.test is None:
        return None
    knn = Knn(k=config.eval.knn_k, t=config.eval.knn_t)
    (r,) = evaluate_backbone(
        moco.encoder_q.backbone, dataset, device, [knn], step=step - 1, epoch=epoch
    )
    logger.log_eval(r.step, epoch=r.epoch, kind=r.kind, top1=r.top1, top5=r.top5, params=r.params)
    return r.top1


class _Progress:
    """The progress bar (tqdm on stderr) with the loss and a smoothed images/second."""

    def __init__(
        self, total: int, initial: int, enabled: bool, name: str, stream: Any, batch: int
    ) -> None:
        from tqdm import tqdm

        self.stream, self.batch = stream, batch
        self.rate: float | None = None
        self.bar = tqdm(
            total=total,
            initial=initial,
            disable=not enabled,
            file=stream,
            unit="step",
            desc=name,
            dynamic_ncols=True,
            mininterval=0.5,
        )
        self.enabled = enabled

    def step(self, epoch: int, summary: torch.Tensor, started: float, show: bool) -> None:
        """One step done (begun at ``started``); ``show``: refresh the loss (reading it waits
        for the device)."""
        self.bar.update(1)
        seconds = time.perf_counter() - started
        r = self.batch / seconds
        self.rate = r if self.rate is None else 0.9 * self.rate + 0.1 * r
        if show and self.enabled:
            self.bar.set_postfix(
                epoch=epoch,
                loss=f"{float(summary[0]):.3f}",
                img_s=f"{self.rate:.0f}",
                refresh=False,
            )

    def write(self, text: str) -> None:
        self.bar.write(text, file=self.stream)

    def close(self) -> None:
        self.bar.close()


def _lost_contact(e: RuntimeError) -> bool:
    """Whether an error comes from the process group (a peer that died), not from training."""
    import torch.distributed as dist

    text = str(e).lower()
    return isinstance(e, dist.DistError) or any(
        word in text for word in ("gloo", "nccl", "connection reset", "connection closed")
    )


def _identity(path: Path) -> tuple[int, int, int] | None:
    """Which file ``path`` is (inode, size, mtime): a checkpoint is replaced by a rename, so a
    new one has another inode."""
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns


def _saved_config(state: dict[str, Any], path: Path) -> TrainConfig:
    try:
        return TrainConfig.from_dict(json.loads(state["config"]))
    except (ValueError, ConfigError) as e:
        raise CheckpointError(
            f"checkpoint {path} holds an invalid config ({e}); restore it or start a new run"
        ) from e


def _check_resume_point(
    state: dict[str, Any], mine: dict[str, Any], run_dir: Path, total_steps: int
) -> None:
    """The checkpoint's step lies within the run and the log files it lists are all there (a
    resume from anything else would log steps twice or leave a hole)."""
    path = checkpoint_path(run_dir)
    step = int(state["step"])
    if step > total_steps:
        raise CheckpointError(
            f"checkpoint {path}: step {step} is beyond the run's {total_steps} steps; the file "
            "is damaged or belongs to another run (restore it, or start a new run)"
        )
    missing = [c for c in mine["logger"]["writer"]["committed"] if not (run_dir / c).is_file()]
    if missing:
        raise CheckpointError(
            f"checkpoint {path} lists log file {run_dir / missing[0]}, which is missing "
            f"({len(missing)} file(s) in all); restore the run's log files (look in "
            f"{run_dir / 'superseded'}) and resume again"
        )
