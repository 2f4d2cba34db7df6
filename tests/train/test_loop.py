"""End-to-end tests of the training loop on the tiny preset (seconds on a CPU)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from hardstat import runs  # noqa: E402
from hardstat.config import preset  # noqa: E402
from hardstat.errors import (  # noqa: E402
    CheckpointError,
    ConfigError,
    LogError,
    RunError,
    RunInUseError,
    WriteError,
)
from hardstat.train import model as model_module  # noqa: E402
from hardstat.train.checkpoint import checkpoint_path, load_checkpoint  # noqa: E402
from hardstat.train.loop import train  # noqa: E402
from hardstat.train.queue import KeyQueue  # noqa: E402

TINY = preset("tiny").replace(**{"optim.epochs": 2, "threads": 2})


def sql(query: str, *params: object) -> list[tuple]:
    return duckdb.connect().execute(query, list(params)).fetchall()


@dataclass
class Ledger:
    """What the model did, recorded independently of the queue's own provenance buffers."""

    queries: list[torch.Tensor] = field(default_factory=list)  # per step: (B, C) queries
    enqueued: list[tuple[int, torch.Tensor, torch.Tensor]] = field(default_factory=list)


@pytest.fixture(scope="module")
def recorded_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Ledger]:
    ledger = Ledger()
    original_sims = model_module.similarities
    original_enqueue = KeyQueue.enqueue

    def record_sims(q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor):  # type: ignore[no-untyped-def]
        ledger.queries.append(q.detach().float().clone())
        return original_sims(q, k, queue)

    def record_enqueue(self, keys, sample_ids, labels, step):  # type: ignore[no-untyped-def]
        ledger.enqueued.append((step, sample_ids.clone(), keys.detach().float().clone()))
        return original_enqueue(self, keys, sample_ids, labels, step)

    mp = pytest.MonkeyPatch()
    mp.setattr(model_module, "similarities", record_sims)
    mp.setattr(KeyQueue, "enqueue", record_enqueue)
    run_dir = tmp_path_factory.mktemp("runs") / "full"
    try:
        result = train(TINY, run_dir, progress=False)
    finally:
        mp.undo()
    assert not result.interrupted and result.steps_done == 16
    return run_dir, ledger


def test_run_directory_and_manifest(recorded_run: tuple[Path, Ledger]) -> None:
    run_dir, _ = recorded_run
    m = runs.read_manifest(run_dir)
    assert m["status"] == "finished" and m["steps_done"] == 16 and m["epochs_done"] == 2
    assert m["queue_size"] == 256 and m["band"] == "0-100" and m["band_kept"] == 256
    assert m["config"]["optim"]["epochs"] == 2 and m["versions"]["torch"] == torch.__version__
    for table in ("pairs", "queries", "steps", "evals", "samples", "classes"):
        assert list((run_dir / table).glob("*.parquet")), table


def test_ranks_are_permutations_and_rank_one_is_most_similar(
    recorded_run: tuple[Path, Ledger],
) -> None:
    run_dir, _ = recorded_run
    pairs = f"'{run_dir}/pairs/*.parquet'"
    bad = sql(
        f"""SELECT step, query_id FROM {pairs} GROUP BY step, query_id
            HAVING count(*) != 256 OR count(DISTINCT rank) != 256
                OR min(rank) != 1 OR max(rank) != 256"""
    )
    assert bad == []
    n_queries = sql(f"SELECT count(DISTINCT (step, query_id)) FROM {pairs}")[0][0]
    assert n_queries == 8 * 16  # logged steps 0, 2, ..., 14 with 16 queries each
    # similarity never increases with rank within a query (stored float16)
    inversions = sql(
        f"""SELECT count(*) FROM (
              SELECT similarity - lag(similarity) OVER (PARTITION BY step, query_id ORDER BY rank)
                AS d FROM {pairs}) WHERE d > 0"""
    )[0][0]
    assert inversions == 0
    top = sql(
        f"""SELECT bool_and(similarity = (SELECT max(similarity) FROM {pairs} p2
                WHERE p2.step = p.step AND p2.query_id = p.query_id))
            FROM {pairs} p WHERE rank = 1"""
    )[0][0]
    assert top


