"""Sweep planning, manifest, run states, dry run and Slurm script (no training here)."""

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hardstat import runs, schema
from hardstat import sweep as sw
from hardstat.cli.train import parse_override
from hardstat.config import preset
from hardstat.errors import ConfigError, RunError
from hardstat.logwriter import RunLogWriter

OVERRIDES = {"optim.epochs": 1, "data.dataset": "synthetic:128", "optim.lr": 0.1}


def spec(bands: str = "0-100,0-5+50-55", seeds: str = "0,1", **kw: object) -> sw.SweepSpec:
    return sw.SweepSpec.build(bands, seeds, overrides=dict(OVERRIDES), **kw)  # type: ignore[arg-type]


def test_plan_of_two_bands_by_two_seeds(tmp_path: Path) -> None:
    out = tmp_path / "sw"
    plan = sw.plan(spec(), out)
    assert [r.name for r in plan.runs] == [
        "0-100-s0",
        "0-5+50-55-s0",
        "0-100-s1",
        "0-5+50-55-s1",
    ]
    assert [(r.band, r.seed) for r in plan.runs] == [
        ("0-100", 0),
        ("0-5,50-55", 0),
        ("0-100", 1),
        ("0-5,50-55", 1),
    ]
    base = preset("tiny").replace(**OVERRIDES)
    for r in plan.runs:
        assert r.config == base.replace(band=r.band, seed=r.seed)
    assert plan.runs[1].command == (
        "hardstat train --preset tiny --dataset synthetic:128 --epochs 1 --set optim.lr=0.1 "
        f"--band 0-5,50-55 --seed 0 --out {out} --name 0-5+50-55-s0"
    )
    assert plan.resume_command(plan.runs[3]) == f"hardstat train --resume {out}/0-5+50-55-s1"
    assert not out.exists()  # planning writes nothing


@pytest.mark.parametrize(
    ("band", "seed", "name"),
    [
        ("0-100", 0, "0-100-s0"),
        ("0.1-100", 1, "0.1-100-s1"),
        ("random:5", 3, "random5-s3"),
        ("50-55,0-5", 0, "0-5+50-55-s0"),
        ("50-55+0-5", 2, "0-5+50-55-s2"),
        ("0-0.01", 0, "0-0.01-s0"),
        ("random=5-100", 0, "random=5-100-s0"),
        ("random=50-55+0-5", 1, "random=0-5+50-55-s1"),
        ("random=0-5", 2, "random5-s2"),  # the same band as random:5
    ],
)
def test_run_names(band: str, seed: int, name: str) -> None:
    assert sw.run_name(band, seed) == name
    assert runs.check_run_name(name) == name


def test_band_and_seed_lists() -> None:
    assert sw.parse_bands(" 0-100, 0-5+50-55 ,random:5") == ("0-100", "0-5,50-55", "random:5")
    assert sw.parse_bands("5-100,random=5-100,random=50-55+0-5") == (
        "5-100",
        "random=5-100",
        "random=0-5,50-55",
    )
    assert sw.parse_seeds("3,0,1") == (3, 0, 1)
    for bad, message in [
        ("0-5,0-5.0", "listed twice"),  # the same band after canonicalization
        ("random:5,random=0-5", "listed twice"),
        ("0-5,,5-100", "malformed band list"),
        ("0-5;5-100", "malformed band"),
        ("", "malformed band list"),
    ]:
        with pytest.raises(ConfigError, match=message) as e:
            sw.parse_bands(bad)
        assert "\n" not in str(e.value)
    for bad in ("0,a", "-1", "", "0,,1"):
        with pytest.raises(ConfigError, match="malformed seed list"):
            sw.parse_seeds(bad)
    with pytest.raises(ConfigError, match="seed 1 is listed twice"):
        sw.parse_seeds("1,0,1")


