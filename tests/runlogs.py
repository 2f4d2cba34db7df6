"""Fixture runs for tests: a complete run directory written with the trainer's own writer and
manifest (``write_run``). Importable from any test as ``from runlogs import write_run`` (pytest's
``pythonpath`` includes ``tests/``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from hardstat import runs, schema
from hardstat.bands import parse_band
from hardstat.classes import CIFAR10_CLASSES
from hardstat.logwriter import RunLogWriter


def write_run(
    root: Path,
    name: str,
    *,
    queue_size: int,
    pairs: dict[str, np.ndarray] | None = None,
    labels: np.ndarray | None = None,
    band: str = "0-100",
    seed: int = 0,
    evals: list[dict[str, Any]] | None = None,
    classes=CIFAR10_CLASSES,  # type: ignore[no-untyped-def]
    status: str = "finished",
    dataset: str = "synthetic",
) -> Path:
    """A complete run directory: manifest plus the tables given (``dataset``: the manifest's
    dataset spec).

    ``pairs`` maps step, query_id, neg_id, rank, similarity, in_band (and optionally epoch and
    key_step) to 1-D arrays of equal length. ``labels`` gives the label of every train sample_id
    (samples table); the queries table is derived from pairs.
    """
    run_dir = root / name
    run_dir.mkdir(parents=True)
    b = parse_band(band)
    manifest = runs.new_manifest(
        name,
        config={
            "model": {"backbone": "convnet", "queue_size": queue_size},
            "optim": {"batch_size": 64, "epochs": 1},
        },
        dataset={"spec": dataset, "name": dataset.split(":")[0], "num_classes": len(classes)},
        queue_size=queue_size,
        band=b.spec,
        band_kept=b.kept_count(queue_size),
        seed=seed,
        versions={},
        device="cpu",
    )
    manifest["status"] = status
    runs.write_json_atomic(run_dir / schema.MANIFEST_FILE, manifest)
    w = RunLogWriter(run_dir, name)
    if labels is not None:
        w.write(
            "samples",
            {
                "sample_id": np.arange(len(labels), dtype=np.int32),
                "split": "train",
                "label": labels.astype(np.int16),
            },
        )
    w.write(
        "classes",
        {
            "label": np.array([c.label for c in classes], np.int16),
            "name": np.array([c.name for c in classes], object),
            "synset": np.array([c.synset for c in classes], object),
            "wnid": np.array([c.wnid for c in classes], object),
        },
    )
    if pairs is not None:
        cols = dict(pairs)
        cols.setdefault("epoch", np.zeros(len(cols["step"]), np.int16))
        cols.setdefault("key_step", None)  # null: keys of unknown provenance
        w.write("pairs", cols)
        keys = np.unique(np.stack([cols["step"], cols["query_id"]]), axis=1)
        lab = labels[keys[1]] if labels is not None else np.zeros(keys.shape[1])
        w.write(
            "queries",
            {
                "step": keys[0].astype(np.int32),
                "epoch": 0,
                "query_id": keys[1].astype(np.int32),
                "label": lab.astype(np.int16),
                "pos_similarity": np.float32(0.5),
                "loss": np.float32(1.0),
                "n_in_band": np.int32(b.kept_count(queue_size)),
            },
        )
    for e in evals or []:
        w.write("evals", {k: np.array([v]) if v is not None else None for k, v in e.items()})
    w.close()
    return run_dir


def rewrite_as_version(run: Path, version: int) -> None:
    """Rewrite a run as an older schema version wrote it: the columns added later dropped, the
    version in every file's metadata and in the manifest."""
    import json

    import pyarrow.parquet as pq

    for table, spec in schema.TABLES.items():
        later = [c.name for c in spec.columns if c.since > version]
        for path in (run / table).glob("*.parquet"):
            t = pq.read_table(path)
            t = t.drop_columns([c for c in later if c in t.column_names])
            meta = {"hardstat.schema_version": str(version), "table": table}
            pq.write_table(t.replace_schema_metadata(meta), path)
    manifest = json.loads((run / schema.MANIFEST_FILE).read_text())
    manifest["schema_version"] = version
    if version < 2:
        manifest.pop("processes", None)
    (run / schema.MANIFEST_FILE).write_text(json.dumps(manifest))
