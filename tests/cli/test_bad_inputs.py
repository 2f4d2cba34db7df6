"""Every CLI command on a corpus of bad inputs: one line naming the file or option and what to
do, exit 1 (2 for usage), nothing written, and never a traceback.

The corpus starts from one real tiny run (trained once per module) and breaks one thing per
case: the manifest (missing, broken, missing or mistyped fields, another schema version), a log
file (truncated, garbage, empty, damaged pages, wrong columns, text ranks, null ranks, another
run's rows, negative labels), the checkpoint (garbage, a pickle that would run code, crafted
fields), a sweep file edited by hand. Fuzzed band specs and config files (hypothesis) go
through ``sweep --dry-run``, which validates everything and trains nothing.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from hardstat.cli import app

runner = CliRunner()

READERS = ("sql", "bands", "consistency", "semantic", "report")
WRITERS = ("eval", "resume")
ALL = READERS + WRITERS


def command(name: str, run: Path, tmp: Path) -> list[str]:
    r = str(run)
    return {
        "sql": ["sql", r, "SELECT sum(similarity), max(rank) FROM pairs"],
        "bands": ["analyze", "bands", r],
        "consistency": [
            *("analyze", "consistency", r, "--permutations", "0"),
            "--no-shuffle-check",
        ],
        "semantic": ["analyze", "semantic", r, "--bootstrap", "0", "--permutations", "0"],
        "report": [
            *("report", r, "--out", str(tmp / "r.html")),
            *("--bootstrap", "0", "--permutations", "0"),
        ],
        "eval": ["eval", r, "--epochs", "1"],
        "resume": ["train", "--resume", r],
    }[name]


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished tiny run: 1 epoch, 8 steps."""
    root = tmp_path_factory.mktemp("base")
    args = ["train", "--out", str(root), "--name", "base", "--epochs", "1", "-q"]
    result = runner.invoke(app, [*args, "--threads", "1"])
    assert result.exit_code == 0, result.output
    return root / "base"


# -- the corpus: (how to break a copy of the run, commands it is bad for) ------------------------
def _manifest(edit: Callable[[dict[str, Any]], object]) -> Callable[[Path], None]:
    def apply(run: Path) -> None:
        path = run / "manifest.json"
        data = json.loads(path.read_text())
        edit(data)
        path.write_text(json.dumps(data))

    return apply


def _write(relative: str, data: bytes) -> Callable[[Path], None]:
    def apply(run: Path) -> None:
        (run / relative).write_bytes(data)

    return apply


def _pairs_file(run: Path) -> Path:
    return sorted((run / "pairs").glob("*.parquet"))[0]


