"""Band-ablation sweeps: a grid of bands x seeds trained as runs of one directory (no torch here).

A sweep directory holds ``sweep.json`` (the plan: the sweep spec, every run's resolved config,
name and exact ``hardstat train`` command, and a snapshot of each run's status) and one run
directory per (band, seed), named ``<band-slug>-s<seed>``::

    DIR/
      sweep.json          the plan and a status snapshot (each run's manifest is authoritative)
      sweep.sbatch        the Slurm job array (``--launcher slurm`` only)
      0-100-s0/           a run (manifest.json, log tables, checkpoints/last.pt)
      0-5-s0/ ...
      .failed/NAME-TIME/  run directories that died before their first checkpoint, set aside

Runs are ordered seed-major (every band of the first seed, then the next seed), so a partial
sweep already compares all bands. Executing a sweep (:func:`execute`) skips finished runs,
resumes interrupted ones from their checkpoint, moves aside those that died before their first
checkpoint and starts the rest; it is safe to repeat. With a :class:`LinearProbe` it then
evaluates every finished run as ``hardstat eval RUN --linear`` does (the run's own ``evals``
table says whether that probe is done, so a repeated sweep skips finished probes and redoes
interrupted ones). Torch is imported only inside :func:`execute`, which trains and probes.
"""

from __future__ import annotations

import datetime as _dt
import json
import shlex
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import hardstat
from hardstat import config as cfg
from hardstat import runs, schema
from hardstat.bands import parse_band
from hardstat.errors import ConfigError, HardstatError, LogError, RunError

SWEEP_FILE = "sweep.json"
SBATCH_FILE = "sweep.sbatch"
FAILED_DIR = ".failed"
FORMAT = "hardstat-sweep-1"
CHECKPOINT = Path("checkpoints") / "last.pt"  # hardstat.train.checkpoint.checkpoint_path

STATUSES = ("pending", "running", "interrupted", "finished", "failed")
"""Run statuses: no directory yet; the run manifest's running/interrupted (with a checkpoint to
resume from); finished; failed = a directory without a checkpoint that is not finished (the run
died before its first checkpoint; it is set aside and restarted)."""

# Overrides that `hardstat train` has a named option for; others are written as --set KEY=VALUE.
_NAMED_OPTIONS: dict[str, tuple[str, type]] = {
    "data.dataset": ("--dataset", str),
    "optim.epochs": ("--epochs", int),
    "data.subset": ("--subset", int),
}
_PER_RUN = ("band", "seed")
PROBE_STATUSES = ("done", "pending")
"""A finished run's linear probe: done = its evals table holds a linear evaluation of the final
step with the sweep's probe settings; pending = not yet (or interrupted: a probe writes its row
only when it completes)."""


# -- spec ----------------------------------------------------------------------------------------
def parse_bands(text: str) -> tuple[str, ...]:
    """Comma-separated band specs (a union inside one band joined with '+') -> canonical specs."""
    items = [t.strip() for t in text.split(",")]
    if not text.strip() or any(not t for t in items):
        raise ConfigError(
            f"malformed band list {text!r}; separate bands with ',' and join the ranges of a "
            "union with '+', e.g. '0-100,0-5,5-100,0-5+50-55,random:5,random=5-100'"
        )
    bands = tuple(parse_band(t).spec for t in items)
    _no_duplicates(bands, "band")
    return bands


def parse_seeds(text: str) -> tuple[int, ...]:
    """Comma-separated non-negative integers, e.g. ``0,1,2``."""
    try:
        seeds = tuple(int(t) for t in text.split(","))
    except ValueError:
        seeds = (-1,)
    if any(s < 0 for s in seeds):
        raise ConfigError(f"malformed seed list {text!r}; use integers >= 0 such as '0,1,2'")
    _no_duplicates(tuple(str(s) for s in seeds), "seed")
    return seeds


def _no_duplicates(items: tuple[str, ...], what: str) -> None:
    dupes = sorted({x for x in items if items.count(x) > 1})
    if dupes:
        raise ConfigError(f"{what} {', '.join(dupes)} is listed twice; list each {what} once")