def test_neg_ids_are_the_keys_the_loss_saw(recorded_run: tuple[Path, Ledger]) -> None:
    """Recompute each logged similarity from the recorded query and enqueued-key embeddings,
    looking up each neg_id in an independent ledger of enqueued batches."""
    run_dir, ledger = recorded_run
    rows = sql(
        f"SELECT step, query_id, neg_id, similarity, key_step FROM '{run_dir}/pairs/*.parquet' "
        "WHERE step IN (2, 6, 14)"
    )
    batch_ids = {step: ids.tolist() for step, ids, _ in ledger.enqueued}
    checked = nulls = 0
    for step, query_id, neg_id, sim, key_step in rows:
        if neg_id is None:
            assert key_step is None  # a random initial key has no provenance
            nulls += 1
            continue
        # the last batch before `step` that enqueued this sample id
        source = max(t for t, ids, _ in ledger.enqueued if t < step and neg_id in ids.tolist())
        assert key_step == source  # the logged key provenance is that batch's step
        key = ledger.enqueued[source][2][batch_ids[source].index(neg_id)]
        q = ledger.queries[step][batch_ids[step].index(query_id)]
        assert abs(float(q @ key) - sim) < 2e-3
        checked += 1
    # K = 256, B = 64: the queue is full of real keys from step 4 on; step 2 has 128 random slots
    assert nulls == 16 * 128
    assert checked == 3 * 16 * 256 - nulls
    # the logged negatives of a step are exactly the keys enqueued in the K/B steps before it
    for step in (6, 14):
        logged = {
            r[0]
            for r in sql(
                f"SELECT DISTINCT neg_id FROM '{run_dir}/pairs/*.parquet' WHERE step = ?", step
            )
        }
        window = {i for t, ids, _ in ledger.enqueued if step - 4 <= t < step for i in ids.tolist()}
        assert logged == window


def test_steps_queries_evals_samples(recorded_run: tuple[Path, Ledger]) -> None:
    run_dir, _ = recorded_run
    steps = sql(f"SELECT step, logged FROM '{run_dir}/steps/*.parquet' ORDER BY step")
    assert [s for s, _ in steps] == list(range(16))
    assert [s for s, logged in steps if logged] == list(range(0, 16, 2))
    q = sql(f"SELECT count(*), min(n_in_band), max(n_in_band) FROM '{run_dir}/queries/*.parquet'")
    assert q == [(8 * 16, 256, 256)]
    evals = sql(f"SELECT epoch, kind, top1 FROM '{run_dir}/evals/*.parquet' ORDER BY epoch")
    assert [(e, k) for e, k, _ in evals] == [(0, "knn"), (1, "knn")]
    assert evals[-1][2] > 0.2  # 10 classes: chance is 0.1
    samples = sql(
        f"SELECT split, count(*) FROM '{run_dir}/samples/*.parquet' GROUP BY 1 ORDER BY 1"
    )
    assert samples == [("test", 256), ("train", 512)]


def test_band_run_logs_in_band_counts(tmp_path: Path) -> None:
    config = TINY.replace(band="0-5", **{"optim.epochs": 1})
    train(config, tmp_path / "band", progress=False)
    pairs = f"'{tmp_path}/band/pairs/*.parquet'"
    # 0-5 of K = 256 keeps ranks 1..13 (ceil(12.8) = 13)
    per_query = sql(
        f"SELECT DISTINCT count(*) FILTER (in_band), max(rank) FILTER (in_band) "
        f"FROM {pairs} GROUP BY step, query_id"
    )
    assert per_query == [(13, 13)]
    assert sql(f"SELECT DISTINCT n_in_band FROM '{tmp_path}/band/queries/*.parquet'") == [(13,)]
    assert runs.read_manifest(tmp_path / "band")["band_kept"] == 13


