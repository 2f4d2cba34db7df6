"""Crash safety, on demand: kill a training run again and again, resume it each time, and compare
the result with an uninterrupted run of the same configuration.

Modes (each prints a table and a one-line verdict; ``--json FILE`` saves the figures):

* ``kill``: SIGKILL at chosen moments, ``--kills`` times on one run, each followed by
  ``hardstat train --resume``: at a random time, while a checkpoint is being written (its
  hidden temporary file exists), right after a log flush (a new part file appears) and right
  after an epoch-end kNN evaluation (before its checkpoint). A run killed before its first
  checkpoint is moved aside and started again, as the error message says.
* ``term`` / ``int``: SIGTERM / SIGINT at random times: the run must stop cleanly (exit 130,
  status ``interrupted``, no traceback) and resume.
* ``torchrun``: two CPU processes under torchrun; SIGKILL one worker at a random time, resume
  with torchrun each time.
* ``concurrent``: the issue's reproduction, repeated: a run stopped with ``--stop-after``, then
  two ``hardstat train --resume`` started together. One must refuse with one line, the other
  finish, the log read.
* ``diskfull`` (root only): a real tmpfs too small for the run; training must fail with one
  line, keep its previous checkpoint, and resume after the file system is enlarged.

Every mode checks the final log against the uninterrupted run: rows lost and duplicated (in
``steps``, ``pairs``, ``queries``, ``evals``), unreadable files (every file read by DuckDB) and
the final weights (bit-identical on CPU).

    python bench/crash_safety.py --mode kill --kills 24
    python bench/crash_safety.py --mode all --json crash.json
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable
# tiny preset: 512 synthetic images, B = 64 (8 steps per epoch), K = 256, 6 epochs = 48 steps,
# a checkpoint every ~0.3 s by time as well as at every epoch's end
TRAIN = [
    *("--preset", "tiny", "--epochs", "6", "--threads", "1", "--device", "cpu", "-q"),
    *("--set", "checkpoint_minutes=0.005"),
]
STEPS = 48
KEYS = {
    "steps": "step",
    "pairs": "step, query_id, rank, neg_id, similarity, in_band, key_step, process",
    "queries": "step, query_id, process",
    "evals": "step, epoch, kind, top1",
}


def env() -> dict[str, str]:
    e = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        e.pop(var, None)
    return e


def hardstat(*args: str, torchrun: int = 0) -> list[str]:
    if torchrun:
        launcher = [PY, "-m", "torch.distributed.run", "--standalone"]
        return [*launcher, "--nproc-per-node", str(torchrun), "-m", "hardstat", *args]
    return [PY, "-m", "hardstat", *args]


def run(args: list[str], timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, env=env(), timeout=timeout)


# -- comparing a run with the reference --------------------------------------------------------
def table_rows(run_dir: Path, table: str) -> list[tuple[Any, ...]]:
    import duckdb

    files = sorted(str(p) for p in (run_dir / table).glob("*.parquet"))
    if not files:
        return []
    cols = KEYS[table]
    # kNN monitor rows only (a linear probe is not part of training)
    where = "WHERE kind = 'knn'" if table == "evals" else ""
    return (
        duckdb.connect()
        .execute(f"SELECT {cols} FROM read_parquet(?) {where} ORDER BY {cols}", [files])
        .fetchall()
    )


def compare(run_dir: Path, reference: Path) -> dict[str, Any]:
    """Rows lost / duplicated per table, unreadable files, identical weights."""
    from collections import Counter

    import torch

    out: dict[str, Any] = {"lost": 0, "duplicated": 0, "tables": {}}
    for table in KEYS:
        got, want = Counter(table_rows(run_dir, table)), Counter(table_rows(reference, table))
        lost = sum((want - got).values())
        dup = sum(n - 1 for n in got.values() if n > 1) + sum((got - want).values())
        out["tables"][table] = {"rows": sum(got.values()), "lost": lost, "duplicated": dup}
        out["lost"] += lost
        out["duplicated"] += dup
    read = run(hardstat("sql", str(run_dir), "SELECT count(*) FROM pairs"))
    out["readable"] = read.returncode == 0
    a = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    b = torch.load(reference / "checkpoints" / "last.pt", weights_only=True)
    out["weights_identical"] = a["step"] == b["step"] and all(
        torch.equal(a["model"][k], b["model"][k]) for k in b["model"]
    )
    out["status"] = json.loads((run_dir / "manifest.json").read_text())["status"]
    return out


def reference_run(root: Path, torchrun: int = 0) -> Path:
    ref = root / "reference"
    if not (ref / "checkpoints" / "last.pt").is_file():
        done = run(hardstat("train", *TRAIN, "--out", str(root), "--name", "reference",
                            torchrun=torchrun))  # fmt: skip
        assert done.returncode == 0, done.stderr[-2000:]
    return ref


# -- killing at chosen moments -----------------------------------------------------------------
class Watch:
    """A training process and what it is doing (stderr lines, files appearing)."""

    def __init__(self, args: list[str], run_dir: Path) -> None:
        self.started = time.time()
        self.proc = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env()
        )
        self.run_dir = run_dir
        self.lines: list[str] = []
        self.evals = 0
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)
            if "kNN top-1" in line:
                self.evals += 1

    def done(self) -> bool:
        return self.proc.poll() is not None

    def steps_files(self) -> int:
        folder = self.run_dir / "steps"
        return len(list(folder.glob("*.parquet"))) if folder.is_dir() else 0

    def checkpoint_writing(self) -> bool:
        return (self.run_dir / "checkpoints" / ".last.pt.tmp").exists()


def wait_for(moment: str, w: Watch, rng: random.Random, limit: float = 30) -> str:
    """Block until the chosen moment (or a random time if it does not come); returns what
    happened."""
    t_end = time.monotonic() + limit
    if moment == "random":
        time.sleep(rng.uniform(2.5, 7.0))  # interpreter start and torch import take ~2-3 s
        return "random"
    if moment == "training":  # a random time once this process has checkpointed (trains)
        checkpoint = w.run_dir / "checkpoints" / "last.pt"

        def written_since_start() -> bool:
            try:
                return checkpoint.stat().st_mtime > w.started
            except OSError:
                return False

        while time.monotonic() < t_end and not w.done() and not written_since_start():
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.5))
        return "training"
    evals, flushes = w.evals, w.steps_files()
    started = time.monotonic()
    while time.monotonic() < t_end and not w.done():
        if moment == "checkpoint" and w.checkpoint_writing():
            return "checkpoint"
        if moment == "flush" and w.steps_files() > flushes and time.monotonic() - started > 2:
            return "flush"
        if moment == "eval" and w.evals > evals:
            return "eval"
        time.sleep(0.0005)
    return "missed"


def kill_cycle(
    root: Path, name: str, kills: int, sig: signal.Signals, moments: list[str], seed: int,
    torchrun: int = 0,
) -> dict[str, Any]:  # fmt: skip
    """Start the run, signal it ``kills`` times (resuming after each), then let it finish."""
    rng = random.Random(seed)
    run_dir = root / name
    hit: dict[str, int] = {}
    restarts = 0
    refusals: list[str] = []
    tracebacks = 0
    exits: dict[str, int] = {}
    left: dict[str, int] = {}
    for i in range(kills):
        first = not (run_dir / "manifest.json").is_file()  # (a lock file alone is no run)
        args = (
            hardstat("train", *TRAIN, "--out", str(root), "--name", name, torchrun=torchrun)
            if first
            else hardstat("train", "--resume", str(run_dir), torchrun=torchrun)
        )
        w = Watch(args, run_dir)
        moment = moments[i % len(moments)]
        what = wait_for(moment, w, rng)
        if w.done():  # finished (or failed) before the moment: note and go on
            what = f"{moment}: ended first (exit {w.proc.returncode})"
        else:
            if torchrun:  # one worker process (a child of the launcher)
                workers = children(w.proc.pid)
                victim = rng.choice(workers) if workers else w.proc.pid
                what += f" (worker {workers.index(victim)})" if workers else " (launcher)"
                os.kill(victim, sig)
            else:
                w.proc.send_signal(sig)
        try:
            w.proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            w.proc.kill()
            w.proc.wait()
        time.sleep(0.2)
        hit[what] = hit.get(what, 0) + 1
        code = str(w.proc.returncode)
        exits[code] = exits.get(code, 0) + 1
        if (run_dir / "manifest.json").is_file():  # how the run was left
            status = json.loads((run_dir / "manifest.json").read_text())["status"]
            left[f"exit {code}: {status}"] = left.get(f"exit {code}: {status}", 0) + 1
        text = "".join(w.lines)
        # under torchrun the launcher reports a dead worker with its own traceback
        # (ChildFailedError); only the training processes' count ("[rankN]: Traceback")
        tracebacks += ("]: Traceback" in text) if torchrun else ("Traceback" in text)
        no_checkpoint = not (run_dir / "checkpoints" / "last.pt").is_file()
        if (run_dir / "manifest.json").is_file() and no_checkpoint:
            # killed before its first checkpoint: the one way out the message gives
            refusals.append(text.strip().splitlines()[-1] if text.strip() else "")
            shutil.move(run_dir, root / f"{name}.failed-{i}")
            restarts += 1
    # let it finish
    for _ in range(5):
        if (run_dir / "manifest.json").is_file():
            args = hardstat("train", "--resume", str(run_dir), torchrun=torchrun)
        else:
            args = hardstat("train", *TRAIN, "--out", str(root), "--name", name, torchrun=torchrun)
        final = run(args)
        if (
            final.returncode == 0
            and json.loads((run_dir / "manifest.json").read_text())["status"] == "finished"
        ):
            break
    return {
        "signals": kills,
        "moments": hit,
        "exit_codes": exits,
        "left_as": left,
        "restarted_before_first_checkpoint": restarts,
        "tracebacks": tracebacks,
    }


def children(pid: int) -> list[int]:
    """Worker processes of a torchrun launcher (its children that run hardstat)."""
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


# -- modes ---------------------------------------------------------------------------------------
def mode_signals(root: Path, sig: signal.Signals, kills: int, seed: int) -> dict[str, Any]:
    ref = reference_run(root)
    moments = ["random", "checkpoint", "flush", "eval"] if sig == signal.SIGKILL else ["training"]
    name = f"{sig.name.lower()}-run"
    result = kill_cycle(root, name, kills, sig, moments, seed)
    result.update(compare(root / name, ref))
    clean = sig != signal.SIGKILL
    result["ok"] = (
        result["lost"] == 0
        and result["duplicated"] == 0
        and result["readable"]
        and result["weights_identical"]
        and result["status"] == "finished"
        and (not clean or result["tracebacks"] == 0)
        # a clean stop: a signal during training ends with exit 130 and status interrupted;
        # one that arrives after the last checkpoint (the run is finished) may end the process
        and (
            not clean
            or all(
                k in ("exit 130: interrupted", "exit 0: finished") or k.endswith(": finished")
                for k in result["left_as"]
            )
        )
    )
    return result


def mode_torchrun(root: Path, kills: int, seed: int) -> dict[str, Any]:
    ref_root = root / "ddp"
    ref_root.mkdir(exist_ok=True)
    ref = reference_run(ref_root, torchrun=2)
    result = kill_cycle(ref_root, "killed", kills, signal.SIGKILL, ["training"], seed, torchrun=2)
    result.update(compare(ref_root / "killed", ref))
    result["ok"] = (
        result["lost"] == 0 and result["duplicated"] == 0 and result["readable"]
        and result["weights_identical"] and result["status"] == "finished"
        and result["tracebacks"] == 0
    )  # fmt: skip
    return result


def mode_concurrent(root: Path, trials: int) -> dict[str, Any]:
    """``hardstat train --resume runs/C -q & hardstat train --resume runs/C -q & wait``."""
    base = root / "concurrent"
    base.mkdir(exist_ok=True)
    seed_run = base / "C0"
    if not seed_run.exists():
        stopped = run(hardstat("train", *TRAIN, "--out", str(base), "--name", "C0",
                               "--stop-after", "16"))  # fmt: skip
        assert stopped.returncode == 0, stopped.stderr[-2000:]
    ref = reference_run(root)
    outcomes: list[dict[str, Any]] = []
    for i in range(trials):
        run_dir = base / f"C{i + 1}"
        if run_dir.exists():
            shutil.rmtree(run_dir)
        shutil.copytree(seed_run, run_dir)
        procs = [
            subprocess.Popen(hardstat("train", "--resume", str(run_dir), "-q"),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env())
            for _ in range(2)
        ]  # fmt: skip
        results = [(p.wait(timeout=600), p.stderr.read() if p.stderr else "") for p in procs]
        codes = sorted(code for code, _ in results)
        refusal = [err for code, err in results if code == 1]
        one_line = bool(refusal) and all(
            len(err.strip().splitlines()) == 1 and "is in use by process" in err for err in refusal
        )
        check = compare(run_dir, ref)
        outcomes.append(
            {
                "codes": codes,
                "refusal": refusal[0].strip() if refusal else None,
                "one_line_refusal": one_line,
                "lost": check["lost"],
                "duplicated": check["duplicated"],
                "readable": check["readable"],
                "weights_identical": check["weights_identical"],
            }
        )
    ok = all(
        o["codes"] == [0, 1] and o["one_line_refusal"] and o["readable"] and o["lost"] == 0
        and o["duplicated"] == 0 and o["weights_identical"]
        for o in outcomes
    )  # fmt: skip
    return {"trials": trials, "outcomes": outcomes, "ok": ok}


def mode_diskfull(root: Path) -> dict[str, Any]:
    """A real tmpfs of 1 MiB: the run fills it, fails with one line, keeps its checkpoint, and
    resumes once the file system is enlarged to 8 MiB."""
    if os.geteuid() != 0:
        return {"skipped": "needs root to mount a tmpfs", "ok": None}
    mount = Path(tempfile.mkdtemp(prefix="hardstat-full-"))
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], check=True)
    try:
        first = run(hardstat("train", *TRAIN, "--out", str(mount), "--name", "r"))
        run_dir = mount / "r"
        step = None
        if (run_dir / "checkpoints" / "last.pt").is_file():
            import torch

            step = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["step"]
        errors = [line for line in first.stderr.splitlines() if line.startswith("Error: ")]
        subprocess.run(["mount", "-o", "remount,size=8m", str(mount)], check=True)
        resumed = run(hardstat("train", "--resume", str(run_dir), "-q"))
        result = {
            "first_exit": first.returncode,
            "error": errors[0] if errors else None,
            "traceback": "Traceback" in first.stderr,
            "checkpoint_step_kept": step,
            "resumed_exit": resumed.returncode,
        }
        result.update(compare(run_dir, reference_run(root)))
        result["ok"] = (
            first.returncode == 1 and len(errors) == 1 and not result["traceback"]
            and step is not None and resumed.returncode == 0 and result["lost"] == 0
            and result["duplicated"] == 0 and result["weights_identical"]
        )  # fmt: skip
        return result
    finally:
        subprocess.run(["umount", str(mount)], check=False)
        mount.rmdir()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--mode",
        choices=["kill", "term", "int", "torchrun", "concurrent", "diskfull", "all"],
        default="all",
    )
    parser.add_argument("--kills", type=int, default=24, help="SIGKILLs on one run (kill mode)")
    parser.add_argument("--stops", type=int, default=10, help="SIGTERMs / SIGINTs (term, int)")
    parser.add_argument("--worker-kills", type=int, default=5, help="SIGKILLs under torchrun")
    parser.add_argument("--trials", type=int, default=20, help="concurrent-resume repetitions")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--root", type=Path, help="work directory (default: a temporary one)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()
    root = args.root or Path(tempfile.mkdtemp(prefix="hardstat-crash-"))
    root.mkdir(parents=True, exist_ok=True)
    modes: dict[str, Callable[[], dict[str, Any]]] = {
        "kill": lambda: mode_signals(root, signal.SIGKILL, args.kills, args.seed),
        "term": lambda: mode_signals(root, signal.SIGTERM, args.stops, args.seed + 1),
        "int": lambda: mode_signals(root, signal.SIGINT, args.stops, args.seed + 2),
        "torchrun": lambda: mode_torchrun(root, args.worker_kills, args.seed + 3),
        "concurrent": lambda: mode_concurrent(root, args.trials),
        "diskfull": lambda: mode_diskfull(root),
    }
    chosen = list(modes) if args.mode == "all" else [args.mode]
    report: dict[str, Any] = {"root": str(root)}
    for name in chosen:
        t0 = time.monotonic()
        result = modes[name]()
        result["seconds"] = round(time.monotonic() - t0, 1)
        report[name] = result
        brief = {k: v for k, v in result.items() if k not in ("outcomes", "tables")}
        print(f"{name}: {json.dumps(brief)}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    verdicts = [report[n]["ok"] for n in chosen if report[n].get("ok") is not None]
    print("ALL OK" if all(verdicts) else "FAILURES (see above)")
    sys.exit(0 if all(verdicts) else 1)


if __name__ == "__main__":
    main()
