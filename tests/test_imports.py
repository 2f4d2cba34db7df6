"""Dependency direction: light modules never import torch; train never imports duckdb/altair."""

import subprocess
import sys

import pytest


def imported_after(module: str) -> set[str]:
    code = f"import sys, {module}; print('\\n'.join(sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return {m.split(".")[0] for m in out.stdout.split()}


@pytest.mark.parametrize(
    "module",
    [
        "hardstat.cli",
        "hardstat.schema",
        "hardstat.config",
        "hardstat.bands",
        "hardstat.runs",
        "hardstat.logwriter",
        "hardstat.classes",
        "hardstat.record",
    ],
)
def test_light_modules_do_not_import_torch(module: str) -> None:
    mods = imported_after(module)
    assert "torch" not in mods and "duckdb" not in mods and "altair" not in mods


def test_train_does_not_import_duckdb_or_altair() -> None:
    mods = imported_after("hardstat.train.loop")
    assert "torch" in mods
    assert "duckdb" not in mods and "altair" not in mods and "polars" not in mods
