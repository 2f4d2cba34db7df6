"""``hardstat sweep`` end to end on a shrunken tiny preset (each run trains in about a second)."""

import json
import shlex
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

pytest.importorskip("torch")
import hardstat.train.loop as loop
import hardstat.train.posthoc as posthoc
from hardstat.cli import app

runner = CliRunner()

# tiny, shrunk further: 128 synthetic images, batch 32 (4 steps per epoch), K = 64, 1 thread
SMALL = [
    *("--set", "threads=1", "--set", "data.dataset=synthetic:128"),
    *("--set", "optim.batch_size=32", "--set", "model.queue_size=64"),
    *("--set", "model.width=8", "--set", "eval.knn_k=5", "--epochs", "1"),
]
SMALL_FLAGS = (
    "--dataset synthetic:128 --epochs 1 --set eval.knn_k=5 --set model.queue_size=64 "
    "--set model.width=8 --set optim.batch_size=32 --set threads=1"
)


def invoke(*args: str):  # type: ignore[no-untyped-def]
    return runner.invoke(app, ["sweep", *args])


def sweep_args(out: Path, bands: str, seeds: str = "0", *extra: str) -> list[str]:
    return ["--bands", bands, "--seeds", seeds, *SMALL, "--out", str(out), *extra]


def manifest(out: Path) -> dict[str, Any]:
    return json.loads((out / "sweep.json").read_text())


def mtimes(*run_dirs: Path) -> dict[Path, int]:
    return {p: p.stat().st_mtime_ns for d in run_dirs for p in d.rglob("*") if p.is_file()}


def summary(stderr: str) -> dict[str, list[str]]:
    """Summary table rows by run name: [band, seed, this time, status, steps, kNN top-1]."""
    lines = stderr.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("run "))
    rows: dict[str, list[str]] = {}
    for line in lines[start + 1 :]:
        cells = line.split("  ")
        cells = [c.strip() for c in cells if c.strip()]
        if not cells or " " in cells[0] or ":" in cells[0]:
            break
        rows[cells[0]] = cells[1:]
    return rows


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    """A local sweep of two runs (band 0-100 and random:5, seed 0), with progress bars on."""
    out = tmp_path_factory.mktemp("sweeps") / "sw"
    result = invoke(*sweep_args(out, "0-100,random:5"))
    return out, result


def test_dry_run_prints_exact_commands_and_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "sw"
    result = invoke(*sweep_args(out, "0-100,0-5+50-55", "0,1", "--dry-run"))
    assert result.exit_code == 0, result.output
    train = f"hardstat train --preset tiny {SMALL_FLAGS}"
    assert result.stdout.splitlines() == [
        f"{train} --band 0-100 --seed 0 --out {out} --name 0-100-s0",
        f"{train} --band 0-5,50-55 --seed 0 --out {out} --name 0-5+50-55-s0",
        f"{train} --band 0-100 --seed 1 --out {out} --name 0-100-s1",
        f"{train} --band 0-5,50-55 --seed 1 --out {out} --name 0-5+50-55-s1",
    ]
    assert result.stderr == ""
    assert not out.exists()


def test_local_sweep_trains_and_records_every_run(finished: tuple[Path, Any]) -> None:
    out, result = finished
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(out)
    data = manifest(out)
    assert [(r["name"], r["status"]) for r in data["runs"]] == [
        ("0-100-s0", "finished"),
        ("random5-s0", "finished"),
    ]
    assert data["spec"]["bands"] == ["0-100", "random:5"] and data["spec"]["seeds"] == [0]
    rows = summary(result.stderr)
    assert list(rows) == ["0-100-s0", "random5-s0"]
    for name, (band, seed, action, status, steps, knn) in rows.items():
        assert (seed, action, status, steps) == ("0", "started", "finished", "4")
        assert 0 <= float(knn) <= 1
        run = json.loads((out / name / "manifest.json").read_text())
        assert run["status"] == "finished" and run["band"] == band
        # the --set overrides and --epochs reach every run's manifest
        conf = run["config"]
        assert conf["model"]["width"] == 8 and conf["model"]["queue_size"] == 64
        assert conf["data"]["dataset"] == "synthetic:128" and conf["optim"]["epochs"] == 1
        assert conf["threads"] == 1 and conf["eval"]["knn_k"] == 5
        assert run["band_kept"] == (64 if band == "0-100" else 4)
    assert "2/2 [" in result.stderr and "step/s" in result.stderr  # sweep and run progress bars