def test_interrupted_and_resumed_run_logs_the_same_steps(
    recorded_run: tuple[Path, Ledger], tmp_path: Path
) -> None:
    full, _ = recorded_run
    part = tmp_path / "resumed"
    first = train(TINY, part, progress=False, stop_after=5)  # mid-epoch (8 steps per epoch)
    assert first.interrupted and first.steps_done == 5
    assert runs.read_manifest(part)["status"] == "interrupted"
    # stopping exactly at an epoch's end still runs that epoch's evaluation
    again = train(TINY, part, resume=True, progress=False, stop_after=8)
    assert again.interrupted and again.steps_done == 8
    second = train(TINY, part, resume=True, progress=False)
    assert not second.interrupted and second.steps_done == 16
    for table, key in [
        ("pairs", "step, query_id, rank"),
        ("queries", "step, query_id"),
        ("steps", "step"),
        ("evals", "step, epoch, kind, top1"),
    ]:
        a = sql(f"SELECT {key} FROM '{full}/{table}/*.parquet' ORDER BY {key}")
        b = sql(f"SELECT {key} FROM '{part}/{table}/*.parquet' ORDER BY {key}")
        assert a == b, table
    # CPU training is deterministic: the resumed log is identical, values and key provenance
    # included
    cols = "step, query_id, neg_id, rank, similarity, in_band, key_step"
    a = sql(f"SELECT {cols} FROM '{full}/pairs/*.parquet' ORDER BY step, query_id, rank")
    b = sql(f"SELECT {cols} FROM '{part}/pairs/*.parquet' ORDER BY step, query_id, rank")
    assert a == b
    # and the queue with its provenance ends up the same
    sa = load_checkpoint(checkpoint_path(full))["model"]
    sb = load_checkpoint(checkpoint_path(part))["model"]
    for name in ("queue.sample_ids", "queue.labels", "queue.steps", "queue.ptr"):
        assert torch.equal(sa[name], sb[name]), name
    assert torch.allclose(sa["queue.keys"], sb["queue.keys"])


def test_crash_after_checkpoint_sets_aside_later_files(tmp_path: Path) -> None:
    run_dir = tmp_path / "crash"
    train(TINY, run_dir, progress=False, stop_after=4)
    ckpt = checkpoint_path(run_dir)
    saved = ckpt.read_bytes()
    train(TINY, run_dir, resume=True, progress=False, stop_after=12)
    ckpt.write_bytes(saved)  # as if the process died after step 12 with the step-4 checkpoint
    train(TINY, run_dir, resume=True, progress=False)
    steps = sql(f"SELECT step, count(*) FROM '{run_dir}/steps/*.parquet' GROUP BY 1 ORDER BY 1")
    assert steps == [(s, 1) for s in range(16)]
    assert list((run_dir / "superseded").rglob("*.parquet"))  # moved, not deleted


def test_existing_run_directory_is_refused(recorded_run: tuple[Path, Ledger]) -> None:
    run_dir, _ = recorded_run
    before = sorted(p.name for p in (run_dir / "pairs").iterdir())
    with pytest.raises(RunError, match="already exists"):
        train(TINY, run_dir, progress=False)
    assert sorted(p.name for p in (run_dir / "pairs").iterdir()) == before


def test_resume_rejects_other_config_and_bad_checkpoint(tmp_path: Path) -> None:
    run_dir = tmp_path / "r"
    train(TINY, run_dir, progress=False, stop_after=2)
    with pytest.raises(ConfigError, match="differs"):
        train(TINY.replace(seed=5), run_dir, resume=True, progress=False)
    checkpoint_path(run_dir).write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="could not be loaded safely"):
        train(TINY, run_dir, resume=True, progress=False)
    with pytest.raises(RunError, match="does not exist"):
        train(TINY, tmp_path / "missing", resume=True, progress=False)


