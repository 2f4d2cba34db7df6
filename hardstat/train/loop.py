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
from hardstat.train.augment import MocoV2Augment, eval_transform
from hardstat.train.checkpoint import (
    CHECKPOINT_FORMAT,
    brief,
    checkpoint_path,
    load_checkpoint,
    save_checkpoint,
)
from hardstat.train.data import Dataset, load_dataset
from hardstat.train.evaluate import extract_features, knn_eval
from hardstat.train.model import MoCo


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
    return _train(config, Path(run_dir), procs, device, resume, progress, stop_after)


def _train(
    config: TrainConfig,
    run_dir: Path,
    procs: distributed.Processes,
    device: torch.device,
    resume: bool,
    progress: bool,
    stop_after: int | None,
) -> TrainResult:
    # every process uses the main process's run directory (a default name holds the time)
    run_dir = distributed.broadcast_object(run_dir)
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
    state: dict[str, Any] | None = None
    mine: dict[str, Any] | None = None  # this process's entry of the checkpoint
    run_name = run_dir.name  # the `run` column; a resumed run keeps its manifest's name
    with distributed.agreed():  # every process passes these checks, or all stop with one error
        # a resumed run reads the dataset from where the run first found it (an absolute
        # spec), so a relative npz:../path still works from another working directory
        if resume:  # checked before locking (a refused resume writes nothing), see below
            manifest = runs.read_manifest(run_dir)
            runs.check_writable(run_dir, manifest)
            runs.check_resumable(run_dir, manifest)
            run_name = manifest["run"]  # (the directory may have been renamed or copied)
            spec = manifest["dataset"].get("spec")
            if not isinstance(spec, str):
                raise RunError(
                    f"{run_dir / schema.MANIFEST_FILE} names no dataset spec (dataset.spec); "
                    "restore the manifest from a backup"
                )
        else:
            spec = config.data.dataset
        dataset = distributed.local_first(  # one process per machine downloads, if anything is
            lambda: load_dataset(
                spec,
                download=config.data.download,
                image_size=config.data.image_size,
                subset=config.data.subset,
                seed=config.seed,
            )
        )
        big_b, k, p = config.optim.batch_size, config.model.queue_size, procs.count
        b, bn_splits = process_shares(big_b, config.model.bn_splits, p)
        steps_per_epoch = len(dataset.train) // big_b
        if steps_per_epoch == 0:
            raise ConfigError(
                f"batch size {big_b} is larger than the {len(dataset.train)} training images; "
                "lower --batch-size"
            )
        total_steps = steps_per_epoch * config.optim.epochs
        band = config.parsed_band

        if resume:
            path = checkpoint_path(run_dir)
            seen: tuple[int, int, int] | None = None
            for locked in (False, True):
                if locked:  # the run's lock, then the same checks on what is there now
                    if lock is not None:
                        lock.acquire()
                    manifest = runs.read_manifest(run_dir)
                    runs.check_writable(run_dir, manifest)
                    runs.check_resumable(run_dir, manifest)
                    if _identity(path) == seen:  # not replaced while unlocked
                        break
                seen = _identity(path)
                state = load_checkpoint(path)
                if _saved_config(state, path) != config:
                    raise ConfigError(
                        f"the config differs from the one {run_dir} was trained with; resume "
                        "with only --resume RUN (the saved config is used)"
                    )
                if len(state["processes"]) != p:
                    raise ConfigError(
                        f"{run_dir} was trained by {len(state['processes'])} process(es) and "
                        f"this resume has {p}; resume it with the same count (torchrun "
                        "--nproc-per-node and --nnodes), so every process continues its own "
                        "random streams and logs"
                    )
                mine = state["processes"][procs.index]
                _check_resume_point(state, mine, run_dir, total_steps)
    if not resume:
        distributed.on_main(lambda: _new_run(run_dir, lock, config, dataset, device, p))

    torch.manual_seed(seeds.weights(config.seed))  # the same initial weights in every process
    moco = MoCo(
        backbone=config.model.backbone,
        width=config.model.width,
        dim=config.model.dim,
        queue_size=k,
        momentum=config.model.momentum,
        temperature=config.model.temperature,
        bn_splits=bn_splits,
        symmetric=config.model.symmetric,
        generator=torch.Generator().manual_seed(seeds.queue(config.seed)),
    ).to(device)
    optimizer = torch.optim.SGD(
        moco.encoder_q.parameters(),
        lr=config.optim.resolved_lr,
        momentum=config.optim.momentum,
        weight_decay=config.optim.weight_decay,
    )
    augment = MocoV2Augment(dataset.train.image_size, dataset.mean, dataset.std)
    own_seed = seeds.process(config.seed, procs.index)
    gen_aug = torch.Generator(device=device).manual_seed(seeds.augment(own_seed))
    gen_model = torch.Generator(device=device).manual_seed(seeds.model(own_seed))
    step = 0
    if state is not None and mine is not None:
        with distributed.agreed():
            _restore(state, mine, checkpoint_path(run_dir), moco, optimizer, gen_aug, gen_model)
            step = int(state["step"])
    # DistributedDataParallel averages the gradients of the query encoder over processes; the
    # queue and key encoder are kept identical by construction (same keys enqueued everywhere),
    # so their buffers are not re-broadcast every step
    model: torch.nn.Module = distributed.data_parallel(moco) if procs.distributed else moco
    writer = RunLogWriter(run_dir, run_name, process=procs.index, file_rows=config.log.file_rows)
    # the logged queries of a step are dealt out to the processes; 0 = every query
    queries = procs.share(config.log.queries) if config.log.queries else 0
    logger = Recorder(  # hardstat.record: the same recorder any training loop can use
        writer,
        negatives="queue",
        negatives_per_query=k,
        enabled=config.log.enabled and (queries > 0 or not config.log.queries),
        every=config.log.every,
        queries=queries,
        seed=own_seed,
        record_steps=procs.main,
        num_samples=int(dataset.train.sample_ids.max()) + 1,
        num_classes=len(dataset.classes),
    )
    if mine is not None:  # sets aside log files written after the checkpoint
        try:
            logger.load_state(mine["logger"])
        except OSError as e:
            raise runs.write_failed(
                run_dir,
                e,
                f"resume again (files written after the checkpoint are moved "
                f"to {run_dir / 'superseded'})",
            ) from e
        except (RecordError, RuntimeError, KeyError, TypeError) as e:
            raise CheckpointError(
                f"checkpoint {checkpoint_path(run_dir)} holds a damaged logger state ({e}); "
                "restore it, or start a new run"
            ) from e
    elif procs.main:
        _static_tables(logger, dataset)

    use_amp = config.amp and device.type == "cuda"
    knn_top1: float | None = None

    def checkpoint(status: str) -> None:
        logger.flush()
        own = {
            "gen_aug": gen_aug.get_state(),
            "gen_model": gen_model.get_state(),
            "logger": logger.state(),
        }
        every = distributed.gather_objects(own)  # every process's streams and log position

        def save() -> None:
            again = shlex.join(["hardstat", "train", "--resume", str(run_dir)])
            save_checkpoint(
                checkpoint_path(run_dir),
                todo=f"resume the run from its previous checkpoint with: {again}",
                state={
                    "format": CHECKPOINT_FORMAT,
                    "step": step,
                    "model": moco.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "processes": every,
                    "config": json.dumps(config.to_dict()),
                },
            )
            runs.update_manifest(
                run_dir, status=status, steps_done=step, epochs_done=step // steps_per_epoch
            )

        distributed.on_main(save)

    def evaluate(epoch: int) -> float | None:
        if dataset.test is None:
            return None

        def tf(images: torch.Tensor) -> torch.Tensor:
            return eval_transform(images, dataset.train.image_size, dataset.mean, dataset.std)

        bank, bank_labels = extract_features(moco.encoder_q.backbone, dataset.train, tf, device)
        feats, labels = extract_features(moco.encoder_q.backbone, dataset.test, tf, device)
        top1, top5 = knn_eval(
            bank,
            bank_labels,
            feats,
            labels,
            len(dataset.classes),
            k=config.eval.knn_k,
            t=config.eval.knn_t,
        )
        params = json.dumps({"k": config.eval.knn_k, "t": config.eval.knn_t, "bank": "train"})
        logger.log_eval(step - 1, epoch=epoch, kind="knn", top1=top1, top5=top5, params=params)
        return top1

    stream = SafeStream(sys.stderr)  # a closed or broken stderr turns progress off, no more
    bar = _progress(total_steps, step, progress and procs.main, run_dir.name, stream)
    stop = _StopFlag(announce=procs.main, stream=stream)
    every_s = 60 * config.checkpoint_minutes
    interrupted = False
    rate: float | None = None
    mine_slice = slice(procs.index * b, (procs.index + 1) * b)
    with stop.installed():  # from here on Ctrl-C / SIGTERM stop cleanly, with a checkpoint
        if mine is None:  # a new run is resumable from its first step on
            checkpoint("running")
        last_checkpoint = time.monotonic()
        model.train()
        while step < total_steps:
            epoch = step // steps_per_epoch
            order = epoch_order(len(dataset.train), config.seed, epoch)
            for i in range(step % steps_per_epoch, steps_per_epoch):
                t0 = time.perf_counter()
                # the global batch i of this epoch, and this process's share of it
                index = order[i * big_b : (i + 1) * big_b][mine_slice].numpy()
                images = dataset.train.get_batch(index).to(device, non_blocking=True)
                ids = torch.as_tensor(dataset.train.sample_ids[index], device=device)
                labels = torch.as_tensor(dataset.train.labels[index], device=device)
                lr = learning_rate(
                    step, total_steps, config.optim.resolved_lr, config.optim.schedule
                )
                for group in optimizer.param_groups:
                    group["lr"] = lr
                im_q, im_k = augment.two_views(images, gen_aug)
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
                    out = model(im_q, im_k, ids, labels, step, band, gen_model)
                optimizer.zero_grad(set_to_none=True)
                out.loss.backward()
                optimizer.step()
                summary = distributed.mean_over_processes(  # (3,) means over the global batch
                    torch.stack([out.loss.detach(), out.l_pos.mean(), out.l_neg.mean()]).float()
                )
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
                bar.update(1)
                seconds = time.perf_counter() - t0
                rate = big_b / seconds if rate is None else 0.9 * rate + 0.1 * big_b / seconds
                if step % 10 == 1 and procs.main:  # reading the loss waits for the device
                    bar.set_postfix(
                        epoch=epoch,
                        loss=f"{float(summary[0]):.3f}",
                        img_s=f"{rate:.0f}",
                        refresh=False,
                    )
                # every process stops (or checkpoints) after the same step, whichever asked
                stop_now, due = distributed.any_flags(
                    stop.requested or (stop_after is not None and step >= stop_after),
                    bool(every_s) and time.monotonic() - last_checkpoint >= every_s,
                )
                if stop_now:
                    interrupted = True
                    break
                if due and step % steps_per_epoch != 0 and step < total_steps:
                    checkpoint("running")  # mid-epoch, so a crash loses a bounded time
                    last_checkpoint = time.monotonic()
            if step % steps_per_epoch == 0:  # the epoch is complete (also when stopping now)
                ev = config.eval.knn_every
                if ((ev and (epoch + 1) % ev == 0) or step == total_steps) and procs.main:
                    knn_top1 = evaluate(epoch)  # the other processes wait at their next step
                    if knn_top1 is not None:
                        bar.write(f"epoch {epoch}: kNN top-1 {knn_top1:.4f}", file=stream)
                ce = config.checkpoint_every
                if ce and (epoch + 1) % ce == 0 and step < total_steps and not interrupted:
                    checkpoint("running")
                    last_checkpoint = time.monotonic()
            if interrupted:
                break
        bar.close()
        checkpoint("interrupted" if interrupted else "finished")
        logger.close()
        distributed.barrier()  # no process leaves before the checkpoint is on disk
    return TrainResult(
        run_dir, step, step // steps_per_epoch, knn_top1, interrupted, main=procs.main
    )


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


def _restore(
    state: dict[str, Any],
    mine: dict[str, Any],
    path: Path,
    moco: MoCo,
    optimizer: torch.optim.Optimizer,
    gen_aug: torch.Generator,
    gen_model: torch.Generator,
) -> None:
    """Load the checkpoint's weights, optimizer and random streams; a file that does not fit
    this run's model (another size, a damaged entry) is a one-line error."""
    try:
        moco.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        gen_aug.set_state(mine["gen_aug"])
        gen_model.set_state(mine["gen_model"])
    except (RuntimeError, KeyError, ValueError, TypeError, IndexError, OverflowError) as e:
        raise CheckpointError(
            f"checkpoint {path} does not fit this run ({type(e).__name__}: {brief(e)}); it is "
            "damaged or belongs to another run (restore it, or start a new run)"
        ) from e


def _progress(total: int, initial: int, enabled: bool, name: str, stream: Any) -> Any:
    from tqdm import tqdm

    return tqdm(
        total=total,
        initial=initial,
        disable=not enabled,
        file=stream,
        unit="step",
        desc=name,
        dynamic_ncols=True,
        mininterval=0.5,
    )
