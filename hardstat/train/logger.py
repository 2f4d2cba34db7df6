"""The rank logger: one call per training step; decides cadence, moves data off the device and
ranks and writes in a background thread.

At a logged step it takes ``queries`` queries of the batch (chosen with its own seeded
generator; 0 = all), copies their similarities to every queue negative, the band mask and the
queue's sample ids to the CPU, and hands them to a worker thread that ranks each query's
negatives (:func:`hardstat.train.negatives.rank_order`) and appends ``pairs`` rows in rank order
and ``queries`` rows. Every step adds one ``steps`` row (buffered, written at flush). The
training loop never branches on whether logging is on: with logging disabled the cadence simply
never fires.
"""

from __future__ import annotations

import queue as _queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from hardstat.errors import LogError
from hardstat.logwriter import RunLogWriter
from hardstat.train.model import StepOutput
from hardstat.train.negatives import rank_order


class RankLogger:
    def __init__(
        self,
        writer: RunLogWriter,
        *,
        enabled: bool,
        every: int,
        queries: int,
        seed: int,
        record_steps: bool = True,
        max_pending: int = 4,
    ) -> None:
        self.writer = writer
        self.enabled, self.every, self.queries = enabled, every, queries
        self.record_steps = record_steps  # False in all but the main training process
        self.generator = torch.Generator().manual_seed(seed + 7919)
        self._steps: dict[str, list[Any]] = {
            k: []
            for k in (
                "step",
                "epoch",
                "loss",
                "lr",
                "pos_similarity",
                "neg_similarity",
                "seconds",
                "logged",
            )
        }
        self._jobs: _queue.Queue[Callable[[], None] | None] = _queue.Queue(max_pending)
        self._error: BaseException | None = None
        self._rank_cache: dict[int, np.ndarray] = {}
        self._thread = threading.Thread(target=self._work, name="hardstat-logger", daemon=True)
        self._thread.start()

    # -- called by the training loop -------------------------------------------------------
    def logs(self, step: int) -> bool:
        return self.enabled and step % self.every == 0

    def log_step(
        self,
        step: int,
        epoch: int,
        out: StepOutput,
        query_ids: torch.Tensor,
        labels: torch.Tensor,
        lr: float,
        started: float,
        summary: torch.Tensor | None = None,
    ) -> None:
        """Record step ``step`` (and log its pairs at a logged step).

        ``started`` is the ``time.perf_counter()`` value at the step's start: the step's
        ``seconds`` run from there to the end of this call, so they include handing the logged
        pairs to the worker (and waiting for it when it falls behind). ``summary`` is the (3,)
        loss, mean positive and mean negative similarity over the global batch (default: this
        process's ``out``).
        """
        logged = self.logs(step)
        if logged:
            self._log_pairs(step, epoch, out, query_ids, labels)
        if not self.record_steps:
            return
        if summary is None:
            summary = torch.stack([out.loss.detach(), out.l_pos.mean(), out.l_neg.mean()])
        s = self._steps
        s["step"].append(step)
        s["epoch"].append(epoch)
        # device scalars: moved to the CPU together at flush, so a GPU step never waits here
        s["loss"].append(summary[0])
        s["lr"].append(lr)
        s["pos_similarity"].append(summary[1])
        s["neg_similarity"].append(summary[2])
        s["logged"].append(logged)
        s["seconds"].append(time.perf_counter() - started)

    def _log_pairs(
        self,
        step: int,
        epoch: int,
        out: StepOutput,
        query_ids: torch.Tensor,
        labels: torch.Tensor,
    ) -> None:
        n = out.l_neg.shape[0]
        if 0 < self.queries < n:
            sel = torch.randperm(n, generator=self.generator)[: self.queries].sort().values
        else:
            sel = torch.arange(n)
        sel_dev = sel.to(out.l_neg.device)
        l_neg = out.l_neg.index_select(0, sel_dev).float().cpu().numpy()  # (Q, K)
        mask = None if out.mask is None else out.mask.index_select(0, sel_dev).cpu().numpy()
        job = _PairsJob(
            step=step,
            epoch=epoch,
            query_ids=query_ids.index_select(0, sel_dev).cpu().numpy().astype(np.int32),
            labels=labels.index_select(0, sel_dev).cpu().numpy().astype(np.int16),
            neg_ids=out.neg_ids.cpu().numpy(),
            neg_key_steps=out.neg_key_steps.cpu().numpy(),
            l_neg=l_neg,
            mask=mask,
            l_pos=out.l_pos.index_select(0, sel_dev).float().cpu().numpy(),
            losses=out.losses.index_select(0, sel_dev).float().cpu().numpy(),
        )
        self._submit(lambda: self._write_pairs(job))

    def log_eval(
        self, step: int, epoch: int, kind: str, top1: float, top5: float | None, params: str
    ) -> None:
        row = dict(step=step, epoch=epoch, kind=kind, top1=top1, top5=top5, params=params)
        self._submit(
            lambda: self.writer.write(
                "evals", {k: np.array([v]) if v is not None else None for k, v in row.items()}
            )
        )

    def write_table(self, table: str, columns: dict[str, Any]) -> None:
        self._submit(lambda: self.writer.write(table, columns))

    def flush(self) -> None:
        """Write everything buffered and publish all open files; returns when on disk."""
        steps = {
            k: torch.stack(v).float().cpu().numpy()
            if v and isinstance(v[0], torch.Tensor)
            else np.array(v)
            for k, v in self._steps.items()
        }
        for v in self._steps.values():
            v.clear()
        if len(steps["step"]):
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
        return {"writer": self.writer.state(), "generator": self.generator.get_state()}

    def load_state(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])

    def close(self) -> None:
        self.flush()
        self._jobs.put(None)
        self._thread.join()

    # -- worker thread ---------------------------------------------------------------------
    def _submit(self, job: Callable[[], None]) -> None:
        self._raise_if_failed()
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
        order = rank_order(job.l_neg)  # (Q, K) queue slots, hardest first
        neg_ids = job.neg_ids[order]  # (Q, K)
        neg_col = _nullable_ids(neg_ids.ravel())
        key_step_col = _nullable_ids(job.neg_key_steps[order].ravel())
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
                "neg_id": neg_col,
                "rank": np.tile(self._ranks(k), q),
                "similarity": sims.ravel().astype(np.float16),
                "in_band": in_band,
                "key_step": key_step_col,
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


def _nullable_ids(ids: np.ndarray) -> Any:
    """int32 sample ids (or key steps) as an Arrow array with nulls where the value is -1 (a
    random initial key)."""
    import pyarrow as pa

    ids32 = ids.astype(np.int32)
    missing = ids32 < 0
    if not missing.any():
        return pa.array(ids32, pa.int32())
    return pa.array(ids32, pa.int32(), mask=missing)


@dataclass(frozen=True)
class _PairsJob:
    """One logged step's data, on the CPU, for the worker thread (Q logged queries)."""

    step: int
    epoch: int
    query_ids: np.ndarray  # (Q,) int32
    labels: np.ndarray  # (Q,) int16
    neg_ids: np.ndarray  # (K,) sample ids of the queue slots, -1 = random initial key
    neg_key_steps: np.ndarray  # (K,) step that enqueued each slot's key, -1 = random initial key
    l_neg: np.ndarray  # (Q, K) float32 similarities
    mask: np.ndarray | None  # (Q, K) bool, None = all kept
    l_pos: np.ndarray  # (Q,) float32
    losses: np.ndarray  # (Q,) float32