def test_runs_of_an_older_release_are_analysable_but_not_resumed(tmp_path: Path) -> None:
    run_dir = tmp_path / "r"
    train(TINY, run_dir, progress=False, stop_after=2)
    state = load_checkpoint(checkpoint_path(run_dir))
    torch.save({**state, "format": "hardstat-checkpoint-1"}, checkpoint_path(run_dir))
    with pytest.raises(
        CheckpointError, match="format hardstat-checkpoint-1, this hardstat resumes"
    ):
        train(TINY, run_dir, resume=True, progress=False)
    assert load_checkpoint(checkpoint_path(run_dir), resume=False)["step"] == 2  # evaluation
    manifest = json.loads((run_dir / "manifest.json").read_text())
    manifest["schema_version"] = 1
    (run_dir / "manifest.json").write_text(json.dumps(manifest))
    before = sorted((p.name, p.stat().st_mtime_ns) for p in run_dir.rglob("*"))
    with pytest.raises(RunError, match="can be analysed but not continued"):
        train(TINY, run_dir, resume=True, progress=False)
    assert sorted((p.name, p.stat().st_mtime_ns) for p in run_dir.rglob("*")) == before


def test_untrusted_checkpoint_with_code_is_refused(tmp_path: Path) -> None:
    import pickle

    class Evil:
        def __reduce__(self):  # type: ignore[no-untyped-def]
            return (print, ("pwned",))

    path = tmp_path / "ckpt.pt"
    torch.save({"format": "hardstat-checkpoint-1", "x": Evil()}, path, pickle_protocol=2)
    with pytest.raises(CheckpointError):
        load_checkpoint(path)
    assert pickle  # imported for the protocol constant's clarity


def test_manifest_config_round_trips(recorded_run: tuple[Path, Ledger]) -> None:
    run_dir, _ = recorded_run
    from hardstat.config import TrainConfig

    config = TrainConfig.from_dict(json.loads(json.dumps(runs.read_manifest(run_dir)["config"])))
    assert config == TINY


def test_symmetric_loss_runs(tmp_path: Path) -> None:
    config = TINY.replace(**{"model.symmetric": True, "optim.epochs": 1, "model.queue_size": 256})
    result = train(config, tmp_path / "sym", progress=False)
    assert result.steps_done == 8
    state = load_checkpoint(checkpoint_path(tmp_path / "sym"))["model"]
    ids = state["queue.sample_ids"]
    assert (ids >= 0).all()  # 8 steps x 2 x 64 keys filled all 256 slots
    assert np.isin(ids.numpy(), np.arange(512)).all()


def test_resume_and_eval_from_another_directory_with_relative_dataset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hardstat.train.data import synthetic_images
    from hardstat.train.posthoc import evaluate_run

    images, labels = synthetic_images(256, seed=0)  # (N, 3, 32, 32) uint8
    data = tmp_path / "work" / "data"
    data.mkdir(parents=True)
    np.savez(data / "train.npz", images=images.transpose(0, 2, 3, 1), labels=labels)
    np.savez(data / "test.npz", images=images[:64].transpose(0, 2, 3, 1), labels=labels[:64])
    config = TINY.replace(**{"data.dataset": "npz:data", "optim.epochs": 1})
    monkeypatch.chdir(tmp_path / "work")
    run_dir = tmp_path / "runs" / "rel"
    train(config, run_dir, progress=False, stop_after=2)
    monkeypatch.chdir(tmp_path)  # "npz:data" no longer resolves from here
    assert train(config, run_dir, resume=True, progress=False).steps_done == 4
    (result,) = evaluate_run(run_dir, linear=True, linear_epochs=2)
    assert result.kind == "linear" and 0 <= result.top1 <= 1


# -- faults: a second trainer, crashes, broken streams, crafted checkpoints ----------------------
def _files(run_dir: Path) -> list[tuple[str, int, int]]:
    return sorted(
        (str(p.relative_to(run_dir)), p.stat().st_size, p.stat().st_mtime_ns)
        for p in run_dir.rglob("*")
        if p.is_file() and p.name != runs.LOCK_FILE
    )


