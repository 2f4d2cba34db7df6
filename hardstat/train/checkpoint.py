"""Checkpoints: written atomically, read with ``torch.load(weights_only=True)`` and checked.

A checkpoint holds only tensors and plain containers (no pickled code), so loading an untrusted
file cannot run code; a file that needs more than that is refused. Saving writes a hidden
temporary file, fsyncs it and renames it over the previous checkpoint, so a failure (disk full)
leaves the previous checkpoint as it was. Loading for a resume checks every field the trainer
reads (:func:`check_state`): a crafted or damaged file is a one-line error, never a traceback or
a silently wrong resume.
"""

from __future__ import annotations

import contextlib
import errno
import os
from pathlib import Path
from typing import Any

import torch

from hardstat import runs, schema
from hardstat.errors import CheckpointError

CHECKPOINT_DIR = "checkpoints"
LAST = "last.pt"
CHECKPOINT_FORMAT = "hardstat-checkpoint-2"
"""Format 2 holds, beside the shared model, optimizer and step, one entry per training process
(its random streams and log position) under ``processes``."""


def checkpoint_path(run_dir: Path) -> Path:
    return runs.checkpoint_file(run_dir)


def save_checkpoint(path: Path, state: dict[str, Any], *, todo: str = "try again") -> None:
    """Write ``state`` to ``path`` completely or not at all (temporary file, fsync, rename); on
    failure the temporary file is removed, the previous checkpoint is untouched and a
    :class:`~hardstat.errors.WriteError` says what to do."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except (OSError, RuntimeError) as e:
        # torch.save reports a full disk as RuntimeError ("unexpected pos ... vs ...")
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise runs.write_failed(path, e, todo) from e
        # torch's zip writer reports a short write (a full disk or quota) as "unexpected pos"
        short = "unexpected pos" in str(e)
        reason = "No space left on device" if short else "the write failed"
        raise runs.write_failed(
            path,
            OSError(errno.ENOSPC if short else 0, f"{reason}; torch: {brief(e)}"),
            todo,
        ) from e
    runs.fsync_dir(path.parent)


def _torch_detail(e: BaseException) -> str:
    """What went wrong loading, without torch's advice to load with ``weights_only=False``
    (which would run whatever code the file holds)."""
    skip = ("weights_only", "weights only", "please file an issue", "check the documentation")
    lines = [
        line.strip()
        for line in str(e).splitlines()
        if line.strip() and not any(w in line.lower() for w in skip)
    ]
    text = " ".join(lines).replace("WeightsUnpickler error:", "").strip()
    return (text or type(e).__name__)[:200]


def brief(e: BaseException) -> str:
    """An exception's message on one line: its first line, and the next one too when the first
    only announces it ("Error(s) in loading state_dict for MoCo:")."""
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    if not lines:
        return type(e).__name__
    text = " ".join(lines[:2]) if lines[0].endswith(":") and len(lines) > 1 else lines[0]
    return text[:240]


def load_checkpoint(path: Path, *, resume: bool = True) -> dict[str, Any]:
    """Load a checkpoint safely. ``resume=False`` (evaluation: only model, step and config are
    read) also accepts the formats of earlier hardstat releases."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"no checkpoint at {path}; the run stopped before its first checkpoint, so there "
            "is nothing to resume or evaluate"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except PermissionError as e:
        raise CheckpointError(
            f"cannot read checkpoint {path} (permission denied); ask its owner for read access"
        ) from e
    except Exception as e:  # torch raises many types for corrupt or unsafe files
        detail = _torch_detail(e)
        if "unsupported global" in detail.lower():
            raise CheckpointError(
                f"checkpoint {path} holds objects other than tensors and plain containers "
                f"({detail}); hardstat refuses to load it, because loading such a file can run "
                "code. Use a checkpoint written by hardstat"
            ) from e
        raise CheckpointError(
            f"checkpoint {path} could not be loaded safely ({detail}); it is corrupt, "
            "truncated or not a hardstat checkpoint"
        ) from e
    if not isinstance(state, dict) or not str(state.get("format", "")).startswith(
        "hardstat-checkpoint-"
    ):
        raise CheckpointError(f"{path} is not a hardstat checkpoint")
    if resume and state["format"] != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{path} has format {state['format']}, this hardstat resumes {CHECKPOINT_FORMAT}; "
            "its logs can still be analysed, but continue training with the hardstat release "
            "that wrote it (or start a new run)"
        )
    check_state(state, path, resume=resume)
    return state


