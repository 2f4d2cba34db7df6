"""Run directories, their manifests and their locks (no torch).

A run lives at ``OUT/NAME``; ``manifest.json`` in it holds the resolved config, versions, dataset,
K, band, seed and the schema version (fields in :data:`hardstat.schema.MANIFEST_FIELDS`, types in
:data:`hardstat.schema.MANIFEST_TYPES`, checked by :func:`read_manifest`). A process that writes
to a run (training, ``hardstat eval``) holds its lock, ``RUN/.lock`` (:class:`RunLock`).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import json
import os
import re
import socket
import sys
import unicodedata
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from hardstat import schema
from hardstat.errors import ConfigError, LogError, RunError, RunInUseError, WriteError

if TYPE_CHECKING:
    from hardstat.config import TrainConfig

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._=+-]*$")
NAME_MAX = 200
LOCK_FILE = ".lock"
CHECKPOINT_FILE = Path("checkpoints") / "last.pt"
"""A run's checkpoint, relative to the run directory (see :mod:`hardstat.train.checkpoint`)."""


def main_process() -> bool:
    """Whether this is the process that reports and writes shared files: always without a
    launcher, process 0 (``RANK``) under torchrun. Needs no torch."""
    return os.environ.get("RANK", "0") == "0"


def check_run_name(name: str) -> str:
    """A run name is one path component of letters, digits and ``. _ = + -``."""
    if not _NAME.match(name) or len(name) > NAME_MAX:
        raise RunError(
            f"run name {name!r} is not allowed; use letters, digits and . _ = + - "
            f"(starting with a letter or digit, at most {NAME_MAX} characters, no '/')"
        )
    return name


def check_text(value: object, what: str) -> str:
    """Refuse control characters (newline, ESC, ...) in a path or value that hardstat writes
    into commands, scripts or file names; return the text."""
    text = str(value)
    bad = sorted({c for c in text if unicodedata.category(c) == "Cc"})
    if bad:
        shown = ", ".join(repr(c) for c in bad)
        raise ConfigError(
            f"{what} {text!r} contains control characters ({shown}); use a value without them"
        )
    return text


def checkpoint_file(run_dir: Path) -> Path:
    return Path(run_dir) / CHECKPOINT_FILE


def now_iso() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def os_reason(e: OSError) -> str:
    """``No space left on device`` and the like: the OS's words for an error."""
    return e.strerror or str(e) or type(e).__name__


def write_failed(path: Path | str, e: OSError, todo: str) -> WriteError:
    """A one-line WriteError for ``path`` that says why (disk full, permission...) and what to
    do."""
    hint = {
        errno.ENOSPC: "free some space",
        errno.EDQUOT: "free some space (disk quota exceeded)",
        errno.EACCES: "make it writable",
        errno.EPERM: "make it writable",
        errno.EROFS: "use a writable file system",
    }.get(e.errno or 0, "fix the problem")
    return WriteError(f"cannot write {path} ({os_reason(e)}): {hint}, then {todo}")


def fsync_dir(directory: Path) -> None:
    """Make a rename in ``directory`` durable (best effort: not every file system allows it)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_bytes_atomic(path: Path, data: bytes, *, todo: str = "try again") -> None:
    """Write ``path`` completely or not at all: a hidden temporary file, fsync, rename. On
    failure (disk full...) the temporary file is removed, the previous ``path`` is untouched and
    a :class:`WriteError` says what to do."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise write_failed(path, e, todo) from e
    fsync_dir(path.parent)


def write_json_atomic(path: Path, data: Any, *, todo: str = "try again") -> None:
    write_bytes_atomic(
        Path(path), (json.dumps(data, indent=2, sort_keys=False) + "\n").encode(), todo=todo
    )