def band_slug(band: str) -> str:
    """A band spec as a file name: ``0-5,50-55`` -> ``0-5+50-55``, ``random:5`` -> ``random5``,
    ``random=0-5,50-55`` -> ``random=0-5+50-55``."""
    return parse_band(band).spec.replace(",", "+").replace(":", "")


def run_name(band: str, seed: int) -> str:
    return runs.check_run_name(f"{band_slug(band)}-s{seed}")


@dataclass(frozen=True)
class SweepSpec:
    """What a sweep is: bands x seeds over one base configuration.

    The base configuration is the preset, then the config file's contents (``config``), then
    ``overrides`` (dotted config keys, as from ``--dataset``, ``--epochs``, ``--subset``,
    ``--set``); each run then sets ``band`` and ``seed``. ``config_file`` (where the file was)
    is kept for the commands only: two specs are the same sweep when everything else is equal.
    """

    bands: tuple[str, ...]
    seeds: tuple[int, ...] = (0,)
    preset: str = "tiny"
    config: Mapping[str, Any] | None = None
    config_file: str | None = None
    overrides: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.bands or not self.seeds:
            raise ConfigError("a sweep needs at least one band and one seed")
        cfg.preset(self.preset)
        clash = sorted(k for k in self.overrides if k in _PER_RUN)
        if clash:
            raise ConfigError(
                f"the sweep sets {' and '.join(clash)} for each run; use --bands and --seeds, "
                f"not --set {clash[0]}=..."
            )

    @classmethod
    def build(
        cls,
        bands: str,
        seeds: str = "0",
        *,
        preset: str = "tiny",
        config_file: Path | None = None,
        overrides: Mapping[str, Any] | None = None,
    ) -> SweepSpec:
        """A spec from command-line text; reads the config file (TOML or JSON) now."""
        return cls(
            bands=parse_bands(bands),
            seeds=parse_seeds(seeds),
            preset=preset,
            config=cfg.load_config_file(config_file) if config_file is not None else None,
            config_file=str(Path(config_file).resolve()) if config_file is not None else None,
            overrides=dict(overrides or {}),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "bands": list(self.bands),
            "seeds": list(self.seeds),
            "preset": self.preset,
            "config_file": self.config_file,
            "config": _plain(self.config),
            "overrides": _plain(dict(sorted(self.overrides.items()))),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SweepSpec:
        return cls(
            bands=tuple(d["bands"]),
            seeds=tuple(int(s) for s in d["seeds"]),
            preset=d["preset"],
            config=d.get("config"),
            config_file=d.get("config_file"),
            overrides=dict(d.get("overrides") or {}),
        )

    def identity(self) -> dict[str, Any]:
        """What makes two specs the same sweep (everything but where the config file was)."""
        d = self.to_dict()
        del d["config_file"]
        return d

    def base_config(self) -> cfg.TrainConfig:
        base = cfg.preset(self.preset).to_dict()
        if self.config is not None:
            base = cfg.merge_dicts(base, dict(self.config))
        return cfg.TrainConfig.from_dict(base).replace(**dict(self.overrides))


def _plain(value: Any) -> Any:
    """JSON-normalized copy (tuples -> lists), so specs compare equal after a round trip."""
    return json.loads(json.dumps(value))


@dataclass(frozen=True)
class LinearProbe:
    """The linear probe a sweep runs on every finished run (``--eval linear``): the same as
    ``hardstat eval RUN --linear --epochs EPOCHS --lr LR``. Not part of a sweep's identity: it
    can be added to (or changed on) a recorded sweep."""

    epochs: int = 100
    lr: float = 0.1

    def __post_init__(self) -> None:
        if self.epochs < 1 or not self.lr > 0:
            raise ConfigError(
                f"linear probe: --linear-epochs must be >= 1 and --linear-lr > 0 (got "
                f"{self.epochs} and {self.lr})"
            )

    def to_dict(self) -> dict[str, Any]:
        return {"linear": {"epochs": self.epochs, "lr": self.lr}}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> LinearProbe | None:
        if not d or not d.get("linear"):
            return None
        return cls(epochs=int(d["linear"]["epochs"]), lr=float(d["linear"]["lr"]))

    def options(self) -> list[str]:
        """The ``hardstat sweep`` options that ask for this probe."""
        epochs, lr = str(self.epochs), repr(self.lr)
        return ["--eval", "linear", "--linear-epochs", epochs, "--linear-lr", lr]


# -- plan ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PlannedRun:
    """One run of a sweep: where it goes, its resolved config and its ``hardstat train`` line."""

    index: int
    name: str
    band: str
    seed: int
    config: cfg.TrainConfig
    command: str


@dataclass(frozen=True)
class Sweep:
    out: Path
    spec: SweepSpec
    runs: tuple[PlannedRun, ...]
    created: str
    hardstat_version: str
    probe: LinearProbe | None = None

    @property
    def manifest_path(self) -> Path:
        return self.out / SWEEP_FILE

    def run_dir(self, run: PlannedRun) -> Path:
        return self.out / run.name

    def resume_command(self, run: PlannedRun) -> str:
        return shlex.join(["hardstat", "train", "--resume", str(self.run_dir(run))])

    def with_probe(self, probe: LinearProbe | None) -> Sweep:
        """The same sweep with another linear probe (None: none); saved by the next
        :func:`save`."""
        return replace(self, probe=probe)

    def eval_command(self, run: PlannedRun) -> str | None:
        """The ``hardstat eval`` command of this run's linear probe (None without a probe)."""
        if self.probe is None:
            return None
        args = ["hardstat", "eval", str(self.run_dir(run)), "--linear", "--no-knn"]
        args += ["--epochs", str(self.probe.epochs), "--lr", repr(self.probe.lr)]
        return shlex.join([*args, "--device", run.config.device])

    def check_index(self, index: int) -> PlannedRun:
        if not 0 <= index < len(self.runs):
            raise ConfigError(
                f"--index {index} is out of range: the sweep in {self.out} has "
                f"{len(self.runs)} runs (0 to {len(self.runs) - 1})"
            )
        return self.runs[index]


def format_override(key: str, value: Any) -> str:
    """``KEY=VALUE`` for ``hardstat train --set`` that parses back to exactly ``value``."""
    if isinstance(value, str):
        try:
            json.loads(value)
        except ValueError:
            return f"{key}={value}"
    return f"{key}={json.dumps(value)}"


def train_command(spec: SweepSpec, out: Path, band: str, seed: int, name: str) -> str:
    """The ``hardstat train`` command line that trains this run exactly (shell-quoted)."""
    args = ["hardstat", "train", "--preset", spec.preset]
    if spec.config_file is not None:
        args += ["--config", spec.config_file]
    sets: list[str] = []
    for key, value in sorted(spec.overrides.items()):
        named = _NAMED_OPTIONS.get(key)
        if named and isinstance(value, named[1]) and not isinstance(value, bool):
            args += [named[0], str(value)]
        else:
            sets += ["--set", format_override(key, value)]
    args += [*sets, "--band", band, "--seed", str(seed), "--out", str(out), "--name", name]
    for arg in args:  # a newline would end the command (and a comment) in a script
        runs.check_text(arg, "a value of the sweep's commands")
    return shlex.join(args)


def plan(spec: SweepSpec, out: Path) -> Sweep:
    """Every run of the sweep, seed-major, with validated configs. Writes nothing."""
    out = Path(out).resolve()
    base = spec.base_config()
    planned: list[PlannedRun] = []
    for seed in spec.seeds:
        for band in spec.bands:
            name = run_name(band, seed)
            try:
                config = base.replace(band=band, seed=seed)
            except ConfigError as e:
                raise ConfigError(f"run {name}: {e}") from e
            command = train_command(spec, out, band, seed, name)
            planned.append(PlannedRun(len(planned), name, band, seed, config, command))
    return Sweep(out, spec, tuple(planned), runs.now_iso(), hardstat.__version__)


def load(out: Path) -> Sweep | None:
    """The sweep recorded in ``out/sweep.json``, or None when there is none.

    Runs keep their recorded configs; commands are rendered for the directory where the sweep
    is found now (so a moved sweep directory still gives working commands).
    """
    out = Path(out).resolve()
    path = out / SWEEP_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
        if data.get("format") != FORMAT:
            raise RunError(
                f"{path} is not a hardstat sweep manifest (format {data.get('format')!r}, "
                f"expected {FORMAT}); use another --out"
            )
        spec = SweepSpec.from_dict(data["spec"])
        planned = tuple(
            PlannedRun(
                i,
                runs.check_run_name(r["name"]),  # one path component: never outside the sweep
                r["band"],
                int(r["seed"]),
                cfg.TrainConfig.from_dict(r["config"]),
                train_command(spec, out, r["band"], int(r["seed"]), r["name"]),
            )
            for i, r in enumerate(data["runs"])
        )
        created, version = str(data["created"]), str(data["hardstat_version"])
        probe = LinearProbe.from_dict(data.get("eval"))
    except (OSError, ValueError, KeyError, TypeError, AttributeError, ConfigError) as e:
        raise RunError(
            f"{path} is unreadable or corrupt ({type(e).__name__}: {e}); restore it or use "
            "another --out"
        ) from e
    return Sweep(out, spec, planned, created, version, probe)


def open_sweep(out: Path, spec: SweepSpec | None) -> Sweep:
    """The sweep at ``out``: the recorded one (``spec`` None, or the same spec, with its recorded
    linear probe) or a new plan (without one; see :meth:`Sweep.with_probe`).

    Raises ConfigError when ``out`` records a different sweep, RunError when ``spec`` is None and
    nothing is recorded. Writes nothing.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise RunError(f"{out} is a file; give a directory as --out")
    if (out / schema.MANIFEST_FILE).is_file():
        raise RunError(f"{out} is a run directory, not a sweep directory; choose another --out")
    existing = load(out)
    if spec is None:
        if existing is None:
            raise RunError(
                f"no sweep in {out} (no {SWEEP_FILE}); plan one with --bands and --seeds"
            )
        return existing
    fresh = plan(spec, out)
    if existing is None:
        return fresh
    old, new = existing.spec.identity(), spec.identity()
    for key in old:
        if old[key] != new[key]:
            raise ConfigError(
                f"{existing.manifest_path} records another sweep ({key}: "
                f"{json.dumps(old[key], sort_keys=True)} there, "
                f"{json.dumps(new[key], sort_keys=True)} here); continue it with "
                f"'{_continue(existing.out)}' or choose another --out"
            )
    for a, b in zip(existing.runs, fresh.runs, strict=True):
        if a.name != b.name or a.config != b.config:
            raise ConfigError(
                f"{existing.manifest_path} planned run {a.name} with another config than this "
                f"hardstat resolves; continue it with '{_continue(existing.out)}'"
            )
    return existing


def _continue(out: Path) -> str:
    return shlex.join(["hardstat", "sweep", "--out", str(out)])


# -- state ---------------------------------------------------------------------------------------
def run_status(run_dir: Path) -> str:
    """One of :data:`STATUSES`, derived from the run directory and its manifest."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir() or not any(run_dir.iterdir()):
        return "pending"
    try:
        manifest = runs.read_manifest(run_dir)
    except RunError:  # no manifest: died while being created
        return "failed"
    except LogError:  # a damaged manifest: only a run without checkpoint is set aside
        if (run_dir / CHECKPOINT).is_file():
            raise
        return "failed"
    status = str(manifest.get("status"))
    if status == "finished":
        return status
    return status if (run_dir / CHECKPOINT).is_file() else "failed"


def statuses(sweep: Sweep) -> list[str]:
    return [run_status(sweep.run_dir(r)) for r in sweep.runs]


def probe_top1(run_dir: Path, probe: LinearProbe) -> float | None:
    """Top-1 of the run's linear probe with ``probe``'s settings at its final step (the mean if
    there are several), or None when that probe has not completed (or the run has not
    finished)."""
    run_dir = Path(run_dir)
    if run_status(run_dir) != "finished":
        return None
    final = int(runs.read_manifest(run_dir).get("steps_done", 0)) - 1  # the checkpoint's step
    found = [
        row["top1"]
        for row in _evals(run_dir)
        if row["kind"] == "linear"
        and row["step"] == final
        and row["top1"] is not None
        and _same_probe(row["params"], probe)
    ]
    return float(sum(found) / len(found)) if found else None


def probe_status(run_dir: Path, probe: LinearProbe | None) -> str | None:
    """``done`` or ``pending`` (:data:`PROBE_STATUSES`) for a finished run; None without a probe
    or before the run has finished."""
    if probe is None or run_status(run_dir) != "finished":
        return None
    return "pending" if probe_top1(run_dir, probe) is None else "done"


def _same_probe(params: str | None, probe: LinearProbe) -> bool:
    try:
        p = json.loads(params or "{}")
        return int(p.get("epochs")) == probe.epochs and float(p.get("lr")) == probe.lr
    except (ValueError, TypeError):
        return False


def _check_run_config(sweep: Sweep, run: PlannedRun, status: str) -> None:
    """A run directory already there must hold this run (same resolved config)."""
    if status not in ("finished", "running", "interrupted"):
        return
    manifest = runs.read_manifest(sweep.run_dir(run))
    try:
        same = cfg.TrainConfig.from_dict(manifest["config"]) == run.config
    except (ConfigError, KeyError, TypeError):
        same = False
    if not same:
        raise RunError(
            f"{sweep.run_dir(run)} holds a run with another config than the sweep plans for "
            f"{run.name}; move it out of {sweep.out} and run the sweep again"
        )


def save(sweep: Sweep) -> Path:
    """Write ``sweep.json`` (atomically) with a fresh status snapshot; returns its path."""
    now = statuses(sweep)
    data = {
        "format": FORMAT,
        "hardstat_version": sweep.hardstat_version,
        "created": sweep.created,
        "updated": runs.now_iso(),
        "out": str(sweep.out),
        "spec": sweep.spec.to_dict(),
        "eval": sweep.probe.to_dict() if sweep.probe is not None else None,
        "runs": [
            {
                "index": r.index,
                "name": r.name,
                "band": r.band,
                "seed": r.seed,
                "status": status,
                "probe": probe_status(sweep.run_dir(r), sweep.probe),
                "command": r.command,
                "resume_command": sweep.resume_command(r),
                "eval_command": sweep.eval_command(r),
                "config": r.config.to_dict(),
            }
            for r, status in zip(sweep.runs, now, strict=True)
        ],
    }
    sweep.out.mkdir(parents=True, exist_ok=True)
    _write_atomic(sweep.manifest_path, json.dumps(data, indent=2) + "\n")
    return sweep.manifest_path


def _write_atomic(path: Path, text: str) -> None:
    # A per-process temporary name: Slurm array tasks may write sweep.json at the same time.
    # A failure (disk full) leaves the previous file and says what to do.
    runs.write_bytes_atomic(path, text.encode(), todo="run the same sweep command again")


# -- dry run and Slurm ---------------------------------------------------------------------------
def dry_run_lines(sweep: Sweep, indices: Sequence[int] | None = None) -> list[str]:
    """The commands a local execution would run now, one per line; comments for the rest.

    With a linear probe, each run's ``hardstat eval`` line follows its training line (or stands
    alone for a finished run whose probe is pending)."""
    lines: list[str] = []
    for run in _selected(sweep, indices):
        run_dir = sweep.run_dir(run)
        status = run_status(run_dir)
        _check_run_config(sweep, run, status)
        probe = sweep.eval_command(run)
        if status == "finished":
            if probe_status(run_dir, sweep.probe) == "done":
                lines.append(f"# finished, linear probe done: {shlex.quote(str(run_dir))}")
                continue
            lines.append(f"# finished: {shlex.quote(str(run_dir))}")
        elif status in ("running", "interrupted"):
            lines.append(sweep.resume_command(run))
        else:
            if status == "failed":
                lines.append(
                    f"# {shlex.quote(str(run_dir))} has no checkpoint: it would be moved to "
                    f"{shlex.quote(str(sweep.out / FAILED_DIR))}/ and restarted"
                )
            lines.append(run.command)
        if probe is not None:
            lines.append(probe)
    return lines


def slurm_script(sweep: Sweep) -> str:
    """A Slurm job array whose task i runs ``hardstat sweep --out DIR --index i``."""
    n = len(sweep.runs)
    out = runs.check_text(sweep.out, "the sweep directory")  # a newline would end a comment
    bands = ",".join(band_slug(b) for b in sweep.spec.bands)
    seeds = ",".join(str(s) for s in sweep.spec.seeds)
    options, probe = "", ""
    if sweep.probe is not None:
        options = " " + shlex.join(sweep.probe.options())
        probe = (
            "\n# After training, the task runs the run's linear probe "
            f"(hardstat eval RUN --linear --epochs {sweep.probe.epochs} --lr {sweep.probe.lr!r});"
            "\n# a finished probe is skipped."
        )
    plan = shlex.quote(str(sweep.manifest_path))
    output = shlex.quote(f"{out}/slurm-%A_%a.out")  # sbatch reads quotes in #SBATCH lines
    return f"""#!/bin/bash
# hardstat band-ablation sweep: {n} runs (bands {bands}; seeds {seeds}), one array task per run.
# Plan: {plan}. Submit with: sbatch {shlex.quote(str(sweep.out / SBATCH_FILE))}
# Task i trains run i of the plan: it skips a finished run, resumes an interrupted one and
# starts the rest, so resubmitting the array (or one task, --array=I) continues the sweep.{probe}
#SBATCH --job-name=hardstat-sweep
#SBATCH --array=0-{n - 1}
#SBATCH --output={output}
# SIGTERM two minutes before the time limit: the run checkpoints and stops cleanly.
#SBATCH --signal=B:TERM@120
# Cluster settings: remove one '#' to use a line, and adapt it.
##SBATCH --partition=gpu
##SBATCH --time=24:00:00
##SBATCH --gpus=1
##SBATCH --cpus-per-task=8
##SBATCH --mem=32G
##SBATCH --requeue
# Cap the runs training at once by editing the array line, e.g. --array=0-{n - 1}%2.

set -euo pipefail
# The job inherits the submitting shell's environment: submit from one where `hardstat` runs
# (or activate it here, e.g. source /path/to/venv/bin/activate).
exec hardstat sweep --out {shlex.quote(out)}{options} --index "$SLURM_ARRAY_TASK_ID" --quiet
"""


def write_slurm(sweep: Sweep) -> Path:
    """Write ``sweep.json`` and ``sweep.sbatch``; returns the script's path. Runs nothing."""
    save(sweep)
    path = sweep.out / SBATCH_FILE
    _write_atomic(path, slurm_script(sweep))
    path.chmod(0o755)
    return path


# -- execution -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class RunOutcome:
    """What a sweep invocation did with one run and where the run stands afterwards.

    ``action``: skipped (already finished), started, resumed, restarted (a directory without a
    checkpoint was set aside first), stopped (interrupted during this invocation) or not run.
    ``probe`` (with a linear probe only): ran (this time), done (before), stopped, or pending
    (not run yet); None before the run has finished. ``linear_top1`` is the probe's top-1.
    """

    run: PlannedRun
    action: str
    status: str
    steps_done: int | None
    knn_top1: float | None
    set_aside: Path | None = None
    probe: str | None = None
    linear_top1: float | None = None


@dataclass(frozen=True)
class SweepReport:
    out: Path
    outcomes: tuple[RunOutcome, ...]
    interrupted: bool


def execute(
    sweep: Sweep, indices: Sequence[int] | None = None, *, progress: bool = True
) -> SweepReport:
    """Train the selected runs (all by default) one after the other, in this process (or,
    under torchrun, in every process together: each run is trained by all of them).

    Finished runs are skipped, interrupted (or crashed) runs with a checkpoint resumed, run
    directories without a checkpoint moved to ``.failed/`` and restarted, the rest started.
    With ``sweep.probe``, every finished run whose probe is not done is then probed (by process
    0 under torchrun). ``sweep.json`` is written first and after every run and probe. Ctrl-C (or
    SIGTERM) stops the current run cleanly at a step boundary (it checkpoints), or the current
    probe (it writes nothing), and ends the sweep; the report says so.
    """
    from tqdm import tqdm

    from hardstat.train import distributed
    from hardstat.train.loop import train
    from hardstat.train.posthoc import evaluate_run

    main = runs.main_process()
    progress = progress and main
    selected = _selected(sweep, indices)
    if selected and distributed.from_environment().distributed:  # under torchrun
        distributed.setup(selected[0].config.device)

    def status_of(run: PlannedRun) -> str:
        # process 0 looks, the others follow: it may be moving a failed run aside meanwhile
        return distributed.broadcast_object(run_status(sweep.run_dir(run)) if main else "")

    def save_status() -> None:
        if main:
            save(sweep)

    def run_probe(run: PlannedRun) -> str | None:
        """The run's linear probe, unless done: ``ran``, ``done`` or None (no probe)."""
        probe = sweep.probe
        if probe is None:
            return None
        run_dir = sweep.run_dir(run)
        if distributed.broadcast_object(probe_status(run_dir, probe) if main else None) == "done":
            return "done"
        t0 = time.perf_counter()

        def evaluate() -> None:
            evaluate_run(
                run_dir,
                linear=True,
                knn=False,
                linear_epochs=probe.epochs,
                linear_lr=probe.lr,
                device=run.config.device,
            )

        try:
            distributed.on_main(evaluate)
        except HardstatError as e:
            raise e.reworded(f"run {run.name}: linear probe: {e}") from e
        finally:
            save_status()
        if progress:
            top1 = probe_top1(run_dir, probe)
            took = _duration(time.perf_counter() - t0)
            shown = f"{top1:.4f}" if top1 is not None else "n/a"
            bar.write(f"{run.name}: linear probe top-1 {shown} in {took}", file=sys.stderr)
        return "ran"

    with distributed.agreed():  # refuse foreign run directories before training anything
        for run in selected:
            _check_run_config(sweep, run, status_of(run))
    save_status()
    outcomes: list[RunOutcome] = []
    interrupted = False
    bar = tqdm(
        total=len(selected),
        disable=not progress,
        file=sys.stderr,
        unit="run",
        desc="sweep",
        position=0,
        dynamic_ncols=True,
    )
    current: PlannedRun | None = None
    try:
        for run in selected:
            current, run_dir = run, sweep.run_dir(run)
            bar.set_description(f"sweep: {run.name}")
            status = status_of(run)
            if status == "finished":
                try:
                    probed = run_probe(run)
                except KeyboardInterrupt:
                    outcomes.append(_outcome(sweep, run, "skipped", probe="stopped"))
                    interrupted = True
                    break
                outcomes.append(_outcome(sweep, run, "skipped", probe=probed))
                bar.update(1)
                continue
            action = "resumed" if status in ("running", "interrupted") else "started"
            set_aside = None
            t0 = time.perf_counter()
            try:
                if status == "failed":
                    action = "restarted"
                    if runs.main_process():  # under torchrun, process 0 moves it
                        set_aside = _set_aside(sweep, run)
                result = train(run.config, run_dir, resume=action == "resumed", progress=progress)
                stopped = result.interrupted
            except KeyboardInterrupt:  # outside the trainer's clean-stop window, or a 2nd Ctrl-C
                stopped = True
            except HardstatError as e:
                raise e.reworded(f"run {run.name}: {e}") from e
            finally:
                save_status()
            if stopped:
                outcomes.append(_outcome(sweep, run, "stopped", set_aside))
                interrupted = True
                break
            if progress:
                trained = _outcome(sweep, run, action, set_aside)
                knn = f", kNN top-1 {trained.knn_top1:.4f}" if trained.knn_top1 is not None else ""
                took = _duration(time.perf_counter() - t0)
                bar.write(f"{run.name}: {action}, {trained.status} in {took}{knn}", file=sys.stderr)
            try:
                probed = run_probe(run)
            except KeyboardInterrupt:
                outcomes.append(_outcome(sweep, run, action, set_aside, probe="stopped"))
                interrupted = True
                break
            outcomes.append(_outcome(sweep, run, action, set_aside, probe=probed))
            bar.update(1)
    except KeyboardInterrupt:  # between runs: the current run is where it was left
        interrupted = True
        if current is not None and current.index not in {o.run.index for o in outcomes}:
            outcomes.append(_outcome(sweep, current, "stopped"))
    finally:
        bar.set_description("sweep")
        bar.close()
    done = {o.run.index for o in outcomes}
    outcomes += [_outcome(sweep, r, "not run") for r in selected if r.index not in done]
    return SweepReport(sweep.out, tuple(outcomes), interrupted)


def _duration(seconds: float) -> str:
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 600:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min"


def _selected(sweep: Sweep, indices: Sequence[int] | None) -> list[PlannedRun]:
    if indices is None:
        return list(sweep.runs)
    return [sweep.check_index(i) for i in indices]


def _set_aside(sweep: Sweep, run: PlannedRun) -> Path:
    """Move a run directory that cannot be resumed to ``DIR/.failed/NAME-TIME`` (never delete)."""
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    target = sweep.out / FAILED_DIR / f"{run.name}-{stamp}"
    n = 1
    while target.exists():
        target = sweep.out / FAILED_DIR / f"{run.name}-{stamp}-{n}"
        n += 1
    target.parent.mkdir(parents=True, exist_ok=True)
    sweep.run_dir(run).rename(target)
    return target


def _outcome(
    sweep: Sweep,
    run: PlannedRun,
    action: str,
    set_aside: Path | None = None,
    *,
    probe: str | None = None,
) -> RunOutcome:
    run_dir = sweep.run_dir(run)
    status = run_status(run_dir)
    steps = None
    if status in ("running", "interrupted", "finished"):
        steps = int(runs.read_manifest(run_dir).get("steps_done", 0))
    knn = final_knn_top1(run_dir) if status != "pending" else None
    linear = probe_top1(run_dir, sweep.probe) if sweep.probe is not None else None
    if probe is None:
        probe = probe_status(run_dir, sweep.probe)
    return RunOutcome(run, action, status, steps, knn, set_aside, probe, linear)


def final_knn_top1(run_dir: Path) -> float | None:
    """Top-1 of the run's last kNN evaluation (largest step) from its evals table, or None."""
    knn = [
        (row["step"], row["top1"])
        for row in _evals(run_dir)
        if row["kind"] == "knn" and row["top1"] is not None
    ]
    return float(max(knn, key=lambda r: r[0])[1]) if knn else None


def _evals(run_dir: Path) -> list[dict[str, Any]]:
    """The rows (step, kind, top1, params) of a run's evals table; [] without one."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    files = sorted((Path(run_dir) / schema.EVALS.name).glob("*.parquet"))
    if not files:
        return []
    columns = ["step", "kind", "top1", "params"]
    return pa.concat_tables(pq.read_table(f, columns=columns) for f in files).to_pylist()


def format_summary(outcomes: Sequence[RunOutcome], *, probe: bool = False) -> str:
    """A plain-text table: run, band, seed, this time (action), status, steps, kNN top-1, and
    with ``probe`` the linear probe's state and top-1."""
    header: tuple[str, ...] = ("run", "band", "seed", "this time", "status", "steps", "kNN top-1")
    header += ("probe", "linear top-1") if probe else ()
    rows = [header]
    for o in outcomes:
        row: tuple[str, ...] = (
            o.run.name,
            o.run.band,
            str(o.run.seed),
            o.action,
            o.status,
            "" if o.steps_done is None else str(o.steps_done),
            "" if o.knn_top1 is None else f"{o.knn_top1:.4f}",
        )
        if probe:
            row += (o.probe or "", "" if o.linear_top1 is None else f"{o.linear_top1:.4f}")
        rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    right = {2, 5, 6, 8}
    return "\n".join(
        "  ".join(
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        ).rstrip()
        for r in rows
    )
