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


def checkpoint_path(run_dir: Path) -> Path:
    return Path(run_dir) / CHECKPOINT_DIR / LAST


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path) -> dict[str, Any]:
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
    if not isinstance(state, dict) or state.get("format") != "hardstat-checkpoint-1":
        raise CheckpointError(f"{path} is not a hardstat checkpoint")
    return state