def read_manifest(run_dir: Path) -> dict[str, Any]:
    """Read and check a run's manifest; raise RunError/LogError with what to do.

    Every field of :data:`hardstat.schema.MANIFEST_TYPES` that the run's schema version has
    must be there with its type (and a sensible value), so no reader fails later on it.
    """
    run_dir = Path(run_dir)
    path = run_dir / schema.MANIFEST_FILE
    if not run_dir.is_dir():
        raise RunError(f"run directory {run_dir} does not exist")
    if not path.is_file():
        raise RunError(f"{run_dir} is not a hardstat run (no {schema.MANIFEST_FILE})")
    try:
        text = path.read_bytes()
    except PermissionError as e:
        raise RunError(
            f"cannot read {path} (permission denied); ask its owner for read access"
        ) from e
    except OSError as e:
        raise LogError(f"cannot read manifest {path} ({os_reason(e)})") from e
    try:
        data = json.loads(text)
    except ValueError as e:
        raise LogError(
            f"manifest {path} is corrupt (not JSON: {e}); restore it from a backup"
        ) from e
    if not isinstance(data, dict):
        raise LogError(f"manifest {path} is corrupt (not a JSON object); restore it from a backup")
    version = data.get("schema_version")
    if version not in schema.READABLE_VERSIONS or isinstance(version, bool):
        readable = ", ".join(map(str, schema.READABLE_VERSIONS))
        raise LogError(
            f"run {run_dir} has log schema version {version}, this hardstat reads versions "
            f"{readable}; use a hardstat release that matches the run"
        )
    validate_manifest(data, path)
    return data


_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "integer": (int,),
    "string": (str,),
    "object": (dict,),
}


def _type_ok(value: Any, kind: str) -> bool:
    return isinstance(value, _JSON_TYPES[kind]) and not isinstance(value, bool)


def validate_manifest(data: dict[str, Any], path: Path) -> None:
    """Check a manifest's fields against :data:`hardstat.schema.MANIFEST_TYPES`; raise a
    one-line LogError naming the file and the first bad field."""
    version = data["schema_version"]

    def bad(field: str, why: str) -> LogError:
        return LogError(
            f"manifest {path}: field {field!r} {why}; restore the manifest from a backup or "
            "fix that field"
        )

    for field, (kind, since) in schema.MANIFEST_TYPES.items():
        if since > version or (since == 0 and field not in data):
            continue
        if field not in data:
            raise bad(field, "is missing")
        if not _type_ok(data[field], kind):
            raise bad(field, f"must be a JSON {kind}, got {data[field]!r:.60}")
    run = data["run"]
    if not run or len(run) > 255 or any(unicodedata.category(c) == "Cc" for c in run):
        # only data (escaped in HTML, bound in SQL), but never a terminal escape or a newline
        raise bad("run", f"must be a name without control characters ({run!r:.60})")
    if data.get("negatives", "queue") not in schema.MANIFEST_NEGATIVES:
        raise bad("negatives", f"must be one of {', '.join(schema.MANIFEST_NEGATIVES)}")
    if data["status"] not in schema.MANIFEST_STATUSES:
        raise bad("status", f"must be one of {', '.join(schema.MANIFEST_STATUSES)}")
    if data["queue_size"] < 1:
        raise bad("queue_size", "must be >= 1")
    if not 0 <= data["band_kept"] <= data["queue_size"]:
        raise bad("band_kept", "must be between 0 and queue_size")
    for field in ("steps_done", "epochs_done"):
        if data[field] < 0:
            raise bad(field, "must be >= 0")
    if version >= 2 and data["processes"] < 1:
        raise bad("processes", "must be >= 1")
    from hardstat.bands import parse_band

    try:
        parse_band(data["band"])
    except ConfigError as e:
        raise bad("band", f"is not a band spec ({e})") from e
    dataset, config = data["dataset"], data["config"]
    for key in ("spec", "name"):
        if key in dataset and not isinstance(dataset[key], str):
            raise bad(f"dataset.{key}", "must be a JSON string")
    for key in ("train_size", "test_size", "image_size", "num_classes"):
        if dataset.get(key) is not None and not _type_ok(dataset[key], "integer"):
            raise bad(f"dataset.{key}", "must be a JSON integer or null")
    for section, keys in (("model", {"backbone": "string"}), ("optim", _OPTIM_KEYS)):
        if section not in config:
            continue
        if not isinstance(config[section], dict):
            raise bad(f"config.{section}", "must be a JSON object")
        for key, kind in keys.items():
            value = config[section].get(key)
            if value is not None and not _type_ok(value, kind):
                raise bad(f"config.{section}.{key}", f"must be a JSON {kind}")