def test_spec_refuses_per_run_keys_and_bad_configs(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="sets seed for each run"):
        sw.SweepSpec(bands=("0-5",), overrides={"seed": 3})
    with pytest.raises(ConfigError, match="unknown preset"):
        sw.SweepSpec(bands=("0-5",), preset="huge")
    # on K = 64, band 1-1.5 keeps ranks 1 < r <= 1: none; refused at planning, naming the run
    bad = sw.SweepSpec(bands=("0-100", "1-1.5"), overrides={"model.queue_size": 64})
    with pytest.raises(ConfigError, match=re.escape("run 1-1.5-s0: band 1-1.5 keeps no negative")):
        sw.plan(bad, tmp_path)


@pytest.mark.parametrize(
    "value",
    ["abc", "123", "true", "null", "NaN", " 3", "a=b", 'say "hi"', 1, 0.1, 1e-5, True, None],
)
def test_override_text_parses_back(value: object) -> None:
    text = sw.format_override("some.key", value)
    (arg,) = shlex.split(shlex.join([text]))
    key, parsed = parse_override(arg)
    assert key == "some.key" and parsed == value and type(parsed) is type(value)


def test_config_file_is_part_of_the_spec(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('band = "0-5"\nseed = 9\n[model]\nwidth = 8\n')
    s = sw.SweepSpec.build("0-100", "1", config_file=cfg)
    (run,) = sw.plan(s, tmp_path / "sw").runs
    assert run.config.model.width == 8 and (run.band, run.seed) == ("0-100", 1)
    assert f"--config {cfg.resolve()}" in run.command
    assert s.identity()["config"] == {"band": "0-5", "seed": 9, "model": {"width": 8}}
    assert "config_file" not in s.identity()


def test_manifest_round_trip_and_identity(tmp_path: Path) -> None:
    out = tmp_path / "sw"
    first = sw.open_sweep(out, spec())
    assert not out.exists()  # open_sweep writes nothing
    sw.save(first)
    data = json.loads((out / sw.SWEEP_FILE).read_text())
    assert data["format"] == sw.FORMAT and data["hardstat_version"]
    assert data["spec"]["bands"] == ["0-100", "0-5,50-55"] and data["spec"]["seeds"] == [0, 1]
    assert data["spec"]["overrides"] == OVERRIDES
    assert [r["status"] for r in data["runs"]] == ["pending"] * 4
    assert [r["name"] for r in data["runs"]] == [r.name for r in first.runs]
    assert data["runs"][2]["command"] == first.runs[2].command
    assert data["runs"][2]["config"] == first.runs[2].config.to_dict()

    # the same spec (overrides in another order) continues the recorded sweep
    same = sw.SweepSpec.build(
        "0-100,50-55+0-5", "0,1", overrides=dict(reversed(list(OVERRIDES.items())))
    )
    again = sw.open_sweep(out, same)
    assert again == sw.open_sweep(out, None) == sw.load(out)
    assert again.created == first.created and again.runs == first.runs

    for other, field in [
        (spec(seeds="0"), "seeds"),
        (spec(bands="0-100,0-5"), "bands"),
        (spec(preset="cifar10-cpu"), "preset"),
        (sw.SweepSpec.build("0-100,0-5+50-55", "0,1"), "overrides"),
    ]:
        with pytest.raises(ConfigError, match=f"records another sweep \\({field}:") as e:
            sw.open_sweep(out, other)
        assert "\n" not in str(e.value) and f"hardstat sweep --out {out}" in str(e.value)
    with pytest.raises(RunError, match="no sweep in"):
        sw.open_sweep(tmp_path / "nothing", None)


def test_corrupt_or_foreign_manifest_is_refused(tmp_path: Path) -> None:
    (tmp_path / sw.SWEEP_FILE).write_text("{not json")
    with pytest.raises(RunError, match="unreadable or corrupt"):
        sw.load(tmp_path)
    (tmp_path / sw.SWEEP_FILE).write_text('{"format": "something-else"}')
    with pytest.raises(RunError, match="not a hardstat sweep manifest"):
        sw.load(tmp_path)
    (tmp_path / "file").write_text("x")
    with pytest.raises(RunError, match="is a file"):
        sw.open_sweep(tmp_path / "file", spec())
    _fake_run(tmp_path / "run", "finished", checkpoint=False)
    with pytest.raises(RunError, match="is a run directory, not a sweep directory"):
        sw.open_sweep(tmp_path / "run", spec())


def _fake_run(run_dir: Path, status: str, *, checkpoint: bool, config: dict | None = None) -> None:
    run_dir.mkdir(parents=True)
    manifest = runs.new_manifest(
        run_dir.name,
        config=config or {},
        dataset={},
        queue_size=64,
        band="0-100",
        band_kept=64,
        seed=0,
        versions={},
        device="cpu",
    )
    manifest["status"] = status
    runs.write_json_atomic(run_dir / schema.MANIFEST_FILE, manifest)
    if checkpoint:
        (run_dir / sw.CHECKPOINT).parent.mkdir()
        (run_dir / sw.CHECKPOINT).write_bytes(b"x")


def test_run_status(tmp_path: Path) -> None:
    assert sw.run_status(tmp_path / "absent") == "pending"
    (tmp_path / "empty").mkdir()
    assert sw.run_status(tmp_path / "empty") == "pending"
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "x.txt").write_text("x")
    assert sw.run_status(tmp_path / "junk") == "failed"  # no manifest
    _fake_run(tmp_path / "died", "running", checkpoint=False)
    assert sw.run_status(tmp_path / "died") == "failed"
    _fake_run(tmp_path / "crashed", "running", checkpoint=True)
    assert sw.run_status(tmp_path / "crashed") == "running"
    _fake_run(tmp_path / "stopped", "interrupted", checkpoint=True)
    assert sw.run_status(tmp_path / "stopped") == "interrupted"
    _fake_run(tmp_path / "done", "finished", checkpoint=False)
    assert sw.run_status(tmp_path / "done") == "finished"