def test_a_second_trainer_of_a_run_is_refused(tmp_path: Path) -> None:
    run_dir = tmp_path / "r"
    train(TINY, run_dir, progress=False, stop_after=2)
    before = _files(run_dir)
    with runs.RunLock(run_dir):  # as if another `train --resume` were running
        with pytest.raises(RunInUseError, match=r"in use by process \d+ on host"):
            train(TINY, run_dir, resume=True, progress=False)
        with pytest.raises(RunError, match=r"in use by process \d+ .*choose another --name"):
            train(TINY, tmp_path / "r", progress=False)  # nor does a new run start there
    assert _files(run_dir) == before
    assert train(TINY, run_dir, resume=True, progress=False, stop_after=3).steps_done == 3


def test_a_crash_before_the_first_epoch_end_is_resumable(
    recorded_run: tuple[Path, Ledger], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A new run checkpoints before its first step, so a crash in the first epoch loses no
    more than that epoch's steps so far, and the resumed log is the uninterrupted one."""
    from hardstat.record import Recorder

    full, _ = recorded_run
    run_dir = tmp_path / "early"
    original = Recorder.log_step

    def crash_at_step_3(self, step, *args, **kwargs):  # type: ignore[no-untyped-def]
        if step == 3:
            raise OSError("simulated crash")
        return original(self, step, *args, **kwargs)

    monkeypatch.setattr(Recorder, "log_step", crash_at_step_3)
    with pytest.raises(OSError, match="simulated crash"):
        train(TINY, run_dir, progress=False)
    monkeypatch.undo()
    assert load_checkpoint(checkpoint_path(run_dir))["step"] == 0
    assert runs.effective_status(run_dir, runs.read_manifest(run_dir)) == "crashed"
    assert train(TINY, run_dir, resume=True, progress=False).steps_done == 16
    cols = "step, query_id, neg_id, rank, similarity, in_band, key_step"
    a = sql(f"SELECT {cols} FROM '{full}/pairs/*.parquet' ORDER BY step, query_id, rank")
    b = sql(f"SELECT {cols} FROM '{run_dir}/pairs/*.parquet' ORDER BY step, query_id, rank")
    assert a == b
    steps = sql(f"SELECT step, count(*) FROM '{run_dir}/steps/*.parquet' GROUP BY 1 ORDER BY 1")
    assert steps == [(s, 1) for s in range(16)]


def test_checkpoints_by_time_bound_the_lost_work(tmp_path: Path) -> None:
    config = TINY.replace(**{"optim.epochs": 1, "checkpoint_minutes": 1e-9})  # every step
    run_dir = tmp_path / "timed"
    train(config, run_dir, progress=False)
    steps = sql(f"SELECT step, count(*) FROM '{run_dir}/steps/*.parquet' GROUP BY 1 ORDER BY 1")
    assert steps == [(s, 1) for s in range(8)]
    assert len(list((run_dir / "steps").glob("*.parquet"))) >= 7  # flushed at each checkpoint


class _BrokenStream:
    """stderr whose reader has gone (a dead `tee`, `2>&1 | head`)."""

    def write(self, text: str) -> int:
        raise BrokenPipeError(32, "Broken pipe")

    def flush(self) -> None:
        raise BrokenPipeError(32, "Broken pipe")

    def isatty(self) -> bool:
        return False


def test_a_broken_stderr_never_stops_training(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.stderr", _BrokenStream())
    result = train(TINY.replace(**{"optim.epochs": 1}), tmp_path / "b", progress=True)
    assert not result.interrupted and result.steps_done == 8
    assert runs.read_manifest(tmp_path / "b")["status"] == "finished"


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda s: s.update(step=-5), "step must be an integer >= 0"),
        (lambda s: s.update(step=10_000), "beyond the run's 16 steps"),
        (
            lambda s: s["processes"][0]["logger"]["writer"]["committed"].append("steps/x.parquet"),
            "which is missing",
        ),
        (lambda s: s["model"].update({"queue.keys": torch.zeros(3, 3)}), "does not fit this run"),
        (lambda s: s["model"].pop("queue.ptr"), "does not fit this run"),
        (lambda s: s.update(config="{broken"), "holds an invalid config"),
        (
            lambda s: s["processes"][0].update(gen_aug=torch.zeros(3, dtype=torch.uint8)),
            "does not fit this run",
        ),
        (lambda s: s["processes"][0]["logger"].pop("writer"), "logger.writer"),
    ],
)
def test_crafted_checkpoints_are_refused_before_training(
    tmp_path: Path, edit: Callable[[dict], object], message: str
) -> None:
    run_dir = tmp_path / "r"
    train(TINY, run_dir, progress=False, stop_after=2)
    state = load_checkpoint(checkpoint_path(run_dir))
    edit(state)
    torch.save(state, checkpoint_path(run_dir))
    before = _files(run_dir)
    with pytest.raises(CheckpointError, match=message) as e:
        train(TINY, run_dir, resume=True, progress=False)
    assert "\n" not in str(e.value)
    assert _files(run_dir) == before


