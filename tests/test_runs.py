from pathlib import Path

import pytest

from hardstat import runs, schema
from hardstat.errors import LogError, RunError


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
