"""The error hierarchy: rewording keeps the kind of error and where it is reported."""

from __future__ import annotations

from hardstat.errors import DatasetError


def test_reworded_keeps_class_and_reporting() -> None:
    error = DatasetError("no such file")
    error.reported_elsewhere = True
    named = error.reworded("run a-s0: no such file")
    assert type(named) is DatasetError and str(named) == "run a-s0: no such file"
    assert named.reported_elsewhere
    assert not DatasetError("x").reworded("y").reported_elsewhere