_OPTIM_KEYS = {"batch_size": "integer", "epochs": "integer"}


def manifest_config(run_dir: Path, manifest: dict[str, Any]) -> TrainConfig:
    """The run's saved training configuration, validated; a bad one is a one-line error that
    names the manifest."""
    from hardstat.config import TrainConfig

    try:
        return TrainConfig.from_dict(json.loads(json.dumps(manifest["config"])))
    except ConfigError as e:
        raise LogError(
            f"manifest {Path(run_dir) / schema.MANIFEST_FILE}: its config is invalid ({e}); "
            "restore the manifest from a backup"
        ) from e


def _move_aside(run_dir: Path) -> str:
    import shlex

    return shlex.join(["mv", str(run_dir), f"{run_dir}.failed"])


def check_new_run_dir(run_dir: Path) -> None:
    """Refuse a path for a new run that exists (a file, or a directory with contents other
    than a lock file) or cannot be created, with one way out for each case."""
    run_dir = Path(run_dir)
    if run_dir.exists() or run_dir.is_symlink():
        if not run_dir.is_dir():
            raise RunError(f"{run_dir} exists and is not a directory; choose another --name")
        try:
            contents = [p.name for p in run_dir.iterdir() if p.name != LOCK_FILE]
        except OSError as e:
            raise RunError(f"cannot list {run_dir} ({os_reason(e)}); choose another --name") from e
        if contents:
            holder = lock_holder(run_dir)
            if holder is not None:  # a live trainer (or evaluation): not a run to resume
                raise RunInUseError(
                    f"run directory {run_dir} is in use by {holder}; choose another --name"
                )
            if checkpoint_file(run_dir).is_file():
                raise RunError(
                    f"run directory {run_dir} already exists; choose another --name, delete "
                    f"it, or continue it with --resume {_quoted(run_dir)}"
                )
            raise RunError(
                f"{run_dir} already exists but holds no checkpoint (the run stopped before "
                f"its first one, so there is nothing to resume); move it aside ("
                f"{_move_aside(run_dir)}) or choose another --name, then start the run again"
            )
        return
    check_can_create(run_dir)


def check_can_create(run_dir: Path) -> None:
    """Refuse a run directory whose nearest existing parent is no writable directory."""
    parent = Path(run_dir).parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise RunError(
            f"cannot create {run_dir}: {parent} is not a directory; choose another --runs-dir"
        )
    if not os.access(parent, os.W_OK | os.X_OK):
        raise WriteError(
            f"cannot create {run_dir}: {parent} is not writable (permission denied); choose "
            "another --runs-dir"
        )


def claim_run_dir(run_dir: Path, *, unique: bool = False, tries: int = 1000) -> Path:
    """Create the directory of a new run and return it.

    ``unique`` (a default name, which holds the time to the second): the directory is made
    with one atomic ``mkdir``, and a name another run has taken gets a suffix (``NAME-2``,
    ``NAME-3``...), so runs started in the same second never share a directory. A name the
    user chose is checked with :func:`check_new_run_dir` instead (an empty directory is
    reused; the trainer checks it again under the run's lock).
    """
    run_dir = Path(run_dir)
    if unique:
        check_can_create(run_dir)
    else:
        check_new_run_dir(run_dir)
    try:
        run_dir.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise write_failed(run_dir.parent, e, "choose another --runs-dir") from e
    for i in range(1, tries + 1) if unique else ():
        candidate = run_dir if i == 1 else run_dir.with_name(f"{run_dir.name}-{i}")
        try:
            candidate.mkdir()
        except FileExistsError:
            continue
        except OSError as e:
            raise write_failed(candidate, e, "choose another --runs-dir") from e
        return candidate
    if unique:
        raise RunError(f"{tries} runs named {run_dir.name}[-N] exist already; give --name")
    try:
        run_dir.mkdir(exist_ok=True)
    except OSError as e:
        raise write_failed(run_dir, e, "choose another --runs-dir") from e
    return run_dir