def test_rerun_skips_finished_runs(finished: tuple[Path, Any]) -> None:
    out, _ = finished
    dirs = (out / "0-100-s0", out / "random5-s0")
    before = mtimes(*dirs)
    result = invoke(*sweep_args(out, "0-100,random:5", "0", "-q"))
    assert result.exit_code == 0, result.output
    assert mtimes(*dirs) == before
    rows = summary(result.stderr)
    assert [r[2:4] for r in rows.values()] == [["skipped", "finished"]] * 2
    # the sweep directory alone continues the recorded sweep, as does --index
    alone = invoke("--out", str(out), "-q")
    assert alone.exit_code == 0 and "skipped" in alone.stderr
    dry = invoke("--out", str(out), "--dry-run")
    assert dry.stdout.splitlines() == [f"# finished: {d}" for d in dirs]
    assert mtimes(*dirs) == before


def test_different_spec_is_a_one_line_error(finished: tuple[Path, Any]) -> None:
    out, _ = finished
    before = (out / "sweep.json").read_text()
    for args in (
        sweep_args(out, "0-100,random:5", "0,1"),
        sweep_args(out, "0-100,random:5", "0", "--set", "model.width=16"),
    ):
        result = invoke(*args)
        assert result.exit_code == 1, result.output
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error: ") and "another sweep" in lines[0]
    assert (out / "sweep.json").read_text() == before


def test_interrupted_sweep_resumes_without_redoing_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "sw"
    args = sweep_args(out, "0-100,0-5", "0", "-q", "--set", "optim.epochs=2")  # 8 steps
    real_train = loop.train

    def stop_second_run(config, run_dir, **kw):  # type: ignore[no-untyped-def]
        if Path(run_dir).name == "0-5-s0":
            kw["stop_after"] = 3  # as Ctrl-C after step 3 (mid-epoch) would
        return real_train(config, run_dir, **kw)

    monkeypatch.setattr(loop, "train", stop_second_run)
    first = invoke(*args)
    assert first.exit_code == 130, first.output
    assert first.stdout.strip() == str(out)
    assert "sweep stopped during run 0-5-s0; continue with the same command" in first.stderr
    rows = summary(first.stderr)
    assert rows["0-100-s0"][2:5] == ["started", "finished", "8"]
    assert rows["0-5-s0"][2:5] == ["stopped", "interrupted", "3"]
    assert [r["status"] for r in manifest(out)["runs"]] == ["finished", "interrupted"]
    monkeypatch.undo()

    assert invoke(*args, "--dry-run").stdout.splitlines() == [
        f"# finished: {out / '0-100-s0'}",
        f"hardstat train --resume {out / '0-5-s0'}",
    ]
    done = mtimes(out / "0-100-s0")
    again = invoke(*args)
    assert again.exit_code == 0, again.output
    rows = summary(again.stderr)
    assert rows["0-100-s0"][2:4] == ["skipped", "finished"]
    assert rows["0-5-s0"][2:5] == ["resumed", "finished", "8"]
    assert mtimes(out / "0-100-s0") == done
    steps = pq.read_table(out / "0-5-s0" / "steps").column("step").to_pylist()
    assert sorted(steps) == list(range(8))  # every step exactly once
    assert [r["status"] for r in manifest(out)["runs"]] == ["finished", "finished"]


