import errno
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from hardstat import runs, schema
from hardstat.errors import ConfigError, LogError, RunError, RunInUseError, WriteError


def _manifest() -> dict:
    return runs.new_manifest(
        "r",
        config={},
        dataset={},
        queue_size=8,
        band="0-100",
        band_kept=8,
        seed=0,
        versions={},
        device="cpu",
    )


def test_new_manifest_has_exactly_the_documented_fields() -> None:
    assert set(_manifest()) == set(schema.MANIFEST_FIELDS)


def test_read_manifest_errors(tmp_path: Path) -> None:
    with pytest.raises(RunError, match="does not exist"):
        runs.read_manifest(tmp_path / "nope")
    with pytest.raises(RunError, match="not a hardstat run"):
        runs.read_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text("{broken")
    with pytest.raises(LogError, match="corrupt"):
        runs.read_manifest(tmp_path)
    m = _manifest() | {"schema_version": 0}
    runs.write_json_atomic(tmp_path / "manifest.json", m)
    with pytest.raises(LogError, match="schema version 0"):
        runs.read_manifest(tmp_path)


def test_update_manifest_round_trip(tmp_path: Path) -> None:
    runs.write_json_atomic(tmp_path / "manifest.json", _manifest())
    runs.update_manifest(tmp_path, status="finished", steps_done=3)
    m = runs.read_manifest(tmp_path)
    assert m["status"] == "finished" and m["steps_done"] == 3


@pytest.mark.parametrize("name", ["a b", "../x", "", "-x", "a/b"])
def test_bad_run_names(name: str) -> None:
    with pytest.raises(RunError):
        runs.check_run_name(name)


# -- manifests are validated once, in the reader --------------------------------------------------
def _write(tmp_path: Path, manifest: dict) -> Path:
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    return tmp_path


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"dataset": None}, "dataset"),  # None: delete the field
        ({"config": None}, "config"),
        ({"queue_size": "lots"}, "queue_size"),
        ({"queue_size": 0}, "queue_size"),
        ({"seed": 1.5}, "seed"),
        ({"status": "done"}, "status"),
        ({"status": 3}, "status"),
        ({"run": ""}, "run"),
        ({"run": "a\x1b[2Jb"}, "run"),
        ({"band": "0-500"}, "band"),
        ({"band_kept": 9}, "band_kept"),
        ({"steps_done": -1}, "steps_done"),
        ({"processes": None}, "processes"),
        ({"processes": True}, "processes"),
        ({"config": {"optim": {"batch_size": "big"}}}, "config.optim.batch_size"),
        ({"config": {"model": []}}, "config.model"),
        ({"dataset": {"spec": 5}}, "dataset.spec"),
        ({"dataset": {"train_size": "x"}}, "dataset.train_size"),
    ],
)
def test_manifest_fields_are_checked(tmp_path: Path, change: dict, field: str) -> None:
    m = _manifest()
    for key, value in change.items():
        if value is None:
            del m[key]
        else:
            m[key] = value
    with pytest.raises(LogError) as e:
        runs.read_manifest(_write(tmp_path, m))
    message = str(e.value)
    assert f"field {field!r}" in message and str(tmp_path / "manifest.json") in message
    assert "\n" not in message and "\x1b" not in message


def test_manifest_of_version_1_needs_no_processes(tmp_path: Path) -> None:
    m = _manifest() | {"schema_version": 1}
    del m["processes"]
    assert runs.read_manifest(_write(tmp_path, m))["run"] == "r"


