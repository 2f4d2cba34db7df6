"""The run-log contract: every table, column, type and meaning, and the schema version.

This module is the single source of truth for the log format. The trainer's writer
(:mod:`hardstat.logwriter`) and every reader go through it, and ``docs/schema.md`` is checked
against it by a test. Change a column here, bump :data:`SCHEMA_VERSION`, and update the docs.

A run directory looks like::

    RUN/
      manifest.json            run manifest: resolved config, versions, dataset, K, band, seed
      pairs/part-*.parquet     one row per (logged query, queue negative) at a logged step
      queries/part-*.parquet   one row per logged query at a logged step
      steps/part-*.parquet     one row per optimizer step
      evals/part-*.parquet     one row per evaluation (kNN monitor, linear probe)
      samples/part-*.parquet   one row per dataset sample (train and test)
      classes/part-*.parquet   one row per class
      checkpoints/last.pt      resumable state (not part of the log contract)

Each table is a directory of Parquet files; a file appears under its final name only once it
is completely written (written to a hidden temporary name, then renamed), so a glob such as
``runs/*/pairs/*.parquet`` always reads complete files. Every table carries a ``run`` column
(the run's name) so files from many runs can be read together.

Only pure-Python descriptions live at module level; :func:`arrow_schema` imports pyarrow lazily.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pyarrow as pa

SCHEMA_VERSION = 3
"""Bumped on any change to a table or the manifest."""

READABLE_VERSIONS = (1, 2, 3)
"""Versions the readers accept. Version 2 added ``process`` to ``pairs`` and ``queries`` and
``processes`` to the manifest; a version-1 file reads as if written by process 0. Version 3
added ``key_step`` to ``pairs``; files of versions 1-2 read it as null (analyses that need the
key, such as the consistency test's key unit, say how they fall back)."""

MANIFEST_FILE = "manifest.json"


@dataclass(frozen=True)
class Column:
    """One column: its name, logical type (see :func:`arrow_schema`), nullability and meaning.

    ``since`` is the schema version that added the column; readers give files of earlier
    versions the SQL value ``default`` in its place.
    """

    name: str
    type: str
    nullable: bool
    doc: str
    since: int = 1
    default: str | None = None


@dataclass(frozen=True)
class Table:
    """One log table: a directory of Parquet files under the run directory."""

    name: str
    doc: str
    columns: tuple[Column, ...]

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)


_RUN = Column("run", "string (dictionary)", False, "Name of the run that wrote the row.")
_STEP = Column(
    "step", "int32", False, "Optimizer step, counted from 0 over the whole run (global step)."
)
_EPOCH = Column("epoch", "int16", False, "Epoch the step belongs to, counted from 0.")
_PROCESS = Column(
    "process",
    "int16",
    False,
    "Training process that logged the row: torch.distributed's rank under torchrun, 0 for a "
    "single process. Each process logs its own share of a step's queries, to its own files "
    "(`part-pNNN-*`, NNN = process). Added in version 2; version-1 files read as 0.",
    since=2,
    default="0",
)

PAIRS = Table(
    "pairs",
    "One row per (logged query, negative) at a logged step: a queue slot, or an in-batch "
    "negative (manifest `negatives`). Within a file, rows of one query are stored in rank order "
    "(rank 1 first).",
    (
        _RUN,
        _STEP,
        _EPOCH,
        Column("query_id", "int32", False, "sample_id of the query image (train split)."),
        Column(
            "neg_id",
            "int32",
            True,
            "sample_id of the image whose key sat in this queue slot when the loss was computed "
            "(in-batch: the other sample of the batch); null while the slot still holds its "
            "random initial key.",
        ),
        Column(
            "rank",
            "int32",
            False,
            "Rank of this negative among the query's K negatives by similarity: 1 = most "
            "similar = hardest, K = easiest. A permutation of 1..K for every logged query.",
        ),
        Column(
            "similarity",
            "float16",
            False,
            "Cosine similarity of query and negative key, before temperature (stored as float16; "
            "ranks were computed from float32).",
        ),
        Column(
            "in_band",
            "bool",
            False,
            "Whether the loss used this negative at this step (always true for band 0-100).",
        ),
        _PROCESS,
        Column(
            "key_step",
            "int32",
            True,
            "Provenance of the negative's key: the optimizer step whose batch enqueued it (the "
            "key was computed by the momentum encoder at that step). (neg_id, key_step) "
            "identifies one key, i.e. one augmented view of one image under one encoder state; "
            "the same key is seen by every query of the steps it spends in the queue. In-batch "
            "negatives are keys of the row's own step (key_step = step). Null for a random "
            "initial key or a key of unknown provenance, and in files of versions 1-2 (added in "
            "version 3).",
            since=3,
            default="NULL",
        ),
    ),
)

