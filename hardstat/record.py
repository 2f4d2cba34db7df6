"""Record which negatives a contrastive loss saw and how hard each was for which query.

The public recording API: drop a :class:`Recorder` into any contrastive training loop (your own
MoCo or SimCLR, lightly, a CLIP-style model) and it writes the run log that ``hardstat train``
writes (``manifest.json`` and the ``pairs``, ``queries``, ``steps``, ``evals``, ``samples``,
``classes`` tables of :mod:`hardstat.schema`, through the same writer), so ``hardstat analyze``,
``hardstat sql`` and ``hardstat report`` work on it unchanged. ``hardstat train`` records through
this same class. Guide: ``docs/record.md``.

Two layouts of negatives (``negatives=``), both first-class:

``"queue"``     a queue or memory bank (MoCo): the same K keys are every query's negatives at a
                step; ``neg_ids`` is (K,) (or (B, K)), ``neg_key_steps`` the step that enqueued
                each key (-1 / null for a key of unknown provenance or no sample).
``"in_batch"``  the other samples of the batch (SimCLR, MoCo v3, CLIP): ``neg_ids`` is (B, K)
                and differs per query; every key was computed at this step, so its key step is
                the step itself. A query's own other view is its positive, never a negative.

One call per step::

    rec.log_step(step, epoch=e, query_ids=ids, pos_similarity=l_pos, neg_similarity=l_neg,
                 neg_ids=neg_ids, losses=losses, lr=lr, in_band=mask)

decides the cadence (pairs are logged when ``step % every == 0``), picks ``queries`` of the B
queries with its own seeded generator (0 = all), checks shapes, dtypes and id ranges (a
:class:`~hardstat.errors.RecordError` that names the argument, and nothing written), copies the
chosen rows off the device and hands them to a background thread, which ranks each query's
negatives (rank 1 = most similar = hardest) and appends ``pairs`` rows in rank order and
``queries`` rows. Every call adds a ``steps`` row (buffered, written at :meth:`Recorder.flush`).

Arrays may be torch tensors (any device; they are detached) or NumPy arrays. Importing this
module needs neither torch nor DuckDB; a recorder imports torch when it is made (its query
choice uses a seeded ``torch.Generator``, as the trainer always has).
"""

from __future__ import annotations

import contextlib
import json
import operator
import queue as _queue
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from hardstat import runs, schema, seeds
from hardstat.bands import Band, parse_band
from hardstat.classes import CIFAR10_CLASSES, CIFAR100_CLASSES, ClassInfo, is_wnid
from hardstat.errors import ConfigError, LogError, RecordError, RunError
from hardstat.logwriter import RunLogWriter, set_aside_uncommitted

if TYPE_CHECKING:
    import torch

Negatives = Literal["queue", "in_batch"]
LAYOUTS: tuple[str, ...] = ("queue", "in_batch")
"""The layouts of negatives (the manifest's ``negatives`` field)."""

EVAL_KINDS: tuple[str, ...] = ("knn", "linear")
"""The ``kind`` values of the ``evals`` table."""

Array = Any
"""A torch tensor (any device) or a NumPy array (or anything ``np.asarray`` takes)."""

_INT32_END = 2**31  # sample ids and steps are int32 in the log
_INT16_END = 2**15  # labels are int16