def test_resume_without_a_manifest_dataset_is_one_line(tmp_path: Path) -> None:
    run_dir = tmp_path / "r"
    train(TINY, run_dir, progress=False, stop_after=2)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    del manifest["dataset"]
    (run_dir / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(LogError, match="field 'dataset' is missing"):
        train(TINY, run_dir, resume=True, progress=False)


def test_read_only_run_directory_on_resume(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os as _os

    run_dir = tmp_path / "r"
    train(TINY, run_dir, progress=False, stop_after=2)
    real_open = _os.open

    def read_only(path, flags, *args, **kwargs):  # type: ignore[no-untyped-def]
        if str(path).startswith(str(run_dir)) and flags & (_os.O_WRONLY | _os.O_RDWR):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(_os, "open", read_only)
    with pytest.raises(WriteError, match=r"cannot write .*\.lock \(Permission denied\)"):
        train(TINY, run_dir, resume=True, progress=False)


def test_disk_full_while_writing_the_log_keeps_the_run_resumable(
    recorded_run: tuple[Path, Ledger], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A log part that cannot be written (ENOSPC at its rename) ends training with one line
    that says how to continue; the resumed run's log is the uninterrupted one."""
    import os as _os

    from hardstat import logwriter

    full, _ = recorded_run
    run_dir = tmp_path / "full-disk"
    real_replace = _os.replace
    calls = {"n": 0}

    def replace(src, dst):  # type: ignore[no-untyped-def]
        if "/steps/" in str(dst):
            calls["n"] += 1
            if calls["n"] == 2:  # the second steps part: at the end of the first epoch
                raise OSError(28, "No space left on device")
        return real_replace(src, dst)

    monkeypatch.setattr(logwriter.os, "replace", replace)
    with pytest.raises(LogError) as e:
        train(TINY, run_dir, progress=False)
    monkeypatch.undo()
    message = str(e.value)
    assert "No space left on device" in message and "hardstat train --resume" in message
    assert "\n" not in message
    assert train(TINY, run_dir, resume=True, progress=False).steps_done == 16
    cols = "step, query_id, neg_id, rank, similarity, in_band, key_step"
    a = sql(f"SELECT {cols} FROM '{full}/pairs/*.parquet' ORDER BY step, query_id, rank")
    b = sql(f"SELECT {cols} FROM '{run_dir}/pairs/*.parquet' ORDER BY step, query_id, rank")
    assert a == b
    steps = sql(f"SELECT step, count(*) FROM '{run_dir}/steps/*.parquet' GROUP BY 1 ORDER BY 1")
    assert steps == [(s, 1) for s in range(16)]


def test_a_copied_run_resumes_under_its_own_name(tmp_path: Path) -> None:
    """The `run` column of a resumed run is the manifest's run name, also when the directory
    was copied or renamed (readers refuse files whose `run` differs from the manifest's)."""
    import shutil

    from hardstat.analysis import logs

    train(TINY, tmp_path / "orig", progress=False, stop_after=4)
    shutil.copytree(tmp_path / "orig", tmp_path / "copy")
    train(TINY, tmp_path / "copy", resume=True, progress=False, stop_after=12)
    con = logs.connect(logs.find_runs([tmp_path / "copy"]))
    names = logs.query(con, "SELECT DISTINCT run FROM pairs UNION SELECT DISTINCT run FROM steps")
    assert names.column("run").to_pylist() == ["orig"]