QUERIES = Table(
    "queries",
    "One row per logged query at a logged step.",
    (
        _RUN,
        _STEP,
        _EPOCH,
        Column("query_id", "int32", False, "sample_id of the query image (train split)."),
        Column("label", "int16", False, "Class label of the query image."),
        Column(
            "pos_similarity",
            "float32",
            False,
            "Cosine similarity of the query and its positive key, before temperature.",
        ),
        Column("loss", "float32", False, "This query's InfoNCE loss at this step (banded)."),
        Column("n_in_band", "int32", False, "Number of negatives the loss used for this query."),
        _PROCESS,
    ),
)

STEPS = Table(
    "steps",
    "One row per optimizer step (written by the main process; under torchrun the values are "
    "means over the global batch of all processes).",
    (
        _RUN,
        _STEP,
        _EPOCH,
        Column("loss", "float32", False, "Mean InfoNCE loss over the (global) batch."),
        Column("lr", "float32", False, "Learning rate used for this step."),
        Column(
            "pos_similarity",
            "float32",
            False,
            "Mean cosine similarity of queries and their positive keys.",
        ),
        Column(
            "neg_similarity",
            "float32",
            False,
            "Mean cosine similarity of queries and all queue negatives.",
        ),
        Column(
            "seconds",
            "float32",
            False,
            "Wall-clock seconds of the step: data, augmentation, forward, backward, update and "
            "handing logged pairs to the logger (waiting for it when it falls behind). On CUDA "
            "this is host time, which matches the device's pace when averaged over steps.",
        ),
        Column("logged", "bool", False, "Whether pairs and queries were logged at this step."),
    ),
)

EVALS = Table(
    "evals",
    "One row per downstream evaluation of the query encoder's backbone features.",
    (
        _RUN,
        Column("step", "int32", False, "Last optimizer step completed before the evaluation."),
        Column("epoch", "int16", False, "Epoch just completed (counted from 0)."),
        Column("kind", "string", False, "'knn' (weighted kNN monitor) or 'linear' (linear probe)."),
        Column("top1", "float32", False, "Top-1 accuracy on the held-out split, in [0, 1]."),
        Column(
            "top5", "float32", True, "Top-5 accuracy in [0, 1]; null with fewer than 5 classes."
        ),
        Column("params", "string", False, "JSON of the evaluation's settings (k, T, epochs...)."),
    ),
)

SAMPLES = Table(
    "samples",
    "One row per dataset sample used by the run (train and held-out splits).",
    (
        _RUN,
        Column("sample_id", "int32", False, "Index of the image in its split of the dataset."),
        Column("split", "string", False, "'train' or 'test'."),
        Column("label", "int16", False, "Class label."),
    ),
)

CLASSES = Table(
    "classes",
    "One row per class of the dataset.",
    (
        _RUN,
        Column("label", "int16", False, "Class label."),
        Column("name", "string", False, "Readable class name."),
        Column("synset", "string", True, "WordNet 3.0 noun synset name (e.g. dog.n.01), if known."),
        Column("wnid", "string", True, "ImageNet-style WordNet id (e.g. n02084071), if known."),
    ),
)

TABLES: dict[str, Table] = {t.name: t for t in (PAIRS, QUERIES, STEPS, EVALS, SAMPLES, CLASSES)}