class Recorder:
    """Records a contrastive run's negatives: one :meth:`log_step` call per optimizer step.

    Make one with :meth:`create` (a new run directory: manifest, ``samples``, ``classes``) or
    :meth:`open` (continue a run from a checkpointed :meth:`state`). The constructor itself is
    for code that writes its own manifest and static tables (``hardstat train``): it takes a
    :class:`~hardstat.logwriter.RunLogWriter` and the recording settings.

    Settings: ``negatives`` the layout (``"queue"`` or ``"in_batch"``); ``negatives_per_query``
    K, fixed for the run; ``every`` logs pairs at steps with ``step % every == 0``; ``queries``
    logged queries per logged step (0 = all); ``seed`` seeds the query choice; ``enabled=False``
    never logs pairs (steps are still recorded); ``record_steps=False`` records no ``steps``
    rows (the other processes under torchrun); ``num_samples`` bounds sample ids to
    ``0..num_samples-1`` and ``num_classes`` labels to ``0..num_classes-1`` (None: only
    ``>= 0``); ``train_labels[sample_id]`` lets ``query_labels`` be left out.
    """

    def __init__(
        self,
        writer: RunLogWriter,
        *,
        negatives_per_query: int,
        every: int,
        queries: int,
        seed: int,
        negatives: Negatives = "queue",
        enabled: bool = True,
        record_steps: bool = True,
        num_samples: int | None = None,
        num_classes: int | None = None,
        train_labels: Array | None = None,
        max_pending: int = 4,
    ) -> None:
        import torch

        from hardstat.train.negatives import rank_order

        _check_settings(negatives, negatives_per_query, every, queries)
        self.writer = writer
        self.negatives: Negatives = negatives
        self.k = int(negatives_per_query)
        self.enabled, self.every, self.queries = enabled, int(every), int(queries)
        self.record_steps = record_steps
        self.num_samples, self.num_classes = num_samples, num_classes
        self.train_labels = None if train_labels is None else np.asarray(train_labels, np.int64)
        self.generator = torch.Generator().manual_seed(seeds.log_queries(int(seed)))
        self._rank_order = rank_order
        self._manifest_owner = False  # set by create/open: the recorder keeps manifest.json
        self._needs_state = False  # set by open without a state: load_state must come first
        self._touched = False  # anything submitted or recorded yet (load_state must come first)
        self._closed = False
        self.last_step: int | None = None
        self.last_epoch: int | None = None
        self._device: str | None = None
        self._last_call = time.perf_counter()
        self._steps: dict[str, list[Any]] = {
            k: [] for k in ("step", "epoch", "lr", "seconds", "logged", "summary")
        }
        self._jobs: _queue.Queue[Callable[[], None] | None] = _queue.Queue(max_pending)
        self._error: BaseException | None = None
        self._rank_cache: dict[int, np.ndarray] = {}
        self._thread = threading.Thread(target=self._work, name="hardstat-recorder", daemon=True)
        self._thread.start()

    # -- making a recorder -----------------------------------------------------------------
    @classmethod
    def create(
        cls,
        run_dir: str | Path,
        *,
        negatives: Negatives = "queue",
        negatives_per_query: int | None = None,
        queue_size: int | None = None,
        train_labels: Array,
        classes: Sequence[ClassInfo | str],
        dataset: str = "custom",
        test_labels: Array | None = None,
        image_size: int | None = None,
        seed: int = 0,
        every: int = 50,
        queries: int = 64,
        band: str | Band = "0-100",
        config: Mapping[str, Any] | None = None,
        name: str | None = None,
        device: str | None = None,
        file_rows: int = 8_388_608,
    ) -> Recorder:
        """A recorder for a new run in ``run_dir`` (which must not exist, or be empty).

        Writes ``manifest.json`` (status ``running``) and the ``samples`` and ``classes`` tables.

        - ``negatives``: ``"queue"`` or ``"in_batch"`` (module docstring); ``negatives_per_query``
          (or, for a queue, ``queue_size``): K, the negatives of every query, fixed for the run.
        - ``train_labels``: the class label of every training sample, indexed by ``sample_id``
          (so ids are ``0..N-1``); ``test_labels`` likewise for a held-out split, if any.
        - ``classes``: per label ``0..C-1`` a :class:`~hardstat.classes.ClassInfo` (name, WordNet
          synset and wnid, which ``hardstat analyze semantic`` needs) or a plain name (CIFAR-10's
          and CIFAR-100's names get their synsets).
        - ``dataset``: a name or hardstat dataset spec (``demo``, ``npz:PATH``... : the report
          then shows images); ``image_size`` is informational.
        - ``every``, ``queries``: the cadence; ``seed``: the run's seed (also seeds the query
          choice); ``band``: the band spec your loss used (``hardstat.negatives.band_mask``),
          ``0-100`` if the loss used every negative.
        - ``config``: your training configuration, saved in the manifest as it is (hardstat's
          ``runs`` view reads ``model.backbone``, ``optim.batch_size`` and ``optim.epochs`` from it
          when present); the recorder adds its cadence as ``log``.
        - ``name``: the run name (the ``run`` column), by default the directory's name;
          ``device``: recorded in the manifest, by default the device of the first step's
          tensors (``cpu`` for NumPy arrays).
        """
        run_dir = Path(run_dir)
        k = _negatives_per_query(negatives, negatives_per_query, queue_size)
        _check_settings(negatives, k, every, queries)
        try:
            parsed = band if isinstance(band, Band) else parse_band(band)
            parsed.check(k)
        except ConfigError as e:
            raise RecordError(f"band: {e}") from e
        infos = _class_infos(classes)
        labels = _labels("train_labels", train_labels, len(infos))
        test = None if test_labels is None else _labels("test_labels", test_labels, len(infos))
        config = dict(config or {})
        if "log" in config:
            raise RecordError(
                "config: the key 'log' holds the recorder's cadence in the manifest; rename "
                "that entry of your configuration"
            )
        config["log"] = {"enabled": True, "every": int(every), "queries": int(queries)}
        try:
            config_json = json.loads(json.dumps(config))
        except (TypeError, ValueError) as e:
            raise RecordError(f"config: not JSON-serialisable ({e}); pass plain values") from e
        run = runs.check_run_name(name if name is not None else run_dir.name)
        if run_dir.exists() and (not run_dir.is_dir() or any(run_dir.iterdir())):
            raise RunError(
                f"run directory {run_dir} already exists; choose another directory, delete it, "
                "or continue the run with Recorder.open(run_dir, state)"
            )
        run_dir.mkdir(parents=True, exist_ok=True)
        manifest = runs.new_manifest(
            run,
            config=config_json,
            dataset={
                "spec": dataset,
                "name": dataset.split(":", 1)[0],
                "train_size": len(labels),
                "test_size": 0 if test is None else len(test),
                "image_size": image_size,
                "num_classes": len(infos),
            },
            queue_size=k,
            negatives=negatives,
            band=parsed.spec,
            band_kept=parsed.kept_count(k),
            seed=int(seed),
            versions=_versions(),
            device=device or "unknown",
        )
        runs.write_json_atomic(run_dir / schema.MANIFEST_FILE, manifest)
        recorder = cls(
            RunLogWriter(run_dir, run, file_rows=file_rows),
            negatives=negatives,
            negatives_per_query=k,
            every=every,
            queries=queries,
            seed=seed,
            num_samples=len(labels),
            num_classes=len(infos),
            train_labels=labels,
        )
        recorder._manifest_owner = True
        recorder._device = device
        recorder.write_table("samples", _samples_columns(labels, test))
        recorder.write_table("classes", _classes_columns(infos))
        recorder.flush()  # the static tables are on disk before the first step
        return recorder

    @classmethod
    def open(cls, run_dir: str | Path, state: Mapping[str, Any] | None = None) -> Recorder:
        """A recorder that continues the run in ``run_dir`` from a checkpointed :meth:`state`.

        The settings (layout, K, cadence, seed, sample and class counts) come from the run's
        manifest. Give ``state`` here, or call :meth:`load_state` before the first step (as a
        PyTorch Lightning callback's ``load_state_dict`` does); log files written after that
        state are moved to ``RUN/superseded/``, so every step is logged once.
        """
        run_dir = Path(run_dir)
        manifest = runs.read_manifest(run_dir)
        runs.check_writable(run_dir, manifest)
        log = (manifest.get("config") or {}).get("log") or {}
        data = manifest.get("dataset") or {}
        labels = _read_train_labels(run_dir)
        negatives = manifest.get("negatives", "queue")
        if negatives not in LAYOUTS:
            raise LogError(f"manifest of {run_dir}: unknown negatives layout {negatives!r}")
        recorder = cls(
            RunLogWriter(run_dir, manifest["run"]),
            negatives=negatives,
            negatives_per_query=int(manifest["queue_size"]),
            every=int(log.get("every", 50)),
            queries=int(log.get("queries", 64)),
            enabled=bool(log.get("enabled", True)),
            seed=int(manifest.get("seed", 0)),
            num_samples=len(labels) if labels is not None else data.get("train_size") or None,
            num_classes=data.get("num_classes") or None,
            train_labels=labels,
        )
        recorder._manifest_owner = True
        recorder._device = None if manifest.get("device") == "unknown" else manifest.get("device")
        recorder._needs_state = True
        if state is not None:
            recorder.load_state(state)
        return recorder

    # -- one call per step -----------------------------------------------------------------
    def logs(self, step: int) -> bool:
        """Whether pairs are logged at ``step``."""
        return self.enabled and step % self.every == 0

    def log_step(
        self,
        step: int,
        *,
        epoch: int,
        query_ids: Array,
        pos_similarity: Array,
        neg_similarity: Array,
        neg_ids: Array,
        losses: Array,
        lr: float,
        query_labels: Array | None = None,
        neg_key_steps: Array | None = None,
        in_band: Array | None = None,
        loss: Any = None,
        started: float | None = None,
        summary: Any = None,
    ) -> bool:
        """Record optimizer step ``step`` (0, 1, 2... over the whole run); returns whether its
        pairs were logged.

        B queries, K negatives each (shapes are checked at every step, values at logged steps):

        - ``query_ids`` (B,) sample ids of the queries, distinct; ``query_labels`` (B,) their
          labels (default: ``train_labels[query_ids]`` of :meth:`create`).
        - ``pos_similarity`` (B,) cosine of each query with its positive key;
          ``neg_similarity`` (B, K) with each negative (before temperature).
        - ``neg_ids`` sample ids of the negatives: (K,) for a queue (the same for every query)
          or (B, K); -1 = no sample (a queue's initial random key, logged as null).
          ``neg_key_steps`` same shape: the step that enqueued each key (-1 = unknown), must
          not exceed ``step``; None = unknown for a queue, ``step`` for in-batch negatives.
        - ``in_band`` (B, K) bool: the negatives the loss used (None = all).
        - ``losses`` (B,) each query's loss; ``loss`` the batch loss of the ``steps`` row
          (default: the mean of ``losses``); ``lr`` the learning rate of the step.
        - ``started``: ``time.perf_counter()`` at the step's start, for the ``seconds`` of the
          ``steps`` row (default: the time since the previous call).
        - ``summary``: (3,) loss, mean positive and mean negative similarity over the global
          batch, for data-parallel training (default: from this call's arguments).
        """
        step = _index("step", step)
        epoch = _index("epoch", epoch)
        self._check_order(step, epoch)
        b = self._check_shapes(
            query_ids, query_labels, pos_similarity, neg_similarity, neg_ids, neg_key_steps,
            in_band, losses,
        )  # fmt: skip
        if query_labels is None and self.train_labels is None:
            raise RecordError(
                "query_labels: required (the recorder knows no train_labels to look them up)"
            )
        logged = self.logs(step)
        job = None
        if logged:
            before = self.generator.get_state()
            try:
                job = self._pairs_job(
                    step, epoch, b, query_ids, query_labels, pos_similarity, neg_similarity,
                    neg_ids, neg_key_steps, in_band, losses,
                )  # fmt: skip
            except RecordError:
                self.generator.set_state(before)  # a rejected call leaves no trace
                raise
        if self.record_steps:
            if summary is None:
                summary = _summary(loss, losses, pos_similarity, neg_similarity)
            elif tuple(summary.shape) != (3,):
                raise RecordError(f"summary: expected shape (3,), got {tuple(summary.shape)}")
            lr_value = float(lr.item() if hasattr(lr, "item") else lr)
        # every check passed: from here on the step is recorded
        self._touched = True
        if self._device is None:
            self._device = _device_of(neg_similarity)
            if self._manifest_owner:
                runs.update_manifest(self.writer.run_dir, device=self._device)
        if job is not None:
            self._submit(lambda: self._write_pairs(job))
        self.last_step, self.last_epoch = step, epoch
        if self.record_steps:
            s = self._steps
            s["step"].append(step)
            s["epoch"].append(epoch)
            # device scalars: moved to the CPU together at flush, so a GPU step never waits here
            s["summary"].append(summary)
            s["lr"].append(lr_value)
            s["logged"].append(logged)
            now = time.perf_counter()
            s["seconds"].append(now - (self._last_call if started is None else started))
            self._last_call = now
        return logged

    def log_eval(
        self,
        step: int,
        *,
        epoch: int,
        kind: str,
        top1: float,
        top5: float | None = None,
        params: str | Mapping[str, Any] | None = None,
    ) -> None:
        """Record a downstream evaluation (``evals`` row): ``kind`` ``knn`` or ``linear``,
        accuracies in [0, 1], ``params`` its settings (a dict, saved as JSON)."""
        step, epoch = _index("step", step), _index("epoch", epoch)
        if kind not in EVAL_KINDS:
            raise RecordError(f"kind: {kind!r} is not one of {', '.join(EVAL_KINDS)}")
        for name, value in (("top1", top1), ("top5", top5)):
            if value is not None and not 0.0 <= float(value) <= 1.0:
                raise RecordError(f"{name}: {value} is not an accuracy in [0, 1]")
        text = params if isinstance(params, str) else json.dumps(dict(params or {}))
        self._touched = True
        row = dict(step=step, epoch=epoch, kind=kind, top1=float(top1), top5=top5, params=text)
        self._submit(
            lambda: self.writer.write(
                "evals", {k: np.array([v]) if v is not None else None for k, v in row.items()}
            )
        )

    def write_table(self, table: str, columns: Mapping[str, Any]) -> None:
        """Append rows to a log table in the background (columns as for
        :meth:`~hardstat.logwriter.RunLogWriter.write`)."""
        self._touched = True
        self._submit(lambda: self.writer.write(table, columns))

    # -- flushing, checkpoints, closing ----------------------------------------------------
    def flush(self) -> None:
        """Write everything buffered and publish all open files; returns when on disk."""
        if self._closed:  # close flushed everything
            return
        s = self._steps
        if s["step"]:
            summaries = _stack(s["summary"])  # (S, 3)
            steps = {
                "step": np.array(s["step"]),
                "epoch": np.array(s["epoch"]),
                "loss": np.ascontiguousarray(summaries[:, 0]),
                "lr": np.array(s["lr"]),
                "pos_similarity": np.ascontiguousarray(summaries[:, 1]),
                "neg_similarity": np.ascontiguousarray(summaries[:, 2]),
                "seconds": np.array(s["seconds"]),
                "logged": np.array(s["logged"]),
            }
            for v in s.values():
                v.clear()
            self._submit(lambda: self.writer.write("steps", steps))
        done = threading.Event()

        def finish() -> None:
            self.writer.flush()
            done.set()

        self._submit(finish)
        while not done.wait(0.05):
            self._raise_if_failed()
            if not self._thread.is_alive():
                break
        self._raise_if_failed()

    def state(self) -> dict[str, Any]:
        """The recorder's position, for your checkpoint (flushes first): which log files are
        committed, the query choice's generator, the last step. Tensors and plain values only,
        so ``torch.load(weights_only=True)`` reads it. Continue with :meth:`open`."""
        self.flush()
        if self._manifest_owner and self.last_step is not None and not self._closed:
            runs.update_manifest(
                self.writer.run_dir,
                status="running",
                steps_done=self.last_step + 1,
                epochs_done=self.last_epoch or 0,
            )
        return {
            "writer": self.writer.state(),
            "generator": self.generator.get_state(),
            "last_step": self.last_step,
            "last_epoch": self.last_epoch,
        }

    def load_state(self, state: Mapping[str, Any]) -> None:
        """Continue from a :meth:`state`: log files written after it are moved to
        ``RUN/superseded/`` (never deleted), the query choice and step order continue. Only
        before this recorder has recorded anything."""
        if self._touched:
            raise RecordError(
                "state: load_state must come before the recorder records anything; continue a "
                "run with Recorder.open(run_dir, state)"
            )
        try:
            writer_state = state["writer"]
            generator_state = state["generator"]
        except (KeyError, TypeError) as e:
            raise RecordError(f"state: not a recorder state (missing {e})") from e
        w = self.writer
        set_aside_uncommitted(w.run_dir, list(writer_state["committed"]), w.process)
        self.writer = RunLogWriter(
            w.run_dir,
            w.run,
            process=w.process,
            file_rows=w.file_rows,
            next_seq=writer_state["next_seq"],
            tag=w.tag,
        )
        self.generator.set_state(generator_state)
        self.last_step = state.get("last_step")
        self.last_epoch = state.get("last_epoch")
        self._needs_state = False

    def close(self, status: str | None = None, *, epochs_done: int | None = None) -> None:
        """Flush and stop the background thread. For a run made by :meth:`create` or
        :meth:`open`, the manifest gets ``status`` (default ``finished``; ``interrupted`` when
        training stopped early), ``steps_done`` = last step + 1 and ``epochs_done`` (default:
        last epoch + 1 when finished, the last epoch otherwise). Closing twice does nothing."""
        if self._closed:
            return
        try:
            self.flush()
        finally:
            self._closed = True
            self._jobs.put(None)
            self._thread.join()
        if self._manifest_owner and status != "running":
            status = status or "finished"
            if status not in ("finished", "interrupted"):
                raise RecordError(f"status: {status!r} is not 'finished' or 'interrupted'")
            fields: dict[str, Any] = {"status": status}
            if self.last_step is not None:
                last_epoch = self.last_epoch or 0
                done = last_epoch + 1 if status == "finished" else last_epoch
                fields.update(
                    steps_done=self.last_step + 1,
                    epochs_done=done if epochs_done is None else epochs_done,
                )
            runs.update_manifest(self.writer.run_dir, **fields)

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.close()
            return
        with contextlib.suppress(Exception):  # the exception propagating matters more
            self.close("interrupted")

    # -- checks ----------------------------------------------------------------------------
    def _check_order(self, step: int, epoch: int) -> None:
        if self._closed:
            raise RecordError("step: the recorder is closed")
        if self._needs_state:
            raise RecordError(
                "step: this recorder continues a run; call load_state(state) with the state "
                "saved in your checkpoint before the first step"
            )
        if self.last_step is not None and step <= self.last_step:
            raise RecordError(
                f"step: {step} does not follow the last recorded step {self.last_step}; steps "
                "must increase (one call per optimizer step)"
            )
        if self.last_epoch is not None and epoch < self.last_epoch:
            raise RecordError(f"epoch: {epoch} is before the last recorded epoch {self.last_epoch}")

    def _check_shapes(
        self,
        query_ids: Array,
        query_labels: Array | None,
        pos_similarity: Array,
        neg_similarity: Array,
        neg_ids: Array,
        neg_key_steps: Array | None,
        in_band: Array | None,
        losses: Array,
    ) -> int:
        """Shapes and dtypes (no device sync); returns B."""
        shape = _shape("neg_similarity", neg_similarity)
        _dtype("neg_similarity", neg_similarity, "float")
        if len(shape) != 2 or shape[0] < 1:
            raise RecordError(
                f"neg_similarity: expected a (B, K) array of similarities, got shape {shape}"
            )
        b, k = shape
        if k != self.k:
            raise RecordError(
                f"neg_similarity: {k} negatives per query, but this run records K = {self.k} "
                "(fixed when the recorder was made); keep K fixed, e.g. with a fixed batch size "
                "(drop_last=True) for in-batch negatives"
            )
        for name, value, kind in (
            ("query_ids", query_ids, "int"),
            ("query_labels", query_labels, "int"),
            ("pos_similarity", pos_similarity, "float"),
            ("losses", losses, "float"),
        ):
            if value is None:
                continue
            if _shape(name, value) != (b,):
                raise RecordError(
                    f"{name}: expected shape ({b},) (one per query; neg_similarity is {shape}), "
                    f"got {_shape(name, value)}"
                )
            _dtype(name, value, kind)
        ids_shape = _shape("neg_ids", neg_ids)
        allowed = [(b, k)] if self.negatives == "in_batch" else [(k,), (b, k)]
        if ids_shape not in allowed:
            want = " or ".join(str(s) for s in allowed)
            raise RecordError(
                f"neg_ids: expected shape {want} for {self.negatives} negatives "
                f"(neg_similarity is {shape}), got {ids_shape}"
            )
        _dtype("neg_ids", neg_ids, "int")
        if neg_key_steps is not None:
            if _shape("neg_key_steps", neg_key_steps) != ids_shape:
                raise RecordError(
                    f"neg_key_steps: expected the shape of neg_ids {ids_shape}, got "
                    f"{_shape('neg_key_steps', neg_key_steps)}"
                )
            _dtype("neg_key_steps", neg_key_steps, "int")
        if in_band is not None:
            if _shape("in_band", in_band) != shape:
                raise RecordError(
                    f"in_band: expected the shape of neg_similarity {shape}, got "
                    f"{_shape('in_band', in_band)}"
                )
            _dtype("in_band", in_band, "bool")
        return b

    # -- logged steps ----------------------------------------------------------------------
    def _pairs_job(
        self,
        step: int,
        epoch: int,
        b: int,
        query_ids: Array,
        query_labels: Array | None,
        pos_similarity: Array,
        neg_similarity: Array,
        neg_ids: Array,
        neg_key_steps: Array | None,
        in_band: Array | None,
        losses: Array,
    ) -> _PairsJob:
        """The chosen queries' rows on the CPU, their values checked."""
        import torch

        if 0 < self.queries < b:
            sel = torch.randperm(b, generator=self.generator)[: self.queries].sort().values
        else:
            sel = torch.arange(b)
        take = _Rows(sel)
        ids = take(query_ids)  # (Q,)
        l_neg = take(neg_similarity, np.float32)  # (Q, K)
        per_query = len(_shape("neg_ids", neg_ids)) == 2
        negs = take(neg_ids) if per_query else _cpu(neg_ids)  # (Q, K) or (K,)
        key_steps = None
        if neg_key_steps is not None:
            key_steps = take(neg_key_steps) if per_query else _cpu(neg_key_steps)
        if query_labels is not None:
            labels = take(query_labels)
        else:
            known = self.train_labels
            assert known is not None  # log_step checked
            labels = known[np.clip(ids, 0, len(known) - 1)]
        mask = None if in_band is None else take(in_band)
        job = _PairsJob(
            step=step,
            epoch=epoch,
            query_ids=ids,
            labels=labels,
            neg_ids=negs,
            neg_key_steps=key_steps,
            l_neg=l_neg,
            mask=mask,
            l_pos=take(pos_similarity, np.float32),
            losses=take(losses, np.float32),
        )
        self._check_values(job, labels_given=query_labels is not None)
        return job._narrowed(in_batch=self.negatives == "in_batch")

    def _check_values(self, job: _PairsJob, *, labels_given: bool) -> None:
        n = self.num_samples or _INT32_END  # ids are int32, labels int16 in the log
        c = self.num_classes or _INT16_END
        ids = job.query_ids
        _in_range("query_ids", ids, 0, n, "sample ids")
        if len(np.unique(ids)) != len(ids):
            raise RecordError(
                f"query_ids: sample_id {_first_duplicate(ids)} appears twice among the logged "
                f"queries of step {job.step}; a query is (step, query_id): log one view per "
                "sample (e.g. the first B rows of a SimCLR batch)"
            )
        if labels_given:
            _in_range("query_labels", job.labels, 0, c, "class labels")
        elif (job.labels < 0).any():
            raise RecordError("query_ids: a query's sample has no train label; pass query_labels")
        lowest = 0 if self.negatives == "in_batch" else -1
        _in_range("neg_ids", job.neg_ids, lowest, n, "sample ids; -1 = no sample")
        if job.neg_key_steps is not None:
            ks = job.neg_key_steps
            if self.negatives == "in_batch":
                if ks.size and (ks != job.step).any():
                    raise RecordError(
                        "neg_key_steps: in-batch negatives are keys of this step; leave it None"
                    )
            elif ks.size and (ks.min() < -1 or ks.max() > job.step):
                bad = ks.min() if ks.min() < -1 else ks.max()
                raise RecordError(
                    f"neg_key_steps: {bad} is outside -1..{job.step} (a key is enqueued at or "
                    "before the step whose loss sees it; -1 = unknown)"
                )
        if self.negatives == "in_batch":
            own = job.neg_ids == job.query_ids[:, None]  # (Q, K)
            if own.any():
                i = int(np.argwhere(own)[0, 0])
                raise RecordError(
                    f"neg_ids: query {int(job.query_ids[i])}'s own sample is among its in-batch "
                    "negatives; its other view is its positive, never a negative"
                )

    # -- worker thread ---------------------------------------------------------------------
    def _submit(self, job: Callable[[], None]) -> None:
        self._raise_if_failed()
        if self._closed:
            raise RecordError("the recorder is closed")
        while True:
            try:
                self._jobs.put(job, timeout=0.1)
                return
            except _queue.Full:
                self._raise_if_failed()

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise LogError(f"writing the run log failed: {self._error}") from self._error

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            if self._error is not None:
                continue
            try:
                job()
            except BaseException as e:  # surfaced in the training thread
                self._error = e

    def _ranks(self, k: int) -> np.ndarray:
        if k not in self._rank_cache:
            self._rank_cache[k] = np.arange(1, k + 1, dtype=np.int32)
        return self._rank_cache[k]

    def _write_pairs(self, job: _PairsJob) -> None:
        q, k = job.l_neg.shape
        order = self._rank_order(job.l_neg)  # (Q, K) negative slots, hardest first
        key_steps: Any = None  # None: unknown (null)
        if job.neg_ids.ndim == 1:  # a queue: the same K negatives for every query
            neg_ids = job.neg_ids[order]  # (Q, K)
            if job.neg_key_steps is not None:
                key_steps = _nullable_ids(job.neg_key_steps[order].ravel())
        else:  # (Q, K): each query its own negatives
            neg_ids = np.take_along_axis(job.neg_ids, order, axis=1)
            if job.neg_key_steps is not None:
                key_steps = _nullable_ids(
                    np.take_along_axis(job.neg_key_steps, order, axis=1).ravel()
                )
        if self.negatives == "in_batch":
            key_steps = job.step  # every in-batch key was computed at this step
        sims = np.take_along_axis(job.l_neg, order, axis=1)  # (Q, K), non-increasing
        if job.mask is None:
            in_band = np.ones(q * k, dtype=bool)
            n_in_band = np.full(q, k, dtype=np.int32)
        else:
            in_band = np.take_along_axis(job.mask, order, axis=1).ravel()
            n_in_band = job.mask.sum(axis=1).astype(np.int32)
        self.writer.write(
            "pairs",
            {
                "step": job.step,
                "epoch": job.epoch,
                "query_id": np.repeat(job.query_ids, k),
                "neg_id": _nullable_ids(neg_ids.ravel()),
                "rank": np.tile(self._ranks(k), q),
                "similarity": sims.ravel().astype(np.float16),
                "in_band": in_band,
                "key_step": key_steps,
            },
        )
        self.writer.write(
            "queries",
            {
                "step": job.step,
                "epoch": job.epoch,
                "query_id": job.query_ids,
                "label": job.labels,
                "pos_similarity": job.l_pos,
                "loss": job.losses,
                "n_in_band": n_in_band,
            },
        )


