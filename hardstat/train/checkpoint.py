"""Checkpoints: written atomically, read with ``torch.load(weights_only=True)``.

A checkpoint holds only tensors and plain containers (no pickled code), so loading an untrusted
file cannot run code; a file that needs more than that is refused.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from hardstat.errors import CheckpointError

CHECKPOINT_DIR = "checkpoints"
LAST = "last.pt"
CHECKPOINT_FORMAT = "hardstat-checkpoint-2"
"""Format 2 holds, beside the shared model, optimizer and step, one entry per training process
(its random streams and log position) under ``processes``."""


def checkpoint_path(run_dir: Path) -> Path:
    return Path(run_dir) / CHECKPOINT_DIR / LAST


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path, *, resume: bool = True) -> dict[str, Any]:
    """Load a checkpoint safely. ``resume=False`` (evaluation: only model and config are read)
    also accepts the formats of earlier hardstat releases."""
    if not path.is_file():
        raise CheckpointError(
            f"no checkpoint at {path}; the run cannot be resumed (start a new run instead)"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for corrupt or unsafe files
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(
            f"checkpoint {path} could not be loaded safely ({first[:200]}); it is corrupt, "
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
    return state