def test_dry_run_lines_follow_run_states(tmp_path: Path) -> None:
    out = tmp_path / "sw"
    plan = sw.plan(spec(), out)
    a, b, c, d = plan.runs
    _fake_run(out / b.name, "running", checkpoint=False)  # died before its first checkpoint
    _fake_run(out / c.name, "interrupted", checkpoint=True, config=c.config.to_dict())
    _fake_run(out / d.name, "finished", checkpoint=True, config=d.config.to_dict())
    assert sw.dry_run_lines(plan) == [
        a.command,
        f"# {out / b.name} has no checkpoint: it would be moved to {out}/.failed/ and restarted",
        b.command,
        f"hardstat train --resume {out / c.name}",
        f"# finished: {out / d.name}",
    ]
    assert sw.dry_run_lines(plan, [2]) == [f"hardstat train --resume {out / c.name}"]
    # a run directory there with another config is refused, not skipped or resumed
    other = c.config.replace(**{"model.width": 8}).to_dict()
    (out / d.name / schema.MANIFEST_FILE).write_text(
        json.dumps({**runs.read_manifest(out / d.name), "config": other})
    )
    with pytest.raises(RunError, match="s1 holds a run with another config"):
        sw.dry_run_lines(plan, [3])
    with pytest.raises(ConfigError, match=r"--index 4 is out of range.*4 runs \(0 to 3\)"):
        sw.dry_run_lines(plan, [4])
    assert not (out / sw.SWEEP_FILE).exists() and not (out / sw.FAILED_DIR).exists()


def test_slurm_script(tmp_path: Path) -> None:
    out = tmp_path / "sw"
    plan = sw.plan(spec(bands="0-100,random:5", seeds="0,1,2"), out)
    path = sw.write_slurm(plan)
    assert path == out / "sweep.sbatch"
    text = path.read_text()
    assert text.startswith("#!/bin/bash\n")
    lines = text.splitlines()
    assert "#SBATCH --array=0-5" in lines
    assert f"#SBATCH --output={out}/slurm-%A_%a.out" in lines
    assert f'exec hardstat sweep --out {out} --index "$SLURM_ARRAY_TASK_ID" --quiet' in lines
    for placeholder in ("partition", "time", "gpus", "cpus-per-task"):
        assert any(line.startswith(f"##SBATCH --{placeholder}=") for line in lines)
    assert f"sbatch {path}" in text
    assert sw.load(out) == plan  # the plan is recorded...
    assert sorted(p.name for p in out.iterdir()) == ["sweep.json", "sweep.sbatch"]  # ...no run