@dataclass(frozen=True)
class _PairsJob:
    """One logged step's data, on the CPU, for the worker thread (Q logged queries)."""

    step: int
    epoch: int
    query_ids: np.ndarray  # (Q,) sample ids
    labels: np.ndarray  # (Q,) class labels
    neg_ids: np.ndarray  # (K,) or (Q, K) sample ids of the negatives, -1 = no sample
    neg_key_steps: np.ndarray | None  # like neg_ids: step that enqueued each key, -1 = unknown
    l_neg: np.ndarray  # (Q, K) float32 similarities
    mask: np.ndarray | None  # (Q, K) bool, None = all kept
    l_pos: np.ndarray  # (Q,) float32
    losses: np.ndarray  # (Q,) float32

    def _narrowed(self, *, in_batch: bool) -> _PairsJob:
        """Ids and key steps as int32, labels as int16 (after the range checks); in-batch key
        steps dropped (they are the step)."""
        key_steps = self.neg_key_steps
        return _PairsJob(
            step=self.step,
            epoch=self.epoch,
            query_ids=self.query_ids.astype(np.int32),
            labels=self.labels.astype(np.int16),
            neg_ids=self.neg_ids.astype(np.int32),
            neg_key_steps=None if in_batch or key_steps is None else key_steps.astype(np.int32),
            l_neg=self.l_neg,
            mask=self.mask,
            l_pos=self.l_pos,
            losses=self.losses,
        )


