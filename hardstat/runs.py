"""Run directories and their manifests (no torch).

A run lives at ``OUT/NAME``; ``manifest.json`` in it holds the resolved config, versions, dataset,
K, band, seed and the schema version (fields in :data:`hardstat.schema.MANIFEST_FIELDS`).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import re
from pathlib import Path
from typing import Any

from hardstat import schema
from hardstat.errors import LogError, RunError

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._=+-]*$")


def main_process() -> bool:
    """Whether this is the process that reports and writes shared files: always without a
    launcher, process 0 (``RANK``) under torchrun. Needs no torch."""
    return os.environ.get("RANK", "0") == "0"


def check_run_name(name: str) -> str:
    if not _NAME.match(name):
        raise RunError(
            f"run name {name!r} is not allowed; use letters, digits and . _ = + - "
            "(starting with a letter or digit)"
        )
    return name


def now_iso() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def write_json_atomic(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    os.replace(tmp, path)


def read_manifest(run_dir: Path) -> dict[str, Any]:
    """Read and check a run's manifest; raise RunError/LogError with what to do."""
    path = Path(run_dir) / schema.MANIFEST_FILE
    if not Path(run_dir).is_dir():
        raise RunError(f"run directory {run_dir} does not exist")
    if not path.is_file():
        raise RunError(f"{run_dir} is not a hardstat run (no {schema.MANIFEST_FILE})")
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise LogError(
            f"manifest {path} is unreadable or corrupt ({e}); restore it from a backup"
        ) from e
    if not isinstance(data, dict):
        raise LogError(f"manifest {path} is corrupt (not a JSON object)")
    version = data.get("schema_version")
    if version not in schema.READABLE_VERSIONS:
        readable = ", ".join(map(str, schema.READABLE_VERSIONS))
        raise LogError(
            f"run {run_dir} has log schema version {version}, this hardstat reads versions "
            f"{readable}; use a hardstat release that matches the run"
        )
    return data


def check_writable(run_dir: Path, manifest: dict[str, Any]) -> None:
    """Refuse to append to a run whose logs have an older schema version than this writer's."""
    version = manifest.get("schema_version")
    if version != schema.SCHEMA_VERSION:
        raise RunError(
            f"run {run_dir} was written with log schema version {version} and this hardstat "
            f"writes version {schema.SCHEMA_VERSION}; it can be analysed but not continued "
            "(start a new run, or use the hardstat release that wrote it)"
        )


def new_manifest(
    run: str,
    *,
    config: dict[str, Any],
    dataset: dict[str, Any],
    queue_size: int,
    negatives: str = "queue",
    band: str,
    band_kept: int,
    seed: int,
    versions: dict[str, str],
    device: str,
    processes: int = 1,
) -> dict[str, Any]:
    """A fresh manifest (fields documented in :data:`hardstat.schema.MANIFEST_FIELDS`)."""
    manifest = {
        "schema_version": schema.SCHEMA_VERSION,
        "run": run,
        "created": now_iso(),
        "status": "running",
        "config": config,
        "dataset": dataset,
        "queue_size": queue_size,
        "negatives": negatives,
        "band": band,
        "band_kept": band_kept,
        "seed": seed,
        "versions": versions,
        "device": device,
        "processes": processes,
        "steps_done": 0,
        "epochs_done": 0,
    }
    return manifest


def update_manifest(run_dir: Path, **fields: Any) -> dict[str, Any]:
    data = read_manifest(run_dir)
    data.update(fields)
    write_json_atomic(Path(run_dir) / schema.MANIFEST_FILE, data)
    return data