def test_unreadable_manifest_is_a_permission_problem_not_corruption(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write(tmp_path, _manifest())

    def denied(self: Path) -> bytes:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_bytes", denied)
    with pytest.raises(RunError, match="permission denied") as e:
        runs.read_manifest(tmp_path)
    assert "corrupt" not in str(e.value)


def test_manifest_config_names_the_file(tmp_path: Path) -> None:
    m = _manifest() | {"config": {"optim": {"epochs": 0}}}
    with pytest.raises(LogError, match=r"manifest .*manifest.json: its config is invalid"):
        runs.manifest_config(tmp_path, m)


# -- atomic writes -------------------------------------------------------------------------------
def test_disk_full_while_updating_the_manifest_keeps_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs.write_json_atomic(tmp_path / "manifest.json", _manifest())
    before = (tmp_path / "manifest.json").read_bytes()

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(WriteError, match=r"No space left on device.*free some space") as e:
        runs.update_manifest(tmp_path, status="finished")
    assert "hardstat train --resume" in str(e.value)
    monkeypatch.undo()
    assert (tmp_path / "manifest.json").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["manifest.json"]  # no temporary left


# -- names and text ------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["..", ".", "/abs", "a" * 201, "x\ny"])
def test_more_bad_run_names(name: str) -> None:
    with pytest.raises(RunError):
        runs.check_run_name(name)


@pytest.mark.parametrize("text", ["a\nb", "x\x1b[31m", "tab\there", "del\x7f"])
def test_control_characters_are_refused(text: str) -> None:
    with pytest.raises(ConfigError, match="control characters"):
        runs.check_text(text, "--out")
    assert runs.check_text("DIR$(touch X) 'q' [1]", "--out") == "DIR$(touch X) 'q' [1]"


def test_new_run_dir_checks(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(RunError, match="is not a directory"):
        runs.check_new_run_dir(tmp_path / "file")
    with pytest.raises(RunError, match="is not a directory; choose another --runs-dir"):
        runs.check_new_run_dir(tmp_path / "file" / "run")
    (tmp_path / "dead").mkdir()
    (tmp_path / "dead" / "manifest.json").write_text("{}")
    with pytest.raises(RunError, match=r"holds no checkpoint.*mv ") as e:
        runs.check_new_run_dir(tmp_path / "dead")
    assert "--resume" not in str(e.value)  # one way out, the same as --resume gives
    with pytest.raises(RunError, match=r"holds no checkpoint.*mv "):
        runs.check_resumable(tmp_path / "dead", {})
    (tmp_path / "locked").mkdir()
    (tmp_path / "locked" / runs.LOCK_FILE).write_text("")
    runs.check_new_run_dir(tmp_path / "locked")  # a lock file alone is an empty directory
    runs.check_new_run_dir(tmp_path / "new" / "deeper")


# -- locks ---------------------------------------------------------------------------------------
def test_second_lock_is_refused_with_the_holder(tmp_path: Path) -> None:
    with runs.RunLock(tmp_path):
        with pytest.raises(RunInUseError) as e:
            runs.RunLock(tmp_path).acquire()
        message = str(e.value)
        assert f"process {os.getpid()} on host {socket.gethostname()}" in message
        assert "\n" not in message and str(tmp_path / ".lock") in message
        assert runs.lock_state(tmp_path) == "held"
    assert runs.lock_state(tmp_path) == "free"
    runs.RunLock(tmp_path).acquire().release()  # free again


def test_lock_of_a_dead_process_is_stale(tmp_path: Path) -> None:
    """A process that dies holding the lock leaves the file, but not the lock."""
    code = (
        "import os, sys; from pathlib import Path; from hardstat import runs; "
        f"runs.RunLock(Path({str(tmp_path)!r})).acquire(); os._exit(0)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    assert "pid" in (tmp_path / runs.LOCK_FILE).read_text()
    assert runs.lock_state(tmp_path) == "free"
    runs.RunLock(tmp_path).acquire().release()


def test_shared_locks_exclude_an_exclusive_one(tmp_path: Path) -> None:
    a = runs.RunLock(tmp_path, what="sweep").acquire(shared=True)
    b = runs.RunLock(tmp_path, what="sweep").acquire(shared=True)
    with pytest.raises(RunInUseError, match=r"sweep .* is in use"):
        runs.RunLock(tmp_path, what="sweep").acquire()
    a.release()
    b.release()
    with runs.RunLock(tmp_path, what="sweep"), pytest.raises(RunInUseError):
        runs.RunLock(tmp_path, what="sweep").acquire(shared=True)


def test_a_running_run_without_its_process_is_crashed(tmp_path: Path) -> None:
    m = _manifest()
    assert runs.effective_status(tmp_path, m) == "running"  # no lock file: an older run
    with runs.RunLock(tmp_path):
        assert runs.effective_status(tmp_path, m) == "running"
    assert runs.effective_status(tmp_path, m) == "crashed"
    assert runs.effective_status(tmp_path, m | {"status": "finished"}) == "finished"


def test_manifest_types_cover_the_documented_fields() -> None:
    assert set(schema.MANIFEST_TYPES) == set(schema.MANIFEST_FIELDS)


def test_claiming_a_default_name_is_atomic(tmp_path: Path) -> None:
    """Runs started in the same second (default names hold the time to the second) each get a
    directory of their own."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(8) as pool:
        claimed = list(
            pool.map(lambda _: runs.claim_run_dir(tmp_path / "r" / "n", unique=True), range(8))
        )
    assert sorted(p.name for p in claimed) == sorted(["n", *(f"n-{i}" for i in range(2, 9))])
    assert runs.claim_run_dir(tmp_path / "mine") == tmp_path / "mine"  # a chosen name
    assert runs.claim_run_dir(tmp_path / "mine") == tmp_path / "mine"  # empty: reused