class _Rows:
    """Takes the chosen rows of a tensor (on its device, then to the CPU) or of an array."""

    def __init__(self, sel: torch.Tensor) -> None:
        self.sel = sel  # (Q,) CPU int64
        self._on: dict[Any, torch.Tensor] = {}

    def __call__(self, x: Array, dtype: Any = None) -> np.ndarray:
        if _is_tensor(x):
            device = x.device
            if device not in self._on:
                self._on[device] = self.sel.to(device)
            rows = x.detach().index_select(0, self._on[device])
            if dtype is np.float32:
                rows = rows.float()
            return rows.cpu().numpy()
        rows = np.asarray(x)[self.sel.numpy()]
        return rows.astype(dtype) if dtype is not None else rows


def _cpu(x: Array) -> np.ndarray:
    if _is_tensor(x):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def _is_tensor(x: Any) -> bool:
    return type(x).__module__.split(".")[0] == "torch" and hasattr(x, "detach")


def _shape(name: str, x: Any) -> tuple[int, ...]:
    shape = getattr(x, "shape", None)
    if shape is None:
        try:
            shape = np.shape(x)
        except ValueError as e:  # ragged lists
            raise RecordError(f"{name}: not an array ({e})") from e
    return tuple(int(d) for d in shape)


def _dtype(name: str, x: Any, kind: str) -> None:
    """Check that x holds floats, integers or booleans."""
    if _is_tensor(x):
        dt = x.dtype
        is_bool = str(dt) == "torch.bool"
        is_float = bool(dt.is_floating_point)
        is_int = not is_bool and not is_float and not dt.is_complex
    else:
        dt = np.asarray(x).dtype
        is_bool = dt == np.bool_
        is_float = np.issubdtype(dt, np.floating)
        is_int = np.issubdtype(dt, np.integer)
    ok = {"float": is_float, "int": is_int, "bool": is_bool}[kind]
    if not ok:
        want = {"float": "floating-point", "int": "integer", "bool": "boolean"}[kind]
        raise RecordError(f"{name}: expected {want} values, got dtype {dt}")