def remove_if_empty(run_dir: Path) -> None:
    """Undo :func:`claim_run_dir` for a run that failed before writing anything."""
    with contextlib.suppress(OSError):
        Path(run_dir).rmdir()


def check_evaluable(run_dir: Path) -> None:
    """A run is evaluated from its checkpoint; say what to do when it has none (yet)."""
    if checkpoint_file(run_dir).is_file():
        return
    holder = lock_holder(run_dir)
    if holder is not None:
        raise RunError(
            f"{run_dir} has no checkpoint to evaluate yet: it is being trained by {holder}; "
            "evaluate it once its first epoch is checkpointed"
        )
    raise RunError(
        f"{run_dir} has no checkpoint to evaluate: its training stopped before the first "
        f"checkpoint; move it aside ({_move_aside(run_dir)}), train the run again with the "
        "command that created it, then evaluate the new run"
    )


def check_resumable(run_dir: Path, manifest: dict[str, Any]) -> None:
    """A run can be resumed only from a checkpoint; without one the way out is the same as for
    a new run in its place (:func:`check_new_run_dir`)."""
    if not checkpoint_file(run_dir).is_file():
        raise RunError(
            f"{run_dir} holds no checkpoint (the run stopped before its first one, so there is "
            f"nothing to resume); move it aside ({_move_aside(run_dir)}) and start the run "
            "again with the command that created it"
        )


def check_writable(run_dir: Path, manifest: dict[str, Any]) -> None:
    """Refuse to append to a run whose logs have an older schema version than this writer's."""
    version = manifest.get("schema_version")
    if version != schema.SCHEMA_VERSION:
        raise RunError(
            f"run {run_dir} was written with log schema version {version} and this hardstat "
            f"writes version {schema.SCHEMA_VERSION}; it can be analysed but not continued "
            "(start a new run, or use the hardstat release that wrote it)"
        )


def new_manifest(
    run: str,
    *,
    config: dict[str, Any],
    dataset: dict[str, Any],
    queue_size: int,
    negatives: str = "queue",
    band: str,
    band_kept: int,
    seed: int,
    versions: dict[str, str],
    device: str,
    processes: int = 1,
) -> dict[str, Any]:
    """A fresh manifest (fields documented in :data:`hardstat.schema.MANIFEST_FIELDS`)."""
    manifest = {
        "schema_version": schema.SCHEMA_VERSION,
        "run": run,
        "created": now_iso(),
        "status": "running",
        "config": config,
        "dataset": dataset,
        "queue_size": queue_size,
        "negatives": negatives,
        "band": band,
        "band_kept": band_kept,
        "seed": seed,
        "versions": versions,
        "device": device,
        "processes": processes,
        "steps_done": 0,
        "epochs_done": 0,
    }
    return manifest


def update_manifest(run_dir: Path, **fields: Any) -> dict[str, Any]:
    data = read_manifest(run_dir)
    data.update(fields)
    write_json_atomic(
        Path(run_dir) / schema.MANIFEST_FILE,
        data,
        todo=f"resume the run with: hardstat train --resume {_quoted(run_dir)}",
    )
    return data


def _quoted(path: Path | str) -> str:
    import shlex

    return shlex.quote(str(path))