def check_state(state: dict[str, Any], path: Path, *, resume: bool = True) -> None:
    """Check the fields the trainer (``resume``) or an evaluation reads: types, ranges and the
    shape of the per-process entries. Raises CheckpointError naming the file and the field."""

    def bad(field: str, why: str) -> CheckpointError:
        return CheckpointError(
            f"checkpoint {path}: {field} {why}; the file is damaged or was not written by "
            "hardstat (restore it, or start a new run)"
        )

    def integer(value: Any, field: str, low: int = 0) -> int:
        if isinstance(value, torch.Tensor) and value.numel() == 1 and not value.is_floating_point():
            value = int(value.item())
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise bad(field, f"must be an integer >= {low}, got {value!r:.40}")
        if value >= 2**31:
            raise bad(field, f"is out of range ({value})")
        return value

    integer(state.get("step"), "step")
    if not isinstance(state.get("config"), str):
        raise bad("config", "must be the run's configuration as JSON text")
    model = state.get("model")
    if not isinstance(model, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in model.items()
    ):
        raise bad("model", "must map parameter names to tensors")
    if not resume:
        return
    if not isinstance(state.get("optimizer"), dict):
        raise bad("optimizer", "must be the optimizer's state")
    processes = state.get("processes")
    if not isinstance(processes, list) or not processes:
        raise bad("processes", "must list every training process's state")
    for i, own in enumerate(processes):
        where = f"processes[{i}]"
        if not isinstance(own, dict):
            raise bad(where, "must be a mapping")
        for gen in ("gen_aug", "gen_model"):
            value = own.get(gen)
            if not isinstance(value, torch.Tensor) or value.dtype != torch.uint8:
                raise bad(f"{where}.{gen}", "must be a random generator's state")
        logger = own.get("logger")
        if not isinstance(logger, dict):
            raise bad(f"{where}.logger", "must be the logger's state")
        logger_gen = logger.get("generator")
        if not isinstance(logger_gen, torch.Tensor) or logger_gen.dtype != torch.uint8:
            raise bad(f"{where}.logger.generator", "must be a random generator's state")
        writer = logger.get("writer")
        if not isinstance(writer, dict):
            raise bad(f"{where}.logger.writer", "must be the log writer's state")
        if integer(writer.get("process"), f"{where}.logger.writer.process") != i:
            raise bad(f"{where}.logger.writer.process", f"must be {i}")
        next_seq = writer.get("next_seq")
        if not isinstance(next_seq, dict):
            raise bad(f"{where}.logger.writer.next_seq", "must map tables to part numbers")
        for table, seq in next_seq.items():
            if table not in schema.TABLES:
                raise bad(
                    f"{where}.logger.writer.next_seq", f"names an unknown table {table!r:.40}"
                )
            integer(seq, f"{where}.logger.writer.next_seq[{table!r}]")
        committed = writer.get("committed")
        if not isinstance(committed, list) or not all(
            isinstance(c, str) and _safe_relative(c) for c in committed
        ):
            raise bad(f"{where}.logger.writer.committed", "must list log files of the run")


def _safe_relative(name: str) -> bool:
    """``table/part-....parquet``: a file inside the run, never an absolute path or ``..``."""
    parts = name.split("/")
    return len(parts) == 2 and all(p and p not in (".", "..") for p in parts)