def _index(name: str, value: Any) -> int:
    if isinstance(value, bool):
        raise RecordError(f"{name}: expected an integer >= 0, got {value!r}")
    try:
        i = operator.index(value)
    except TypeError as e:
        raise RecordError(f"{name}: expected an integer >= 0, got {value!r}") from e
    if i < 0:
        raise RecordError(f"{name}: expected an integer >= 0, got {i}")
    return i


def _in_range(name: str, values: np.ndarray, lo: int, hi: int | None, what: str) -> None:
    """All values in lo..hi-1 (hi None: no upper bound)."""
    if values.size == 0:
        return
    vmin, vmax = int(values.min()), int(values.max())
    if vmin < lo or (hi is not None and vmax >= hi):
        bad = vmin if vmin < lo else vmax
        allowed = f"{lo}..{hi - 1}" if hi is not None else f">= {lo}"
        raise RecordError(f"{name}: {bad} is not in {allowed} ({what})")


def _first_duplicate(ids: np.ndarray) -> int:
    values, counts = np.unique(ids, return_counts=True)
    return int(values[counts > 1][0])


def _summary(loss: Any, losses: Array, pos: Array, neg: Array) -> Any:
    """(3,) loss, mean positive and mean negative similarity: device tensors stay on the
    device (read at flush), arrays become float32."""
    if _is_tensor(pos):
        import torch

        ref = pos.detach()
        loss_t = losses.detach().float().mean() if loss is None else torch.as_tensor(loss)
        return torch.stack(
            [
                loss_t.detach().float().to(ref.device).reshape(()),
                ref.float().mean(),
                neg.detach().float().mean(),
            ]
        )
    mean_loss = np.mean(_cpu(losses)) if loss is None else _cpu(loss)
    return np.array(
        [float(mean_loss), np.mean(_cpu(pos)), np.mean(_cpu(neg), dtype=np.float64)], np.float32
    )