def _write_evals(run_dir: Path, rows: list[tuple[int, str, float]], tag: str | None) -> None:
    w = RunLogWriter(run_dir, run_dir.name, tag=tag)
    w.write(
        "evals",
        {
            "step": np.array([r[0] for r in rows], np.int32),
            "epoch": np.zeros(len(rows), np.int16),
            "kind": np.array([r[1] for r in rows], object),
            "top1": np.array([r[2] for r in rows], np.float32),
            "top5": None,
            "params": "{}",
        },
    )
    w.close()


def test_final_knn_top1_is_the_last_knn_eval(tmp_path: Path) -> None:
    run_dir = tmp_path / "r"
    run_dir.mkdir()
    assert sw.final_knn_top1(run_dir) is None
    _write_evals(run_dir, [(7, "knn", 0.75), (3, "knn", 0.5)], None)
    _write_evals(run_dir, [(9, "linear", 0.875)], "posthoc-1")  # a later linear probe
    assert sw.final_knn_top1(run_dir) == 0.75
    _write_evals(run_dir, [(11, "knn", 0.625)], "posthoc-2")
    assert sw.final_knn_top1(run_dir) == 0.625


def test_summary_table(tmp_path: Path) -> None:
    plan = sw.plan(spec(bands="0-100,random:5", seeds="0"), tmp_path)
    a, b = plan.runs
    table = sw.format_summary(
        [
            sw.RunOutcome(a, "skipped", "finished", 8, 0.71875),
            sw.RunOutcome(b, "stopped", "interrupted", 12, None),
        ]
    )
    assert table.splitlines() == [
        "run         band      seed  this time  status       steps  kNN top-1",
        "0-100-s0    0-100        0  skipped    finished         8     0.7188",
        "random5-s0  random:5     0  stopped    interrupted     12",
    ]


def test_sweep_module_does_not_import_torch() -> None:
    code = "import sys, hardstat.sweep; print(' '.join(sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    mods = {m.split(".")[0] for m in out.stdout.split()}
    assert "torch" not in mods and "duckdb" not in mods and "altair" not in mods


def test_count_matched_random_band_in_a_plan(tmp_path: Path) -> None:
    out = tmp_path / "sw"
    plan = sw.plan(spec(bands="5-100,random=5-100,random=0-5+50-55", seeds="0"), out)
    assert [r.name for r in plan.runs] == ["5-100-s0", "random=5-100-s0", "random=0-5+50-55-s0"]
    assert plan.runs[1].config.band == "random=5-100"
    assert "--band random=5-100 --seed 0" in plan.runs[1].command
    # the union's comma survives the shell: one argument, as the band list wrote it with '+'
    argv = shlex.split(plan.runs[2].command)
    assert argv[argv.index("--band") + 1] == "random=0-5,50-55"
    k = plan.runs[1].config.model.queue_size
    ranked = plan.runs[0].config.parsed_band.kept_count(k)
    assert plan.runs[1].config.parsed_band.kept_count(k) == ranked


def _write_linear(run_dir: Path, step: int, top1: float, epochs: int, lr: float, tag: str) -> None:
    w = RunLogWriter(run_dir, run_dir.name, tag=tag)
    w.write(
        "evals",
        {
            "step": np.array([step], np.int32),
            "epoch": np.zeros(1, np.int16),
            "kind": np.array(["linear"], object),
            "top1": np.array([top1], np.float32),
            "top5": None,
            "params": np.array([json.dumps({"epochs": epochs, "lr": lr})], object),
        },
    )
    w.close()