MANIFEST_FIELDS: dict[str, str] = {
    "schema_version": "Integer log schema version (this module's SCHEMA_VERSION).",
    "run": "Run name (also the `run` column of every table).",
    "created": "UTC time the run was created, ISO 8601.",
    "status": "'running', 'interrupted' or 'finished'.",
    "config": "The fully resolved training configuration (every default filled in).",
    "dataset": "Dataset spec, name, split sizes, image size and class count.",
    "queue_size": "K, the number of negatives of every query: the queue's size, or the "
    "in-batch negatives per query (2B - 2 for SimCLR's NT-Xent, B - 1 for MoCo v3 / CLIP).",
    "negatives": "How the negatives were formed: 'queue' (a queue or memory bank: the same K "
    "keys for every query of a step, MoCo) or 'in_batch' (the other samples of the batch: "
    "SimCLR, MoCo v3, CLIP; every key is of this step). Runs without the field are 'queue'.",
    "band": "The band spec the loss used, e.g. '0-5' or '0-100'.",
    "band_kept": "Number of negatives per query the band keeps (out of queue_size).",
    "seed": "Random seed.",
    "versions": "Versions of hardstat, python, torch, torchvision, numpy, pyarrow.",
    "device": "Device the run trained on (the main process's, under torchrun).",
    "processes": "Number of training processes (torch.distributed world size; 1 without "
    "torchrun). Added in version 2.",
    "steps_done": "Optimizer steps completed so far.",
    "epochs_done": "Epochs completed so far.",
}


MANIFEST_TYPES: dict[str, tuple[str, int]] = {
    "schema_version": ("integer", 1),
    "run": ("string", 1),
    "created": ("string", 1),
    "status": ("string", 1),
    "config": ("object", 1),
    "dataset": ("object", 1),
    "queue_size": ("integer", 1),
    "band": ("string", 1),
    "band_kept": ("integer", 1),
    "seed": ("integer", 1),
    "versions": ("object", 1),
    "device": ("string", 1),
    "processes": ("integer", 2),
    "steps_done": ("integer", 1),
    "epochs_done": ("integer", 1),
    "negatives": ("string", 0),
}
"""The JSON type of every manifest field and the schema version that added it: readers
(:func:`hardstat.runs.read_manifest`) refuse a manifest that lacks a field of its version or
holds a value of another type, naming the file and the field. Version 0 marks an optional field
(``negatives``, added within version 3: a manifest without it reads as ``"queue"``), checked
only when present."""

MANIFEST_NEGATIVES = ("queue", "in_batch")
"""Values of the manifest's optional ``negatives``."""

MANIFEST_STATUSES = ("running", "interrupted", "finished")
"""Values of the manifest's ``status``."""


def arrow_schema(table: str) -> pa.Schema:
    """The pyarrow schema of a log table (imports pyarrow)."""
    import pyarrow as pa

    types = {
        "string (dictionary)": pa.dictionary(pa.int32(), pa.string()),
        "int16": pa.int16(),
        "int32": pa.int32(),
        "float16": pa.float16(),
        "float32": pa.float32(),
        "bool": pa.bool_(),
        "string": pa.string(),
    }
    spec = TABLES[table]
    return pa.schema(
        [pa.field(c.name, types[c.type], nullable=c.nullable) for c in spec.columns],
        metadata={
            b"hardstat.schema_version": str(SCHEMA_VERSION).encode(),
            b"table": table.encode(),
        },
    )


def render_markdown() -> str:
    """The column reference of ``docs/schema.md`` (between its BEGIN/END markers)."""
    older = ", ".join(str(v) for v in READABLE_VERSIONS if v != SCHEMA_VERSION)
    lines = [f"Schema version: **{SCHEMA_VERSION}** (readers also accept version {older}).", ""]
    for t in TABLES.values():
        lines += [
            f"### `{t.name}`",
            "",
            t.doc,
            "",
            "| column | type | nullable | meaning |",
            "| --- | --- | --- | --- |",
        ]
        lines += [
            f"| `{c.name}` | {c.type} | {'yes' if c.nullable else 'no'} | {c.doc} |"
            for c in t.columns
        ]
        lines.append("")
    lines += ["### `manifest.json`", "", "| field | meaning |", "| --- | --- |"]
    lines += [f"| `{k}` | {v} |" for k, v in MANIFEST_FIELDS.items()]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # python -m hardstat.schema > reference block of docs/schema.md
    print(render_markdown(), end="")