def _stack(summaries: list[Any]) -> np.ndarray:
    """(S, 3) float32 from per-step (3,) tensors (moved to the CPU together) or arrays."""
    if all(_is_tensor(s) for s in summaries):
        import torch

        return torch.stack(summaries).float().cpu().numpy()
    return np.stack([_cpu(s).astype(np.float32) for s in summaries])


def _device_of(x: Any) -> str:
    return str(x.device) if _is_tensor(x) else "cpu"


def _nullable_ids(ids: np.ndarray) -> Any:
    """int32 sample ids (or key steps) as an Arrow array with nulls where the value is -1 (a
    queue's initial random key, or unknown)."""
    import pyarrow as pa

    ids32 = ids.astype(np.int32)
    missing = ids32 < 0
    if not missing.any():
        return pa.array(ids32, pa.int32())
    return pa.array(ids32, pa.int32(), mask=missing)


# -- create's checks and tables ---------------------------------------------------------------
def _check_settings(negatives: str, k: int, every: int, queries: int) -> None:
    if negatives not in LAYOUTS:
        raise RecordError(
            f"negatives: {negatives!r} is not one of {', '.join(LAYOUTS)} (a queue or memory "
            "bank, or the other samples of the batch)"
        )
    for name, value, lowest in (
        ("negatives_per_query", k, 1),
        ("every", every, 1),
        ("queries", queries, 0),
    ):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < lowest:
            raise RecordError(f"{name}: expected an integer >= {lowest}, got {value!r}")


