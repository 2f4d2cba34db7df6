"""The public recorder (hardstat.record), driven by hand with known similarities and ids."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

torch = pytest.importorskip("torch")

from hardstat import runs, seeds  # noqa: E402
from hardstat.bands import parse_band  # noqa: E402
from hardstat.classes import CIFAR10_CLASSES, ClassInfo  # noqa: E402
from hardstat.errors import RecordError, RunError  # noqa: E402
from hardstat.negatives import band_mask  # noqa: E402
from hardstat.record import Recorder  # noqa: E402

DEVICES = [
    "cpu",
    pytest.param(
        "cuda",
        marks=[
            pytest.mark.gpu,
            pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
        ],
    ),
]

LABELS = np.arange(20) % 10  # train_labels[sample_id]: 20 samples of the 10 CIFAR-10 classes


def rows(run: Path, table: str, columns: list[str]) -> list[tuple]:
    t = pq.read_table(run / table, columns=columns).to_pydict()
    return list(zip(*(t[c] for c in columns), strict=True))


PAIR_COLUMNS = ["step", "epoch", "query_id", "neg_id", "rank", "similarity", "in_band", "key_step"]


def f16(x: float) -> float:
    return float(np.float16(x))


def new(tmp_path: Path, **kw: object) -> Recorder:
    settings: dict[str, object] = dict(
        negatives="queue",
        negatives_per_query=5,
        train_labels=LABELS,
        classes=CIFAR10_CLASSES,
        every=1,
        queries=0,
        seed=0,
    )
    settings.update(kw)
    return Recorder.create(tmp_path / "run", **settings)  # type: ignore[arg-type]


# -- a queue: the same K negatives for every query ----------------------------------------------
QUEUE_STEP = dict(
    query_ids=[7, 3, 9],
    pos_similarity=[0.95, 0.85, 0.75],
    # slot:           0     1     2     3     4
    neg_similarity=[
        [0.1, 0.9, 0.3, 0.8, -0.2],  # query 7: ranks 1..5 = slots 1, 3, 2, 0, 4
        [0.5, -0.1, 0.7, 0.0, 0.6],  # query 3: slots 2, 4, 0, 3, 1
        [-0.5, -0.4, -0.3, -0.2, -0.1],  # query 9: slots 4, 3, 2, 1, 0
    ],
    neg_ids=[10, 11, 12, -1, 14],  # slot 3 still holds a random initial key
    neg_key_steps=[3, 3, 4, -1, 4],
    in_band=[
        [True, False, False, False, False],  # query 7 used slot 0 only (its rank 4)
        [False, True, False, False, False],  # query 3 used slot 1 (its rank 5)
        [False, False, False, False, True],  # query 9 used slot 4 (its rank 1)
    ],
    losses=[1.0, 2.0, 3.0],
)


def as_inputs(step: dict, device: str, numpy: bool = False) -> dict:
    out = {}
    for name, value in step.items():
        arr = np.asarray(value)
        if arr.dtype == np.float64:
            arr = arr.astype(np.float32)
        out[name] = arr if numpy else torch.as_tensor(arr, device=device)
    return out


@pytest.mark.parametrize("device", DEVICES)
def test_queue_rows_by_hand(tmp_path: Path, device: str) -> None:
    with new(tmp_path) as rec:
        logged = rec.log_step(5, epoch=1, lr=0.03, **as_inputs(QUEUE_STEP, device))
    assert logged
    run = tmp_path / "run"
    expect = []
    by_query = {  # query: (slot of rank 1..5), in-band slot
        7: ([1, 3, 2, 0, 4], 0),
        3: ([2, 4, 0, 3, 1], 1),
        9: ([4, 3, 2, 1, 0], 4),
    }
    ids = QUEUE_STEP["neg_ids"]
    steps = QUEUE_STEP["neg_key_steps"]
    for i, (q, (slots, used)) in enumerate(by_query.items()):
        for rank, slot in enumerate(slots, start=1):
            expect.append(
                (
                    5,
                    1,
                    q,
                    None if ids[slot] == -1 else ids[slot],
                    rank,
                    f16(QUEUE_STEP["neg_similarity"][i][slot]),
                    slot == used,
                    None if steps[slot] == -1 else steps[slot],
                )
            )
    assert rows(run, "pairs", PAIR_COLUMNS) == expect
    assert rows(
        run, "queries", ["step", "query_id", "label", "pos_similarity", "loss", "n_in_band"]
    ) == [
        (5, 7, 7, pytest.approx(0.95), 1.0, 1),
        (5, 3, 3, pytest.approx(0.85), 2.0, 1),
        (5, 9, 9, pytest.approx(0.75), 3.0, 1),
    ]
    (step,) = rows(
        run, "steps", ["step", "epoch", "loss", "lr", "pos_similarity", "neg_similarity", "logged"]
    )
    assert step[:2] == (5, 1) and step[2] == pytest.approx(2.0) and step[3] == pytest.approx(0.03)
    assert step[4] == pytest.approx(0.85)
    assert step[5] == pytest.approx(np.mean(QUEUE_STEP["neg_similarity"]), abs=1e-6)
    assert step[6] is True
    m = runs.read_manifest(run)
    assert m["negatives"] == "queue" and m["queue_size"] == 5 and m["status"] == "finished"
    assert m["steps_done"] == 6 and m["epochs_done"] == 2 and m["device"].startswith(device)
    assert m["config"]["log"] == {"enabled": True, "every": 1, "queries": 0}
    assert rows(run, "classes", ["label", "name", "synset"])[5] == (5, "dog", "dog.n.01")
    assert len(rows(run, "samples", ["sample_id"])) == 20


def test_numpy_and_torch_inputs_write_the_same_rows(tmp_path: Path) -> None:
    for name, numpy in (("t", False), ("n", True)):
        rec = Recorder.create(
            tmp_path / name,
            negatives_per_query=5,
            train_labels=LABELS,
            classes=CIFAR10_CLASSES,
            every=1,
            queries=2,
            seed=3,
        )
        for step in range(4):
            rec.log_step(step + 5, epoch=0, lr=0.1, **as_inputs(QUEUE_STEP, "cpu", numpy))
        rec.close()
    for table, cols in (("pairs", PAIR_COLUMNS), ("queries", ["step", "query_id", "loss"])):
        assert rows(tmp_path / "t", table, cols) == rows(tmp_path / "n", table, cols)
    # 2 of 3 queries per step, chosen by the seeded generator the trainer uses
    g = torch.Generator().manual_seed(seeds.log_queries(3))
    chosen = [torch.randperm(3, generator=g)[:2].sort().values.tolist() for _ in range(4)]
    logged = [q for _, q, _ in rows(tmp_path / "t", "queries", ["step", "query_id", "loss"])]
    assert logged == [QUEUE_STEP["query_ids"][i] for sel in chosen for i in sel]


# -- in-batch negatives: each query its own K ----------------------------------------------------
IN_BATCH_STEP = dict(
    query_ids=[0, 1, 2],
    query_labels=[4, 5, 6],
    pos_similarity=[0.9, 0.8, 0.7],
    neg_similarity=[[0.2, 0.6], [0.4, -0.3], [0.5, 0.1]],
    neg_ids=[[1, 2], [0, 2], [0, 1]],  # the other samples of the batch
    losses=[0.5, 0.6, 0.7],
)


@pytest.mark.parametrize("device", DEVICES)
def test_in_batch_rows_by_hand(tmp_path: Path, device: str) -> None:
    rec = new(tmp_path, negatives="in_batch", negatives_per_query=2, band="0-50")
    inputs = as_inputs(IN_BATCH_STEP, device)
    mask = band_mask(inputs["neg_similarity"], parse_band("0-50"))  # the hardest 1 of 2
    assert mask is not None
    rec.log_step(8, epoch=2, lr=0.1, in_band=mask, **inputs)
    rec.close()
    run = tmp_path / "run"
    assert rows(run, "pairs", PAIR_COLUMNS) == [
        (8, 2, 0, 2, 1, f16(0.6), True, 8),  # key_step = the step itself
        (8, 2, 0, 1, 2, f16(0.2), False, 8),
        (8, 2, 1, 0, 1, f16(0.4), True, 8),
        (8, 2, 1, 2, 2, f16(-0.3), False, 8),
        (8, 2, 2, 0, 1, f16(0.5), True, 8),
        (8, 2, 2, 1, 2, f16(0.1), False, 8),
    ]
    assert rows(run, "queries", ["query_id", "label", "n_in_band"]) == [
        (0, 4, 1),
        (1, 5, 1),
        (2, 6, 1),
    ]
    m = runs.read_manifest(run)
    assert (m["negatives"], m["queue_size"], m["band"], m["band_kept"]) == (
        "in_batch",
        2,
        "0-50",
        1,
    )


def test_cadence_and_steps_rows(tmp_path: Path) -> None:
    rec = new(tmp_path, every=3)
    inputs = as_inputs(QUEUE_STEP, "cpu")
    flags = [rec.log_step(s, epoch=s // 4, lr=0.1, **inputs) for s in range(5, 12)]
    rec.close()
    assert flags == [False, True, False, False, True, False, False]
    run = tmp_path / "run"
    assert rows(run, "steps", ["step", "logged"]) == list(zip(range(5, 12), flags, strict=True))
    assert sorted({s for (s,) in rows(run, "queries", ["step"])}) == [6, 9]


# -- bad input: a one-line error naming the argument, nothing written ----------------------------
def bad_calls() -> list[tuple[str, int, dict]]:
    return [
        ("neg_similarity", 9, {"neg_similarity": [0.1, 0.2, 0.3]}),
        ("neg_similarity", 9, {"neg_similarity": np.zeros((3, 6), np.float32), "in_band": None}),
        ("neg_similarity", 9, {"neg_similarity": np.zeros((3, 5), np.int64)}),
        ("query_ids", 9, {"query_ids": [7, 3]}),
        ("query_ids", 9, {"query_ids": [7, 3, 20]}),  # 20 samples: ids 0..19
        ("query_ids", 9, {"query_ids": [7, 3, 7]}),
        ("query_ids", 9, {"query_ids": [7.0, 3.0, 9.0]}),
        ("pos_similarity", 9, {"pos_similarity": [[0.9, 0.8, 0.7]]}),
        ("losses", 9, {"losses": [1.0, 2.0]}),
        ("neg_ids", 9, {"neg_ids": [10, 11, 12, -1]}),
        ("neg_ids", 9, {"neg_ids": [10, 11, 12, -2, 14]}),
        ("neg_ids", 9, {"neg_ids": [10, 11, 12, 99, 14]}),
        ("neg_key_steps", 9, {"neg_key_steps": [3, 3, 4, -1, 10]}),
        ("neg_key_steps", 9, {"neg_key_steps": [3, 3, 4]}),
        ("in_band", 9, {"in_band": np.ones((3, 5), np.float32)}),
        ("in_band", 9, {"in_band": np.ones((3, 4), bool)}),
        ("query_labels", 9, {"query_labels": [0, 1, 10]}),
        ("step", 4, {}),  # backwards
        ("step", 5, {}),  # the same step again
        ("step", -1, {}),
        ("epoch", 9, {"epoch": 0}),
        ("summary", 9, {"summary": torch.zeros(2)}),
    ]


@pytest.mark.parametrize(("argument", "step", "change"), bad_calls())
def test_bad_input_names_the_argument_and_writes_nothing(
    tmp_path: Path, argument: str, step: int, change: dict
) -> None:
    rec = new(tmp_path)
    good = as_inputs(QUEUE_STEP, "cpu", numpy=True)
    rec.log_step(5, epoch=1, lr=0.1, **good)
    generator = rec.generator.get_state()
    call = {"epoch": 1, "lr": 0.1, **good, **change}
    with pytest.raises(RecordError) as err:
        rec.log_step(step, **call)
    message = str(err.value)
    assert message.startswith(f"{argument}: ") and "\n" not in message, message
    assert torch.equal(rec.generator.get_state(), generator)
    rec.log_step(10, epoch=1, lr=0.1, **good)  # the recorder goes on
    rec.close()
    run = tmp_path / "run"
    assert [s for (s,) in rows(run, "steps", ["step"])] == [5, 10]
    assert sorted({s for (s,) in rows(run, "pairs", ["step"])}) == [5, 10]
    assert len(rows(run, "pairs", ["step"])) == 2 * 3 * 5


def test_in_batch_checks(tmp_path: Path) -> None:
    rec = new(tmp_path, negatives="in_batch", negatives_per_query=2)
    good = as_inputs(IN_BATCH_STEP, "cpu", numpy=True)
    cases = [
        ("neg_ids", {"neg_ids": np.array([1, 2])}),  # (K,): in-batch ids are per query
        ("neg_ids", {"neg_ids": np.array([[1, 2], [1, 2], [0, 1]])}),  # query 1 is its own negative
        ("neg_ids", {"neg_ids": np.array([[1, 2], [0, 2], [-1, 1]])}),  # no "no sample" in a batch
        ("neg_key_steps", {"neg_key_steps": np.full((3, 2), 2)}),
    ]
    for argument, change in cases:
        with pytest.raises(RecordError, match=f"^{argument}: "):
            rec.log_step(3, epoch=0, lr=0.1, **{**good, **change})
    rec.log_step(3, epoch=0, lr=0.1, neg_key_steps=np.full((3, 2), 3), **good)
    rec.close()
    assert len(rows(tmp_path / "run", "pairs", ["step"])) == 6


def test_create_checks(tmp_path: Path) -> None:
    def make(**kw: object) -> None:
        settings: dict[str, object] = dict(
            negatives_per_query=4, train_labels=LABELS, classes=CIFAR10_CLASSES
        )
        settings.update(kw)
        Recorder.create(tmp_path / "x", **settings).close()  # type: ignore[arg-type]

    cases = [
        ("negatives", {"negatives": "memory"}),
        ("queue_size", {"negatives": "in_batch", "negatives_per_query": None, "queue_size": 4}),
        ("negatives_per_query", {"queue_size": 4}),
        ("negatives_per_query", {"negatives_per_query": 0}),
        ("every", {"every": 0}),
        ("queries", {"queries": -1}),
        ("train_labels", {"train_labels": np.array([0, 1, 10])}),
        ("train_labels", {"train_labels": np.array([0.0, 1.0])}),
        ("classes", {"classes": [ClassInfo(1, "a")]}),
        ("config", {"config": {"log": 1}}),
        ("band", {"band": "0-x"}),
        ("band", {"band": "10-20"}),  # keeps none of 4 negatives
        ("config", {"config": {"x": object()}}),
    ]
    for argument, change in cases:
        with pytest.raises(RecordError, match=f"^{argument}: "):
            make(**change)
        assert not (tmp_path / "x").exists()
    make(classes=["cat", "n02084071"], train_labels=np.array([0, 1]), band="0-50")
    m = runs.read_manifest(tmp_path / "x")
    assert m["band_kept"] == 2 and m["dataset"]["num_classes"] == 2
    assert rows(tmp_path / "x", "classes", ["name", "wnid"]) == [("cat", None), ("n02084071",) * 2]
    with pytest.raises(RunError, match="already exists"):
        make()


def test_interrupted_run_is_marked(tmp_path: Path) -> None:
    with pytest.raises(KeyError), new(tmp_path) as rec:
        rec.log_step(5, epoch=2, lr=0.1, **as_inputs(QUEUE_STEP, "cpu"))
        raise KeyError("training blew up")
    m = runs.read_manifest(tmp_path / "run")
    assert (m["status"], m["steps_done"], m["epochs_done"]) == ("interrupted", 6, 2)


def test_resume_from_state_logs_every_step_once(tmp_path: Path) -> None:
    inputs = {**as_inputs(QUEUE_STEP, "cpu"), "neg_key_steps": None}  # provenance unknown

    def train(rec: Recorder, steps: range) -> None:
        for s in steps:
            rec.log_step(s, epoch=s // 3, lr=0.1, **inputs)

    ref = Recorder.create(
        tmp_path / "ref", negatives_per_query=5, train_labels=LABELS, classes=CIFAR10_CLASSES,
        every=1, queries=2, seed=1,
    )  # fmt: skip
    train(ref, range(8))
    ref.close()
    rec = Recorder.create(
        tmp_path / "run", negatives_per_query=5, train_labels=LABELS, classes=CIFAR10_CLASSES,
        every=1, queries=2, seed=1,
    )  # fmt: skip
    train(rec, range(4))
    checkpoint = {"recorder": rec.state()}  # what a training script saves
    torch.save(checkpoint, tmp_path / "ckpt.pt")
    train(rec, range(4, 6))
    rec.flush()  # steps 4-5 reach the disk, then the process dies
    state = torch.load(tmp_path / "ckpt.pt", weights_only=True)["recorder"]
    assert runs.read_manifest(tmp_path / "run")["steps_done"] == 4
    resumed = Recorder.open(tmp_path / "run", state)
    with pytest.raises(RecordError, match=r"^step: "):
        resumed.log_step(3, epoch=1, lr=0.1, **inputs)
    train(resumed, range(4, 8))
    resumed.close()
    assert list((tmp_path / "run" / "superseded").rglob("*.parquet"))
    for table, cols in (
        ("pairs", PAIR_COLUMNS),
        ("queries", ["step", "query_id", "label", "loss"]),
        ("steps", ["step", "epoch", "loss", "logged"]),
    ):
        assert Counter(rows(tmp_path / "run", table, cols)) == Counter(
            rows(tmp_path / "ref", table, cols)
        )
    m = runs.read_manifest(tmp_path / "run")
    assert (m["status"], m["steps_done"]) == ("finished", 8)


def test_open_needs_a_state_before_the_first_step(tmp_path: Path) -> None:
    rec = new(tmp_path)
    inputs = as_inputs(QUEUE_STEP, "cpu")
    rec.log_step(5, epoch=0, lr=0.1, **inputs)
    state = rec.state()
    rec.close()
    again = Recorder.open(tmp_path / "run")
    with pytest.raises(RecordError, match=r"^step: .*load_state"):
        again.log_step(6, epoch=0, lr=0.1, **inputs)
    again.load_state(state)
    again.log_step(6, epoch=0, lr=0.1, **inputs)
    with pytest.raises(RecordError, match=r"^state: "):
        again.load_state(state)
    again.close()
    assert [s for (s,) in rows(tmp_path / "run", "steps", ["step"])] == [5, 6]


def test_log_eval(tmp_path: Path) -> None:
    rec = new(tmp_path)
    rec.log_eval(3, epoch=0, kind="knn", top1=0.5, top5=0.9, params={"k": 20})
    for argument, kw in (("kind", {"kind": "probe"}), ("top1", {"top1": 1.5})):
        with pytest.raises(RecordError, match=f"^{argument}: "):
            rec.log_eval(3, **{"epoch": 0, "kind": "knn", "top1": 0.5, **kw})  # type: ignore[arg-type]
    rec.close()
    assert rows(tmp_path / "run", "evals", ["step", "kind", "top1", "top5", "params"]) == [
        (3, "knn", 0.5, pytest.approx(0.9), json.dumps({"k": 20}))
    ]