def test_ctrl_c_between_runs_stops_the_sweep(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(config, run_dir, **kw):  # type: ignore[no-untyped-def]
        raise KeyboardInterrupt  # e.g. while the dataset loads, before train's own handler

    monkeypatch.setattr(loop, "train", interrupted)
    out = tmp_path / "sw"
    result = invoke(*sweep_args(out, "0-100,0-5", "0", "-q"))
    assert result.exit_code == 130
    rows = summary(result.stderr)
    assert rows["0-100-s0"][2:4] == ["stopped", "pending"]
    assert rows["0-5-s0"][2:4] == ["not run", "pending"]
    assert "continue with the same command" in result.stderr


def test_slurm_writes_job_array_and_index_runs_one(tmp_path: Path) -> None:
    out = tmp_path / "sw"
    result = invoke(*sweep_args(out, "0-100,0-5", "0", "--launcher", "slurm"))
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"sbatch {out / 'sweep.sbatch'}"
    assert "planned 2 runs" in result.stderr
    script = (out / "sweep.sbatch").read_text().splitlines()
    assert "#SBATCH --array=0-1" in script
    assert f'exec hardstat sweep --out {out} --index "$SLURM_ARRAY_TASK_ID" --quiet' in script
    assert sorted(p.name for p in out.iterdir()) == ["sweep.json", "sweep.sbatch"]

    # array task 1, which needs no other option
    task = invoke("--out", str(out), "--index", "1", "-q")
    assert task.exit_code == 0, task.output
    assert list(summary(task.stderr)) == ["0-5-s0"]
    assert not (out / "0-100-s0").exists()
    assert [r["status"] for r in manifest(out)["runs"]] == ["pending", "finished"]
    bad = invoke("--out", str(out), "--index", "2")
    assert bad.exit_code == 1 and "--index 2 is out of range" in bad.stderr


def test_run_dir_without_checkpoint_is_set_aside_and_restarted(tmp_path: Path) -> None:
    out = tmp_path / "sw"
    assert invoke(*sweep_args(out, "0-100", "0", "--launcher", "slurm")).exit_code == 0
    dead = out / "0-100-s0"  # died before its first checkpoint
    dead.mkdir()
    (dead / "manifest.json").write_text(json.dumps({"schema_version": 1, "status": "running"}))
    result = invoke("--out", str(out), "--index", "0", "-q")
    assert result.exit_code == 0, result.output
    assert summary(result.stderr)["0-100-s0"][2:4] == ["restarted", "finished"]
    (moved,) = (out / ".failed").iterdir()
    assert moved.name.startswith("0-100-s0-")
    assert json.loads((moved / "manifest.json").read_text())["status"] == "running"
    assert json.loads((dead / "manifest.json").read_text())["status"] == "finished"


def test_recorded_commands_train_exactly_the_planned_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = tmp_path / "base.toml"
    cfg.write_text("[model]\nwidth = 8\n[log]\nenabled = false\n")
    out = tmp_path / "sw"
    tricky = ["--set", "optim.lr=0.25", "--set", "device=cpu", "--set", "data.subset=null"]
    args = ["--bands", "0-5+50-55,random:5", "--seeds", "3", "--config", str(cfg), *tricky]
    assert invoke(*args, "--out", str(out), "--launcher", "slurm").exit_code == 0
    seen: list[tuple[Any, Path]] = []

    def capture(config, run_dir, **kw):  # type: ignore[no-untyped-def]
        seen.append((config, Path(run_dir)))
        return loop.TrainResult(Path(run_dir), 0, 0, None, False)

    monkeypatch.setattr(loop, "train", capture)
    for run in manifest(out)["runs"]:
        argv = shlex.split(run["command"])
        assert argv[:2] == ["hardstat", "train"]
        result = runner.invoke(app, argv[1:])
        assert result.exit_code == 0, result.output
        config, run_dir = seen.pop()
        assert config.to_dict() == run["config"] and run_dir == out / run["name"]
        assert config.optim.lr == 0.25 and config.model.width == 8 and not config.log.enabled


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--index", "0", "--launcher", "slurm"], 2, "does not combine"),
        ([], 2, "no sweep recorded"),
        (["--seeds", "0,1"], 2, "give --bands"),
        (["--bands", "0-5", "--set", "nokey"], 2, "KEY=VALUE"),
        (["--bands", "0-5,0-200"], 1, "outside [0, 100]"),
        (["--bands", "0-5", "--set", "seed=2"], 1, "use --bands and --seeds"),
        (["--bands", "0-5", "--set", "optim.nope=2"], 1, "unknown config key"),
        (["--bands", "0-5", "--launcher", "cloud"], 2, "cloud"),
        (["--bands", "0-5", "--linear-epochs", "3"], 2, "add --eval linear"),
        (["--bands", "0-5", "--eval", "knn"], 2, "knn"),
        (["--bands", "0-5", "--eval", "linear", "--linear-epochs", "0"], 1, "must be >= 1"),
    ],
)
def test_bad_input(tmp_path: Path, args: list[str], code: int, message: str) -> None:
    result = invoke("--out", str(tmp_path / "sw"), *args)
    assert result.exit_code == code, result.output
    assert message in " ".join(result.stderr.replace("│", "").split())
    if code == 1:
        assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "sw").exists()


