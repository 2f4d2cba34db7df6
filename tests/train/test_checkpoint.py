"""Checkpoints: atomic saves that survive a full disk, safe loads, and checked fields."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")

from hardstat.errors import CheckpointError, WriteError  # noqa: E402
from hardstat.train import checkpoint as ckpt  # noqa: E402
from hardstat.train.checkpoint import check_state, load_checkpoint, save_checkpoint  # noqa: E402


def _state(step: int = 3) -> dict[str, Any]:
    gen = torch.Generator().get_state()
    own = {
        "gen_aug": gen,
        "gen_model": gen,
        "logger": {
            "writer": {"process": 0, "next_seq": {"pairs": 1}, "committed": ["pairs/a.parquet"]},
            "generator": gen,
        },
    }
    return {
        "format": ckpt.CHECKPOINT_FORMAT,
        "step": step,
        "model": {"w": torch.ones(2)},
        "optimizer": {"state": {}, "param_groups": []},
        "processes": [own],
        "config": "{}",
    }


def test_disk_full_while_saving_keeps_the_previous_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """torch.save reports a full disk as a RuntimeError from its zip writer; the previous
    checkpoint survives and the error is one line that says what to do."""
    path = tmp_path / "checkpoints" / "last.pt"
    save_checkpoint(path, _state(step=3))
    before = path.read_bytes()
    real_save = torch.save

    def full_disk(obj: object, f: Any, *args: Any, **kwargs: Any) -> None:
        real_save(obj, f, *args, **kwargs)  # some bytes reach the temporary file...
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 64 vs 0")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(WriteError) as e:
        save_checkpoint(path, _state(step=7), todo="resume the run")
    message = str(e.value)
    assert str(path) in message and "No space left on device" in message
    assert "free some space, then resume the run" in message
    assert "\n" not in message
    assert path.read_bytes() == before  # the previous checkpoint is intact
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.pt"]  # no temporary left
    monkeypatch.undo()
    assert load_checkpoint(path)["step"] == 3


def test_enospc_from_fsync_is_reported_as_such(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "last.pt"

    def full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(WriteError, match=r"No space left on device.*free some space"):
        save_checkpoint(path, _state())
    assert not path.exists() and list(tmp_path.iterdir()) == []


def test_untrusted_checkpoint_message_never_suggests_unsafe_loading(tmp_path: Path) -> None:
    class Evil:
        def __reduce__(self):  # type: ignore[no-untyped-def]
            return (os.system, ("touch PWNED",))

    path = tmp_path / "evil.pt"
    torch.save({"format": ckpt.CHECKPOINT_FORMAT, "x": Evil()}, path)
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(path)
    message = str(e.value)
    assert "weights_only" not in message and "can run code" in message
    assert "\n" not in message and not Path("PWNED").exists()


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"step": -5}, "step"),
        ({"step": "3"}, "step"),
        ({"step": 2**40}, "step"),
        ({"config": None}, "config"),
        ({"model": {"w": [1, 2]}}, "model"),
        ({"optimizer": None}, "optimizer"),
        ({"processes": []}, "processes"),
        ({"processes": ["x"]}, "processes[0]"),
    ],
)
def test_crafted_fields_are_refused(change: dict[str, Any], field: str) -> None:
    state = _state() | change
    with pytest.raises(CheckpointError, match=rf"checkpoint x\.pt: {field.replace('[', '.')}"):
        check_state(state, Path("x.pt"))


@pytest.mark.parametrize(
    ("where", "value", "field"),
    [
        ("gen_aug", torch.zeros(3), "gen_aug"),
        ("logger", None, "logger"),
        ("writer.process", 1, "writer.process"),
        ("writer.next_seq", {"pairs": -1}, "next_seq"),
        ("writer.next_seq", {"bogus": 1}, "next_seq"),
        ("writer.committed", ["../../etc/passwd"], "committed"),
        ("writer.committed", ["/abs/x.parquet"], "committed"),
    ],
)
def test_crafted_process_entries_are_refused(where: str, value: Any, field: str) -> None:
    state = _state()
    own = state["processes"][0]
    if where.startswith("writer."):
        own["logger"]["writer"][where.split(".")[1]] = value
    else:
        own[where] = value
    with pytest.raises(CheckpointError, match=field):
        check_state(state, Path("x.pt"))


def test_evaluation_reads_only_model_step_and_config() -> None:
    state = _state()
    del state["processes"], state["optimizer"]
    check_state(state, Path("x.pt"), resume=False)
    with pytest.raises(CheckpointError, match="optimizer"):
        check_state(state, Path("x.pt"))