def test_probe_state_comes_from_the_runs_evals(tmp_path: Path) -> None:
    probe = sw.LinearProbe(epochs=5, lr=0.25)
    run_dir = tmp_path / "r"
    _fake_run(run_dir, "interrupted", checkpoint=True)
    assert sw.probe_status(run_dir, probe) is None  # not finished: nothing to probe yet
    runs.update_manifest(run_dir, status="finished", steps_done=8)
    assert sw.probe_status(run_dir, probe) == "pending"
    assert sw.probe_status(run_dir, None) is None
    _write_linear(run_dir, 7, 0.5, 100, 0.25, "posthoc-1")  # other settings
    _write_linear(run_dir, 3, 0.5, 5, 0.25, "posthoc-2")  # an earlier checkpoint
    assert sw.probe_status(run_dir, probe) == "pending"
    _write_linear(run_dir, 7, 0.75, 5, 0.25, "posthoc-3")  # final step (steps_done - 1)
    assert sw.probe_status(run_dir, probe) == "done"
    assert sw.probe_top1(run_dir, probe) == 0.75


def test_probe_in_plan_manifest_dry_run_and_slurm(tmp_path: Path) -> None:
    out = tmp_path / "sw"
    plan = sw.open_sweep(out, spec(bands="0-100,random=5-100", seeds="0"))
    assert plan.probe is None and plan.eval_command(plan.runs[0]) is None
    plan = plan.with_probe(sw.LinearProbe(epochs=3, lr=0.05))
    a, b = plan.runs
    assert plan.eval_command(b) == (
        f"hardstat eval {out}/random=5-100-s0 --linear --no-knn --epochs 3 --lr 0.05 --device auto"
    )
    # dry run: each training line is followed by its probe
    assert sw.dry_run_lines(plan) == [
        a.command,
        plan.eval_command(a),
        b.command,
        plan.eval_command(b),
    ]
    # finished runs: the probe alone while pending, a comment once done
    for run in plan.runs:
        _fake_run(out / run.name, "finished", checkpoint=True, config=run.config.to_dict())
        runs.update_manifest(out / run.name, steps_done=4)
    _write_linear(out / a.name, 3, 0.5, 3, 0.05, "posthoc-1")
    assert sw.dry_run_lines(plan) == [
        f"# finished, linear probe done: {out / a.name}",
        f"# finished: {out / b.name}",
        plan.eval_command(b),
    ]
    sw.save(plan)
    data = json.loads((out / sw.SWEEP_FILE).read_text())
    assert data["eval"] == {"linear": {"epochs": 3, "lr": 0.05}}
    assert [r["probe"] for r in data["runs"]] == ["done", "pending"]
    assert data["runs"][1]["eval_command"] == plan.eval_command(b)
    assert "eval" not in data["spec"]  # the probe is not part of the sweep's identity
    # recorded: a later invocation keeps it; another probe or none replaces it
    again = sw.open_sweep(out, None)
    assert again.probe == sw.LinearProbe(3, 0.05) and again == plan
    assert sw.open_sweep(out, spec(bands="0-100,random=5-100", seeds="0")).probe == again.probe
    script = sw.slurm_script(plan)
    task = (
        f"exec hardstat sweep --out {out} --eval linear --linear-epochs 3 --linear-lr 0.05 "
        '--index "$SLURM_ARRAY_TASK_ID" --quiet'
    )
    assert task in script.splitlines()
    assert "--eval" not in sw.slurm_script(plan.with_probe(None))
    with pytest.raises(ConfigError, match="--linear-epochs must be >= 1"):
        sw.LinearProbe(epochs=0)


def test_summary_table_with_probe(tmp_path: Path) -> None:
    plan = sw.plan(spec(bands="0-100,random=5-100", seeds="0"), tmp_path)
    a, b = plan.runs
    table = sw.format_summary(
        [
            sw.RunOutcome(a, "skipped", "finished", 8, 0.71875, probe="ran", linear_top1=0.75),
            sw.RunOutcome(b, "started", "finished", 8, 0.5, probe="stopped"),
        ],
        probe=True,
    )
    assert table.splitlines() == [
        "run              band          seed  this time  status    steps  kNN top-1  "
        "probe    linear top-1",
        "0-100-s0         0-100            0  skipped    finished      8     0.7188  "
        "ran            0.7500",
        "random=5-100-s0  random=5-100     0  started    finished      8     0.5000  stopped",
    ]