def test_help_teaches() -> None:
    result = runner.invoke(app, ["sweep", "--help"])
    assert result.exit_code == 0
    words = ("--bands", "--seeds", "--dry-run", "--launcher", "--index", "--set", "0-5+50-55")
    for word in (*words, "--eval", "--linear-epochs", "--linear-lr", "random=5-100"):
        assert word in result.output


PROBE = ["--eval", "linear", "--linear-epochs", "2"]


@pytest.fixture(scope="module")
def probed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    """A local sweep with the linear probe: bands 0-100 and random=5-100, seeds 0 and 1."""
    out = tmp_path_factory.mktemp("probed") / "sw"
    result = invoke(*sweep_args(out, "0-100,random=5-100", "0,1", "-q", *PROBE))
    return out, result


def linear_rows(run_dir: Path) -> list[dict[str, Any]]:
    table = pq.read_table(run_dir / "evals")
    return [r for r in table.to_pylist() if r["kind"] == "linear"]


def test_eval_linear_probes_every_run(probed: tuple[Path, Any]) -> None:
    out, result = probed
    assert result.exit_code == 0, result.output
    data = manifest(out)
    assert data["eval"] == {"linear": {"epochs": 2, "lr": 0.1}}
    names = ["0-100-s0", "random=5-100-s0", "0-100-s1", "random=5-100-s1"]
    assert [(r["name"], r["status"], r["probe"]) for r in data["runs"]] == [
        (n, "finished", "done") for n in names
    ]
    rows = summary(result.stderr)
    for name in names:
        (row,) = linear_rows(out / name)  # exactly the probe `hardstat eval --linear` runs
        assert json.loads(row["params"])["epochs"] == 2 and json.loads(row["params"])["lr"] == 0.1
        assert (
            row["step"] == json.loads((out / name / "manifest.json").read_text())["steps_done"] - 1
        )
        assert rows[name][6:8] == ["ran", f"{row['top1']:.4f}"]
        kept = json.loads((out / name / "manifest.json").read_text())["band_kept"]
        assert kept == (64 if name.startswith("0-100") else 60)  # 5-100's count of K = 64
    # the analysis picks the probe as the primary metric
    bands = runner.invoke(app, ["analyze", "bands", str(out), "--format", "json"])
    assert bands.exit_code == 0, bands.output
    analysis = json.loads(bands.stdout)
    assert analysis["metric"] == "linear"
    assert [c["band"] for c in analysis["contrasts"]] == ["random=5-100"]
    assert analysis["contrasts"][0]["n_seeds"] == 2


def test_repeated_sweep_skips_finished_probes(probed: tuple[Path, Any]) -> None:
    out, _ = probed
    before = mtimes(*(out / r["name"] for r in manifest(out)["runs"]))
    again = invoke("--out", str(out), "-q")  # the recorded probe is kept
    assert again.exit_code == 0, again.output
    assert {(r[2], r[3], r[6]) for r in summary(again.stderr).values()} == {
        ("skipped", "finished", "done")
    }
    assert mtimes(*(out / r["name"] for r in manifest(out)["runs"])) == before
    dry = invoke("--out", str(out), "--dry-run")
    assert all(
        line.startswith("# finished, linear probe done: ") for line in dry.stdout.splitlines()
    )