def _negatives_per_query(negatives: str, k: int | None, queue_size: int | None) -> int:
    if (k is None) == (queue_size is None):
        raise RecordError(
            "negatives_per_query: give exactly one of negatives_per_query and queue_size (K)"
        )
    if queue_size is not None and negatives != "queue":
        raise RecordError(
            "queue_size: only for negatives='queue'; give in-batch negatives' K as "
            "negatives_per_query"
        )
    return k if k is not None else queue_size  # type: ignore[return-value]


def _class_infos(classes: Sequence[ClassInfo | str]) -> tuple[ClassInfo, ...]:
    if isinstance(classes, str) or not len(classes):
        raise RecordError("classes: expected a non-empty sequence of ClassInfo or class names")
    if all(isinstance(c, str) for c in classes):
        names = tuple(str(c) for c in classes)
        for table in (CIFAR10_CLASSES, CIFAR100_CLASSES):
            if names == tuple(c.name for c in table):
                return table
        return tuple(
            ClassInfo(i, name, None, name if is_wnid(name) else None)
            for i, name in enumerate(names)
        )
    infos = []
    for i, c in enumerate(classes):
        if not isinstance(c, ClassInfo):
            raise RecordError(f"classes: item {i} is {type(c).__name__}, not ClassInfo or str")
        if c.label != i:
            raise RecordError(f"classes: item {i} has label {c.label}; list labels 0..C-1 in order")
        infos.append(c)
    return tuple(infos)


