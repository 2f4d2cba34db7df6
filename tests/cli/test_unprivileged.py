"""Runs read and written by a user without write (or read) permission: one line, exit 1, never
a traceback, and never "corrupt" for what is a permission problem.

Root creates the runs; the commands run as ``nobody`` (``setpriv``), so the checks hold for real
permissions rather than simulated ones. Skipped unless the tests run as root with setpriv.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("setpriv") is None,
    reason="needs root (to create files) and setpriv (to run as nobody)",
)
NOBODY = 65534
REPO = Path(__file__).resolve().parents[2]


def as_nobody(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    cmd = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": str(REPO),
        "HOME": str(cwd),
        "OMP_NUM_THREADS": "1",
    }
    return subprocess.run(
        [*cmd, sys.executable, "-m", "hardstat", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=300,
    )


@pytest.fixture(scope="module")
def root() -> Iterator[Path]:
    """A world-readable directory owned by root, with a finished tiny run in it."""
    base = Path(tempfile.mkdtemp(prefix="hardstat-ro-"))
    base.chmod(0o755)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "hardstat",
            "train",
            "--out",
            str(base),
            "--name",
            "run",
            "--epochs",
            "1",
            "--threads",
            "1",
            "-q",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert done.returncode == 0, done.stderr
    for p in [base, *base.rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)  # readable by all, writable by root only
    (base / "work").mkdir(mode=0o777)
    (base / "work").chmod(0o777)
    yield base
    shutil.rmtree(base)


def one_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    return lines[0]


def test_read_only_runs_can_be_read(root: Path) -> None:
    work = root / "work"
    sql = as_nobody("sql", str(root / "run"), "SELECT count(*) AS n FROM steps", cwd=work)
    assert sql.returncode == 0 and "8" in sql.stdout, sql.stderr
    report = as_nobody(
        *("report", str(root / "run"), "--out", str(work / "r.html")),
        *("--bootstrap", "0", "--permutations", "0"),
        cwd=work,
    )
    assert report.returncode == 0, report.stderr
    assert (work / "r.html").is_file()


def test_read_only_runs_refuse_writers_with_one_line(root: Path) -> None:
    work = root / "work"
    before = sorted((p, p.stat().st_mtime_ns) for p in (root / "run").rglob("*"))
    message = one_error(as_nobody("eval", str(root / "run"), "--epochs", "1", cwd=work))
    assert "Permission denied" in message and ".lock" in message
    finished = as_nobody("train", "--resume", str(root / "run"), cwd=work)  # nothing to write
    assert finished.returncode == 0 and "is already finished" in finished.stderr
    message = one_error(as_nobody("train", "--out", str(root), "--name", "new", "-q", cwd=work))
    assert "not writable" in message
    message = one_error(
        as_nobody("report", str(root / "run"), "--out", str(root / "r.html"), cwd=work)
    )
    assert "Permission denied" in message and "corrupt" not in message
    assert sorted((p, p.stat().st_mtime_ns) for p in (root / "run").rglob("*")) == before


def test_unreadable_files_are_permission_problems(root: Path) -> None:
    work = root / "work"
    copy = root / "private"
    shutil.copytree(root / "run", copy)
    for p in [copy, *copy.rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)
    manifest = copy / "manifest.json"
    manifest.chmod(0o600)
    message = one_error(as_nobody("sql", str(copy), "SELECT 1", cwd=work))
    assert "permission denied" in message and "corrupt" not in message
    manifest.chmod(0o644)
    log = sorted((copy / "pairs").glob("*.parquet"))[0]
    log.chmod(0o600)
    message = one_error(as_nobody("sql", str(copy), "SELECT count(*) FROM pairs", cwd=work))
    assert "permission denied" in message and str(log) in message and "corrupt" not in message
    (copy / "checkpoints" / "last.pt").chmod(0o600)
    message = one_error(as_nobody("eval", str(copy), cwd=work))
    assert "corrupt" not in message