def test_probe_added_to_a_finished_sweep_and_redone_after_an_interruption(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "sw"
    assert invoke(*sweep_args(out, "0-100,0-5", "0", "-q")).exit_code == 0
    assert manifest(out)["eval"] is None
    dry = invoke("--out", str(out), *PROBE, "--dry-run")
    assert dry.stdout.splitlines() == [
        f"# finished: {out / '0-100-s0'}",
        f"hardstat eval {out / '0-100-s0'} --linear --no-knn --epochs 2 --lr 0.1 --device auto",
        f"# finished: {out / '0-5-s0'}",
        f"hardstat eval {out / '0-5-s0'} --linear --no-knn --epochs 2 --lr 0.1 --device auto",
    ]
    real = posthoc.evaluate_run

    def stop_on_second(run_dir, **kw):  # type: ignore[no-untyped-def]
        if Path(run_dir).name == "0-5-s0":
            raise KeyboardInterrupt  # Ctrl-C while the probe trains: it writes nothing
        return real(run_dir, **kw)

    monkeypatch.setattr(posthoc, "evaluate_run", stop_on_second)
    first = invoke("--out", str(out), "-q", *PROBE)
    assert first.exit_code == 130, first.output
    assert "sweep stopped during the linear probe of run 0-5-s0" in first.stderr
    rows = summary(first.stderr)
    assert (rows["0-100-s0"][2], rows["0-100-s0"][6]) == ("skipped", "ran")
    assert (rows["0-5-s0"][2], rows["0-5-s0"][6]) == ("skipped", "stopped")
    assert [r["probe"] for r in manifest(out)["runs"]] == ["done", "pending"]
    assert linear_rows(out / "0-5-s0") == []
    monkeypatch.undo()

    done = mtimes(out / "0-100-s0")
    again = invoke("--out", str(out), "-q")  # continues with the recorded probe
    assert again.exit_code == 0, again.output
    rows = summary(again.stderr)
    assert (rows["0-100-s0"][6], rows["0-5-s0"][6]) == ("done", "ran")
    assert mtimes(out / "0-100-s0") == done and len(linear_rows(out / "0-5-s0")) == 1
    # --eval none drops the probe from the record; the probes already written stay
    assert invoke("--out", str(out), "-q", "--eval", "none").exit_code == 0
    assert manifest(out)["eval"] is None and len(linear_rows(out / "0-5-s0")) == 1


def test_slurm_task_runs_the_probe(tmp_path: Path) -> None:
    out = tmp_path / "sw"
    result = invoke(*sweep_args(out, "0-100", "0", "--launcher", "slurm", *PROBE))
    assert result.exit_code == 0, result.output
    script = (out / "sweep.sbatch").read_text()
    line = next(x for x in script.splitlines() if x.startswith("exec "))
    argv = shlex.split(line.replace('"$SLURM_ARRAY_TASK_ID"', "0"))
    assert argv[1:] == [
        *("hardstat", "sweep", "--out", str(out), "--eval", "linear"),
        *("--linear-epochs", "2", "--linear-lr", "0.1", "--index", "0", "--quiet"),
    ]
    task = invoke(*argv[3:])  # what the array task runs (invoke adds "sweep")
    assert task.exit_code == 0, task.output
    assert summary(task.stderr)["0-100-s0"][6] == "ran"
    assert len(linear_rows(out / "0-100-s0")) == 1


# -- hostile values: every command written for a shell is quoted --------------------------------
HOSTILE = "DIR$(touch PWNED) `touch PWNED` it's; touch PWNED [1] *"


def _fake_bin(tmp_path: Path) -> Path:
    """``sbatch`` and ``hardstat`` stand-ins that record their arguments, one per line."""
    import os
    import stat

    fake = tmp_path / "bin"
    fake.mkdir(exist_ok=True)
    for name in ("sbatch", "hardstat"):
        script = fake / name
        script.write_text(f'#!/bin/bash\nprintf "%s\\n" {name} "$@" >> "$ARGS_LOG"\n')
        script.chmod(script.stat().st_mode | stat.S_IEXEC)
    assert os.access(fake / "sbatch", os.X_OK)
    return fake


def _run_in_bash(tmp_path: Path, text: str, **env: str) -> list[list[str]]:
    """Run ``text`` with bash, from an empty directory; return each recorded command."""
    import os
    import subprocess

    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    log = tmp_path / "args.log"
    log.write_text("")
    path = f"{_fake_bin(tmp_path)}:{os.environ['PATH']}"
    full = {**os.environ, "PATH": path, "ARGS_LOG": str(log), **env}
    subprocess.run(["bash", "-c", text], cwd=work, env=full, check=True)
    assert not any(p.name == "PWNED" for p in tmp_path.rglob("*")), "a value ran as code"
    commands: list[list[str]] = []
    for line in log.read_text().splitlines():
        if line in ("sbatch", "hardstat"):
            commands.append([line])
        else:
            commands[-1].append(line)
    return commands


def test_printed_sbatch_command_and_script_are_quoted(tmp_path: Path) -> None:
    out = tmp_path / HOSTILE
    result = invoke(*sweep_args(out, "0-100,0-5+50-55,random:5", "0", "--launcher", "slurm"))
    assert result.exit_code == 0, result.output
    script = out / "sweep.sbatch"
    assert _run_in_bash(tmp_path, result.stdout) == [["sbatch", str(script)]]
    text = script.read_text()
    # the #SBATCH --output value, as sbatch reads it (it honours shell quotes)
    output = next(line for line in text.splitlines() if line.startswith("#SBATCH --output="))
    assert shlex.split(output.split("=", 1)[1]) == [f"{out}/slurm-%A_%a.out"]
    assert _run_in_bash(tmp_path, text, SLURM_ARRAY_TASK_ID="2") == [
        ["hardstat", "sweep", "--out", str(out), "--index", "2", "--quiet"]
    ]


def test_dry_run_lines_are_a_safe_script(tmp_path: Path) -> None:
    out = tmp_path / HOSTILE
    spec = "synthetic:128 $(touch PWNED)'\""
    args = [
        *sweep_args(out, "0-100,0-5+50-55", "0,1", "--dry-run"),
        "--set",
        f"data.dataset={spec}",
    ]
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    commands = _run_in_bash(tmp_path, result.stdout)
    assert [c[:2] for c in commands] == [["hardstat", "train"]] * 4
    assert all(c[c.index("--out") + 1] == str(out) for c in commands)
    assert all(c[c.index("--dataset") + 1] == spec for c in commands)
    assert [c[c.index("--band") + 1] for c in commands] == ["0-100", "0-5,50-55"] * 2


@pytest.mark.parametrize(
    "args",
    [
        ["--out", "sw\n#SBATCH --wrap=touch PWNED"],
        ["--out", "sw\x1b[2J"],
        ["--set", "data.dataset=a\nb"],
        ["--dataset", "npz:a\ntouch PWNED"],
    ],
)
def test_control_characters_in_paths_and_values_are_refused(
    tmp_path: Path, args: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    base = ["--bands", "0-100", "--launcher", "slurm"]
    if "--out" not in args:
        base += ["--out", "sw"]
    result = invoke(*base, *args)
    assert result.exit_code == 1, result.output
    assert "control characters" in result.stderr and result.stderr.count("\n") == 1
    assert not (tmp_path / "sw").exists() and not any(tmp_path.iterdir())


def test_two_sweeps_on_one_directory(tmp_path: Path) -> None:
    from hardstat import runs

    out = tmp_path / "sw"
    assert invoke(*sweep_args(out, "0-100", "0", "--launcher", "slurm")).exit_code == 0
    with runs.RunLock(out, what="sweep"):  # another whole-sweep process
        result = invoke("--out", str(out), "-q")
        assert result.exit_code == 1 and "is in use by process" in result.stderr
        assert invoke("--out", str(out), "--index", "0", "-q").exit_code == 1
    with runs.RunLock(out, what="sweep").acquire(shared=True):  # an array task
        assert invoke("--out", str(out), "-q").exit_code == 1
        result = invoke("--out", str(out), "--index", "0", "-q")  # array tasks share
        assert result.exit_code == 0, result.output


def test_disk_full_while_writing_the_sweep_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    out = tmp_path / "sw"
    assert invoke(*sweep_args(out, "0-100", "0", "--launcher", "slurm")).exit_code == 0
    before = (out / "sweep.json").read_bytes()

    def full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    result = invoke(*sweep_args(out, "0-100", "0", "--launcher", "slurm"))
    assert result.exit_code == 1 and "No space left on device" in result.stderr
    assert "run the same sweep command again" in result.stderr
    assert (out / "sweep.json").read_bytes() == before
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]