def _labels(name: str, labels: Array, num_classes: int) -> np.ndarray:
    values = _cpu(labels)
    if values.ndim != 1 or values.size == 0:
        raise RecordError(f"{name}: expected a non-empty 1-D array (one label per sample_id)")
    _dtype(name, values, "int")
    _in_range(name, values, 0, num_classes, f"class labels of the {num_classes} classes")
    return values.astype(np.int64)


def _samples_columns(train: np.ndarray, test: np.ndarray | None) -> dict[str, Any]:
    splits = [("train", train)] + ([("test", test)] if test is not None else [])
    return {
        "sample_id": np.concatenate([np.arange(len(v), dtype=np.int32) for _, v in splits]),
        "split": np.concatenate([np.full(len(v), s, dtype=object) for s, v in splits]),
        "label": np.concatenate([v for _, v in splits]).astype(np.int16),
    }


def _classes_columns(classes: Sequence[ClassInfo]) -> dict[str, Any]:
    return {
        "label": np.array([c.label for c in classes], dtype=np.int16),
        "name": np.array([c.name for c in classes], dtype=object),
        "synset": np.array([c.synset for c in classes], dtype=object),
        "wnid": np.array([c.wnid for c in classes], dtype=object),
    }


def _read_train_labels(run_dir: Path) -> np.ndarray | None:
    """label[sample_id] of the run's train samples (-1 where none), or None."""
    import pyarrow.parquet as pq

    files = sorted((run_dir / "samples").glob("*.parquet"))
    if not files:
        return None
    table = pq.read_table(files, columns=["sample_id", "split", "label"])
    split = table.column("split").to_numpy(zero_copy_only=False)
    ids = table.column("sample_id").to_numpy()[split == "train"]
    labels = table.column("label").to_numpy()[split == "train"]
    if not len(ids):
        return None
    out = np.full(int(ids.max()) + 1, -1, np.int64)
    out[ids] = labels
    return out


def _versions() -> dict[str, str]:
    """Versions of hardstat and its main dependencies, read from package metadata (no imports)."""
    import platform
    from importlib import metadata

    import hardstat

    out = {"hardstat": hardstat.__version__, "python": platform.python_version()}
    for package in ("torch", "torchvision", "numpy", "pyarrow"):
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return out