def _damage(how: str) -> Callable[[Path], None]:
    def apply(run: Path) -> None:
        path = _pairs_file(run)
        data = path.read_bytes()
        if how == "truncated":
            path.write_bytes(data[: len(data) // 2])
        elif how == "empty":
            path.write_bytes(b"")
        elif how == "garbage":
            path.write_bytes(b"not parquet" * 50)
        else:  # pages: the footer reads, the data does not
            footer = int.from_bytes(data[-8:-4], "little")
            lo, hi = 4, len(data) - 8 - footer
            path.write_bytes(data[:lo] + b"\xff" * (hi - lo) + data[hi:])

    return apply


def _column(
    table: str, name: str, make: Callable[[pa.Table], pa.Array | None]
) -> Callable[[Path], None]:
    """Replace (or, when ``make`` returns None, drop) one column of the table's first file."""

    def apply(run: Path) -> None:
        path = sorted((run / table).glob("*.parquet"))[0]
        t = pq.read_table(path)
        meta = pq.read_schema(path).metadata
        new = make(t)
        i = t.schema.get_field_index(name)
        t = t.remove_column(i) if new is None else t.set_column(i, name, new)
        pq.write_table(t.replace_schema_metadata(meta), path)

    return apply


def _checkpoint(edit: Callable[[dict[str, Any]], object]) -> Callable[[Path], None]:
    def apply(run: Path) -> None:
        import torch

        path = run / "checkpoints" / "last.pt"
        state = torch.load(path, weights_only=True)
        edit(state)
        torch.save(state, path)

    return apply


def _evil_checkpoint(run: Path) -> None:
    import torch

    class Evil:
        def __reduce__(self):  # type: ignore[no-untyped-def]
            return (os.system, ("touch PWNED",))

    torch.save({"format": "hardstat-checkpoint-2", "x": Evil()}, run / "checkpoints" / "last.pt")


def _remove(relative: str) -> Callable[[Path], None]:
    def apply(run: Path) -> None:
        target = run / relative
        shutil.rmtree(target) if target.is_dir() else target.unlink()

    return apply


CORPUS: dict[str, tuple[Callable[[Path], None], tuple[str, ...]]] = {
    "no manifest": (_remove("manifest.json"), ALL),
    "manifest not JSON": (_write("manifest.json", b"{broken"), ALL),
    "manifest empty": (_write("manifest.json", b""), ALL),
    "manifest a list": (_write("manifest.json", b"[1, 2]"), ALL),
    "manifest without dataset": (_manifest(lambda m: m.pop("dataset")), ALL),
    "manifest without config": (_manifest(lambda m: m.pop("config")), ALL),
    "queue_size lots": (_manifest(lambda m: m.update(queue_size="lots")), ALL),
    "seed a float": (_manifest(lambda m: m.update(seed=1.5)), ALL),
    "status bogus": (_manifest(lambda m: m.update(status="done")), ALL),
    "schema version 99": (_manifest(lambda m: m.update(schema_version=99)), ALL),
    "config of wrong types": (
        _manifest(lambda m: m["config"]["optim"].update(epochs="many")),
        ALL,
    ),
    "config invalid": (_manifest(lambda m: m["config"]["optim"].update(epochs=0)), ("resume",)),
    "dataset spec a number": (_manifest(lambda m: m["dataset"].update(spec=5)), ALL),
    "pairs truncated": (_damage("truncated"), READERS),
    "pairs empty": (_damage("empty"), READERS),
    "pairs garbage": (_damage("garbage"), READERS),
    "pairs damaged pages": (_damage("pages"), ("sql", "consistency", "semantic", "report")),
    "pairs without rank": (_column("pairs", "rank", lambda t: None), READERS),
    "pairs text rank": (
        _column("pairs", "rank", lambda t: pa.array([str(v) for v in t["rank"].to_pylist()])),
        READERS,
    ),
    "pairs null rank": (
        _column("pairs", "rank", lambda t: pa.nulls(t.num_rows, pa.int32())),
        READERS,
    ),
    "pairs of another run": (
        _column("pairs", "run", lambda t: pa.array(["other"] * t.num_rows)),
        READERS,
    ),
    "pairs rank beyond K": (
        _column("pairs", "rank", lambda t: pa.array(np.full(t.num_rows, 10**6, np.int32))),
        READERS,
    ),
    "negative labels": (
        _column("samples", "label", lambda t: pa.array(np.full(t.num_rows, -3, np.int16))),
        READERS,
    ),
    "checkpoint garbage": (_write("checkpoints/last.pt", b"not a checkpoint"), WRITERS),
    "checkpoint truncated": (
        lambda run: (run / "checkpoints" / "last.pt").write_bytes(
            (run / "checkpoints" / "last.pt").read_bytes()[:5000]
        ),
        WRITERS,
    ),
    "checkpoint runs code": (_evil_checkpoint, WRITERS),
    "checkpoint step -5": (_checkpoint(lambda s: s.update(step=-5)), WRITERS),
    "checkpoint without model keys": (_checkpoint(lambda s: s["model"].clear()), WRITERS),
    "checkpoint config not JSON": (_checkpoint(lambda s: s.update(config="{x")), WRITERS),
    "checkpoint of another size": (
        _checkpoint(lambda s: s["model"].update({"queue.keys": s["model"]["queue.keys"][:3]})),
        WRITERS,
    ),
    "no checkpoint": (_remove("checkpoints"), WRITERS),
}


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != ".lock"
    }


CASES = [(case, cmd) for case, (_, bad_for) in CORPUS.items() for cmd in bad_for]


@pytest.mark.parametrize(("case", "cmd"), CASES, ids=[f"{c}-{m}" for c, m in CASES])
def test_bad_input_is_one_line_never_a_traceback(
    base: Path, tmp_path: Path, case: str, cmd: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # a payload that runs would leave PWNED here
    run = tmp_path / "run"
    shutil.copytree(base, run)
    if cmd == "resume":  # a finished run has nothing to resume (one line, exit 0): as if stopped
        _manifest(lambda m: m.update(status="interrupted"))(run)
    CORPUS[case][0](run)
    before = _snapshot(run)
    result = runner.invoke(app, command(cmd, run, tmp_path))
    # an exception that escaped the CLI would be result.exception (CliRunner catches it)
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception
    )
    assert "Traceback" not in result.output
    assert result.exit_code in (1, 2), result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1 and result.stderr.strip().endswith(errors[0]), result.stderr
    assert not (tmp_path / "PWNED").exists()
    assert _snapshot(run) == before  # nothing written
    assert not (tmp_path / "r.html").exists()


# -- the same on the command line, as a user sees it ---------------------------------------------
def test_no_traceback_in_a_real_shell(base: Path, tmp_path: Path) -> None:
    import subprocess
    import sys

    run = tmp_path / "run"
    shutil.copytree(base, run)
    _manifest(lambda m: m.update(queue_size="lots"))(run)
    for cmd in ("sql", "bands", "eval"):
        out = subprocess.run(
            [sys.executable, "-m", "hardstat", *command(cmd, run, tmp_path)],
            capture_output=True,
            text=True,
        )
        assert out.returncode == 1 and "Traceback" not in out.stderr
        assert out.stderr.count("\n") == 1 and out.stderr.startswith("Error: manifest ")


# -- sweeps edited by hand -----------------------------------------------------------------------
SWEEP_EDITS: dict[str, Callable[[dict[str, Any]], object]] = {
    "format": lambda d: d.update(format="other"),
    "no runs": lambda d: d.pop("runs"),
    "runs a string": lambda d: d.update(runs="x"),
    "seed text": lambda d: d["runs"][0].update(seed="zero"),
    "config broken": lambda d: d["runs"][0]["config"]["optim"].update(epochs="x"),
    "spec broken": lambda d: d["spec"].update(bands=5),
    "name escapes": lambda d: d["runs"][0].update(name="../../x"),
}


@pytest.mark.parametrize("edit", list(SWEEP_EDITS))
def test_hand_edited_sweep_file(tmp_path: Path, edit: str) -> None:
    out = tmp_path / "sw"
    made = runner.invoke(
        app, ["sweep", "--bands", "0-100", "--out", str(out), "--launcher", "slurm"]
    )
    assert made.exit_code == 0, made.output
    data = json.loads((out / "sweep.json").read_text())
    SWEEP_EDITS[edit](data)
    (out / "sweep.json").write_text(json.dumps(data))
    before = _snapshot(tmp_path)
    for args in (["--out", str(out), "--dry-run"], ["--out", str(out), "--index", "0", "-q"]):
        result = runner.invoke(app, ["sweep", *args])
        assert result.exception is None or isinstance(result.exception, SystemExit)
        assert result.exit_code == 1, result.output
        assert result.stderr.count("\n") == 1 and result.stderr.startswith("Error: ")
    assert _snapshot(tmp_path) == before
    assert not (tmp_path / "x").exists()


def test_garbage_sweep_file(tmp_path: Path) -> None:
    out = tmp_path / "sw"
    out.mkdir()
    for text in (b"", b"{", b"[]", b"\xff\xfe"):
        (out / "sweep.json").write_bytes(text)
        result = runner.invoke(app, ["sweep", "--out", str(out), "--dry-run"])
        assert result.exit_code == 1 and result.stderr.startswith("Error: "), result.output


# -- fuzzed band specs and config files ------------------------------------------------------------
def _dry_run(tmp: Path, *args: str) -> Any:
    return runner.invoke(app, ["sweep", "--out", str(tmp / "sw"), "--dry-run", *args])


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(bands=st.text(alphabet="0123456789.,:+-% abcrandom\n", max_size=24))
def test_fuzzed_band_specs(tmp_path: Path, bands: str) -> None:
    result = _dry_run(tmp_path, "--bands", bands)
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert result.exit_code in (0, 1, 2)
    if result.exit_code:
        assert result.stderr.strip().splitlines()[-1].startswith("Error")
    assert not (tmp_path / "sw").exists()  # a dry run writes nothing


_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 10**6) | st.floats(allow_nan=True)
    | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3)
    ),
    max_leaves=8,
)  # fmt: skip
_KEYS = st.sampled_from(
    ["band", "seed", "device", "amp", "threads", "checkpoint_every", "checkpoint_minutes",
     "data", "model", "optim", "log", "eval", "bogus"]
)  # fmt: skip
_SECTION_KEYS = st.sampled_from(
    ["dataset", "subset", "queue_size", "batch_size", "epochs", "every", "queries", "width",
     "temperature", "lr", "knn_k", "bn_splits", "bogus"]
)  # fmt: skip


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    config=st.dictionaries(
        _KEYS, _VALUES | st.dictionaries(_SECTION_KEYS, _VALUES, max_size=4), max_size=5
    )
)
def test_fuzzed_config_files(tmp_path: Path, config: dict[str, Any]) -> None:
    path = tmp_path / "c.json"
    path.write_text(json.dumps(config))
    result = _dry_run(tmp_path, "--bands", "0-100", "--config", str(path))
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception
    )
    assert result.exit_code in (0, 1, 2)
    if result.exit_code == 1:
        assert result.stderr.count("\n") == 1 and result.stderr.startswith("Error: ")
    assert not (tmp_path / "sw").exists()
