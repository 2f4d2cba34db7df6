from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from hardstat import schema
from hardstat.errors import LogError
from hardstat.logwriter import RunLogWriter, set_aside_uncommitted


def _steps(step: int, n: int = 3) -> dict[str, object]:
    return {
        "step": np.arange(step, step + n, dtype=np.int32),
        "epoch": 0,
        "loss": np.ones(n, np.float32),
        "lr": 0.1,
        "pos_similarity": np.zeros(n, np.float32),
        "neg_similarity": np.zeros(n, np.float32),
        "seconds": np.ones(n, np.float32),
        "logged": np.zeros(n, bool),
    }


def test_files_appear_only_when_complete(tmp_path: Path) -> None:
    w = RunLogWriter(tmp_path, "r")
    w.write("steps", _steps(0))
    assert list((tmp_path / "steps").glob("*.parquet")) == []  # still a hidden temporary
    assert len(list((tmp_path / "steps").glob(".*.tmp"))) == 1
    w.flush()
    files = list((tmp_path / "steps").glob("*.parquet"))
    assert [f.name for f in files] == ["part-p000-000000.parquet"]
    t = pq.read_table(files[0])
    assert t.column("run").to_pylist() == ["r"] * 3
    assert t.column("step").to_pylist() == [0, 1, 2]
    assert t.schema.metadata[b"hardstat.schema_version"] == str(schema.SCHEMA_VERSION).encode()


def test_file_rows_rolls_over_and_state_lists_committed(tmp_path: Path) -> None:
    w = RunLogWriter(tmp_path, "r", file_rows=1024)
    for s in range(0, 3000, 500):
        w.write("steps", _steps(s, 500))
    w.flush()
    state = w.state()
    # 500-row batches: a file closes once it holds >= 1024 rows, i.e. after 3 batches
    assert state["next_seq"]["steps"] == 2
    assert state["committed"] == [f"steps/part-p000-00000{i}.parquet" for i in range(2)]
    total = sum(pq.read_table(tmp_path / p).num_rows for p in state["committed"])
    assert total == 3000


def test_bad_columns_rejected(tmp_path: Path) -> None:
    w = RunLogWriter(tmp_path, "r")
    cols = _steps(0)
    del cols["lr"]
    with pytest.raises(LogError, match="missing"):
        w.write("steps", cols)


def test_never_overwrites_existing_file(tmp_path: Path) -> None:
    w = RunLogWriter(tmp_path, "r")
    w.write("steps", _steps(0))
    w.flush()
    again = RunLogWriter(tmp_path, "r")  # a second writer starting at seq 0
    with pytest.raises(LogError, match="already exists"):
        again.write("steps", _steps(0))
    assert pq.read_table(tmp_path / "steps" / "part-p000-000000.parquet").num_rows == 3


def test_set_aside_moves_uncommitted_files(tmp_path: Path) -> None:
    w = RunLogWriter(tmp_path, "r")
    w.write("steps", _steps(0))
    w.flush()
    committed = w.state()["committed"]
    w.write("steps", _steps(3))  # after the "checkpoint"
    w.flush()
    w.write("steps", _steps(6))  # left open: a crash mid-file
    moved = set_aside_uncommitted(tmp_path, committed)
    assert [p.name for p in moved] == ["part-p000-000001.parquet"]
    assert moved[0].exists() and "superseded" in moved[0].parts
    remaining = sorted(p.name for p in (tmp_path / "steps").iterdir())
    assert remaining == ["part-p000-000000.parquet"]


def test_posthoc_tag_names(tmp_path: Path) -> None:
    w = RunLogWriter(tmp_path, "r", tag="posthoc-x")
    w.write("steps", _steps(0))
    w.close()
    assert [p.name for p in (tmp_path / "steps").iterdir()] == ["posthoc-x-000000.parquet"]
    assert set_aside_uncommitted(tmp_path, []) == []