# -- locks ---------------------------------------------------------------------------------------
class RunLock:
    """An exclusive lock on a run directory (or, ``what="sweep"``, a sweep directory).

    ``RUN/.lock`` is locked with ``flock`` on a descriptor held until :meth:`release` (or the
    process's end: the kernel drops the lock of a dead process, so a stale lock file never
    blocks anyone). The holder writes its pid, host, start time and command into the file for
    the message of whoever is refused. ``shared=True`` takes a shared lock instead (Slurm array
    tasks of one sweep share the sweep directory; a whole-sweep invocation excludes them).

    On NFS, ``flock`` is carried out as a POSIX lock on the server (Linux clients since 2.6.12),
    so it holds across machines; a mount with ``local_lock=flock`` or ``nolock`` only sees locks
    of its own machine. Set ``HARDSTAT_LOCK=off`` where the file system cannot lock at all.
    """

    def __init__(self, directory: Path, *, what: str = "run") -> None:
        self.directory = Path(directory)
        self.path = self.directory / LOCK_FILE
        self.what = what
        self._fd: int | None = None

    def acquire(self, *, shared: bool = False) -> RunLock:
        import fcntl

        if os.environ.get("HARDSTAT_LOCK", "").lower() == "off":
            return self
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as e:
            raise write_failed(
                self.path,
                e,
                f"try again (a process that writes to a {self.what} needs to lock it)",
            ) from e
        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise RunInUseError(
                f"{self.what} {self.directory} is in use by {holder} (lock {self.path}); wait "
                "for that process to finish or stop it, then try again"
            ) from None
        except OSError as e:
            os.close(fd)
            raise RunError(
                f"cannot lock {self.path} ({os_reason(e)}): this file system does not support "
                "locks; set HARDSTAT_LOCK=off to go on without one (then never run two "
                f"processes on one {self.what})"
            ) from e
        if not shared:
            info = (
                f"pid {os.getpid()} host {socket.gethostname()} since {now_iso()} "
                f"command {' '.join(sys.argv)[:200]}\n"
            )
            try:
                os.ftruncate(fd, 0)
                os.pwrite(fd, info.encode(errors="replace"), 0)
            except OSError:
                pass  # the lock holds without its description (e.g. disk full)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> RunLock:
        return self if self.held else self.acquire()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


def _holder(fd: int) -> str:
    """Who holds the lock, from the lock file's text ("process 123 on host x since ...")."""
    try:
        text = os.pread(fd, 1000, 0).decode(errors="replace")
    except OSError:
        text = ""
    m = re.match(r"pid (\d+) host (\S+) since (\S+)", text)
    if not m:
        return "another hardstat process"
    from hardstat.display import printable

    return printable(f"process {m.group(1)} on host {m.group(2)} (since {m.group(3)})")


def lock_holder(directory: Path) -> str | None:
    """Who holds the lock of ``directory`` ("process 123 on host x (since ...)"), or None when
    nobody does."""
    import fcntl

    if os.environ.get("HARDSTAT_LOCK", "").lower() == "off":
        return None
    try:
        fd = os.open(Path(directory) / LOCK_FILE, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return _holder(fd)
    except OSError:
        return None
    finally:
        os.close(fd)
    return None


def lock_state(directory: Path) -> str:
    """``held`` (a process holds the lock of this run), ``free`` (a lock file nobody holds: the
    process that wrote it has ended) or ``none`` (no lock file: an older run, or a copy)."""
    import fcntl

    path = Path(directory) / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return "none"
    except OSError:
        return "none"
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return "held"
    except OSError:
        return "none"
    finally:
        os.close(fd)
    return "free"


def effective_status(run_dir: Path, manifest: dict[str, Any]) -> str:
    """The manifest's status, except that a run the manifest calls ``running`` whose lock no
    process holds any more is ``crashed`` (its training process died: resume it)."""
    status = str(manifest.get("status"))
    if status == "running" and lock_state(run_dir) == "free":
        return "crashed"
    return status
