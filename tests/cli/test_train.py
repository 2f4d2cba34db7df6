import json
import shlex
from pathlib import Path

import duckdb
import pytest
from clirun import invoke


def test_help_lists_commands() -> None:
    result = invoke("--help")
    assert result.exit_code == 0
    assert "train" in result.output and "eval" in result.output


def test_train_help_teaches() -> None:
    result = invoke("train", "--help")
    assert result.exit_code == 0
    for word in ("--band", "random:5", "--resume", "--preset", "npz:DIR", "--log-every"):
        assert word in result.output


def test_tiny_run_prints_run_dir_on_stdout(tmp_path: Path) -> None:
    result = invoke(
        "train",
        "--preset",
        "tiny",
        "--epochs",
        "1",
        "--out",
        str(tmp_path),
        "--name",
        "a",
        "--quiet",
        "--band",
        "0-5",
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(tmp_path / "a")
    assert "kNN top-1" in result.stderr
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert manifest["band"] == "0-5" and manifest["config"]["optim"]["epochs"] == 1
    n = duckdb.sql(f"SELECT count(*) FROM '{tmp_path}/a/pairs/*.parquet'").fetchall()[0][0]
    assert n > 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--band", "0-5;9"], "malformed band"),
        (["--band", "0-200"], "outside [0, 100]"),
        (["--band", "0.01-0.02"], "keeps no negative"),
        (["-K", "100"], "multiple of the keys"),
        (["--dataset", "npz:/nonexistent/dir"], "npz"),
        (["--dataset", "bogus:thing"], "dataset"),
        (["--config", "/nonexistent.toml"], "not found"),
    ],
)
def test_bad_input_is_one_line_exit_1(tmp_path: Path, args: list[str], message: str) -> None:
    result = invoke("train", "--out", str(tmp_path), "--name", "x", "--quiet", *args)
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and message in lines[0]


def test_existing_run_is_not_touched(tmp_path: Path) -> None:
    args = ["train", "--epochs", "1", "--out", str(tmp_path), "--name", "a", "--quiet"]
    assert invoke(*args).exit_code == 0
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "a").rglob("*") if p.is_file()}
    result = invoke(*args)
    assert result.exit_code == 1 and "already exists" in result.stderr
    after = {p: p.stat().st_mtime_ns for p in (tmp_path / "a").rglob("*") if p.is_file()}
    assert before == after


def test_config_file_and_resume_flow(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('band = "random:10"\n[optim]\nepochs = 1\n[log]\nevery = 4\n')
    result = invoke("train", "--config", str(cfg), "--out", str(tmp_path), "--name", "c", "-q")
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "c" / "manifest.json").read_text())
    assert manifest["band"] == "random:10" and manifest["config"]["log"]["every"] == 4
    bad = invoke("train", "--resume", str(tmp_path / "c"), "--epochs", "3")
    assert bad.exit_code == 1 and "--resume continues a run" in bad.stderr
    unknown = tmp_path / "u.toml"
    unknown.write_text("[optim]\nepochz = 1\n")
    result = invoke("train", "--config", str(unknown), "--out", str(tmp_path), "--name", "u")
    assert result.exit_code == 1 and "unknown config key" in result.stderr


def test_usage_error_exits_2() -> None:
    result = invoke("train", "--preset", "nope")
    assert result.exit_code == 2


def test_set_overrides_any_config_key(tmp_path: Path) -> None:
    small = ["--set", "data.dataset=synthetic:128", "--set", "optim.batch_size=32"]
    small += ["--set", "model.queue_size=64", "--set", "threads=1"]
    args = ["train", "--out", str(tmp_path), "-q", "--epochs", "3", *small]
    result = invoke(
        *args,
        *("--name", "s", "--set", "model.width=8", "--set", "optim.lr=1", "--set", "amp=true"),
        *("--set", "optim.epochs=1", "--set", 'device="cpu"', "--set", "data.subset=null"),
    )
    assert result.exit_code == 0, result.output
    conf = json.loads((tmp_path / "s" / "manifest.json").read_text())["config"]
    assert conf["model"]["width"] == 8 and conf["model"]["queue_size"] == 64
    assert conf["optim"]["lr"] == 1.0 and isinstance(conf["optim"]["lr"], float)
    assert conf["optim"]["epochs"] == 1  # --set is applied after --epochs
    assert conf["amp"] is True and conf["device"] == "cpu" and conf["data"]["subset"] is None
    assert conf["data"]["dataset"] == "synthetic:128" and conf["threads"] == 1
    for bad, code, message in [
        (["--set", "model.widht=8"], 1, "unknown config key 'model.widht'"),
        (["--set", "model.width=wide"], 1, "model.width must be an integer"),
        (["--set", "model.width"], 2, "KEY=VALUE"),
    ]:
        result = invoke(*args, "--name", "bad", *bad)
        assert result.exit_code == code, result.output
        assert message in result.stderr
    resumed = invoke("train", "--resume", str(tmp_path / "s"), "--set", "optim.epochs=2")
    assert resumed.exit_code == 1 and "optim.epochs" in resumed.stderr


def test_version() -> None:
    from hardstat import __version__

    result = invoke("--version")
    assert result.exit_code == 0 and result.stdout.strip() == f"hardstat {__version__}"


@pytest.mark.parametrize("name", ["../../x", "/abs", "a/b", "..", "x\ny"])
def test_run_name_is_one_path_component(tmp_path: Path, name: str) -> None:
    out = tmp_path / "deep" / "out"
    result = invoke("train", "--out", str(out), "--name", name, "-q", "--epochs", "1")
    assert result.exit_code == 1 and "run name" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.rglob("*")) == []  # nothing created anywhere


def test_name_of_an_existing_file_and_an_out_that_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    result = invoke("train", "--out", str(tmp_path), "--name", "f", "-q")
    assert result.exit_code == 1 and "is not a directory" in result.stderr
    result = invoke("train", "--out", str(tmp_path / "f"), "--name", "r", "-q")
    assert (
        result.exit_code == 1 and "is not a directory; choose another --runs-dir" in result.stderr
    )
    assert (tmp_path / "f").read_text() == "x"


def test_unwritable_out_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    monkeypatch.setattr(os, "access", lambda *args, **kwargs: False)
    result = invoke("train", "--out", str(tmp_path / "ro"), "--name", "r", "-q")
    assert result.exit_code == 1 and "is not writable" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_resume_hints_are_shell_quoted(tmp_path: Path) -> None:
    out = tmp_path / "DIR$(touch X) it's"
    args = ["train", "--out", str(out), "--name", "r", "-q", "--stop-after", "2"]
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    hint = result.stderr.strip().splitlines()[-1].split("continue with: ")[1]
    assert shlex.split(hint) == ["hardstat", "train", "--resume", str(out / "r")]


def test_resume_of_a_run_without_checkpoint_gives_one_way_out(tmp_path: Path) -> None:
    (tmp_path / "dead").mkdir()
    (tmp_path / "dead" / "manifest.json").write_text(
        json.dumps(_manifest_of(invoke, tmp_path)), encoding="utf-8"
    )
    resumed = invoke("train", "--resume", str(tmp_path / "dead"))
    started = invoke("train", "--out", str(tmp_path), "--name", "dead", "-q")
    for result in (resumed, started):
        assert result.exit_code == 1 and "holds no checkpoint" in result.stderr
        assert "mv " in result.stderr and "--resume" not in result.stderr


def _manifest_of(invoke, tmp_path: Path) -> dict:  # type: ignore[no-untyped-def]
    """A complete manifest, from a real tiny run."""
    result = invoke("train", "--out", str(tmp_path), "--name", "src", "-q", "--stop-after", "1")
    assert result.exit_code == 0, result.output
    return json.loads((tmp_path / "src" / "manifest.json").read_text())


def test_errors_before_training_do_not_import_torch(tmp_path: Path) -> None:
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from hardstat.cli import app\n"
        "for args in (['eval', '/nonexistent'], ['train', '--resume', '/nonexistent'],\n"
        "             ['train', '--name', '../x'], ['train', '--out', 'a\\nb']):\n"
        "    try:\n"
        "        app(args)\n"
        "    except SystemExit as e:\n"
        "        assert e.code == 1, (args, e.code)\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False", out.stderr


def test_training_survives_a_reader_that_goes_away(tmp_path: Path) -> None:
    """`hardstat train ... 2>&1 | head -c 1`: the pipe closes after the first byte; training
    goes on, checkpoints, finishes and exits 0."""
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "hardstat", "train", "--out", str(tmp_path), "--name", "p"]
    cmd += ["--epochs", "2", "--threads", "1"]  # with its progress bar
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert proc.stdout is not None
    proc.stdout.read(1)
    proc.stdout.close()  # the reader has gone
    assert proc.wait(timeout=300) == 0
    manifest = json.loads((tmp_path / "p" / "manifest.json").read_text())
    assert manifest["status"] == "finished" and manifest["steps_done"] == 16


# -- issue 12: flag words, cheap checks first, finished runs, names that never collide --------
def test_typed_flags_answer_in_flag_words(tmp_path: Path) -> None:
    base = ["train", "--runs-dir", str(tmp_path), "--name", "x", "-q"]
    for args, message in (
        (["--epochs", "-1"], "Error: --epochs must be >= 1\n"),
        (["--batch-size", "1"], "Error: --batch-size must be >= 2\n"),
        (["--set", "optim.epochs=-1"], "Error: optim.epochs must be >= 1\n"),  # the key typed
        (["--epochs", "2", "--set", "optim.epochs=0"], "Error: optim.epochs must be >= 1\n"),
        (["--threads", "0"], "Error: --threads must be >= 1\n"),
    ):
        result = invoke(*base, *args)
        assert result.exit_code == 1 and result.stderr == message, (args, result.output)
    assert list(tmp_path.iterdir()) == []


def test_cheap_errors_come_before_torch(tmp_path: Path) -> None:
    """Dataset, device, run-directory and spec errors, each one line and exit 1, without
    importing torch (which takes 15-20 s on a cold cache)."""
    import os
    import subprocess
    import sys

    started = invoke("train", "--runs-dir", str(tmp_path), "--name", "r", "-q", "--stop-after", "1")
    assert started.exit_code == 0, started.output
    run = tmp_path / "r"
    cases = [
        (["train", "--dataset", "npz:/nonexistent"], "/nonexistent does not exist"),
        (["train", "--dataset", "folder:/nonexistent"], "is not a directory"),
        (["train", "--dataset", "cifar10:/nonexistent"], "cifar10 not found under"),
        (["train", "--dataset", "bogus:x"], "unknown dataset"),
        (["train", "--device", "cuda:1"], "CUDA is not available"),
        (["train", "--device", "mps"], "Apple"),
        (["train", "--runs-dir", str(run / "manifest.json")], "is not a directory"),
        (["eval", "/nonexistent-run"], "does not exist"),
        (["eval", str(run), "--dataset", "npz:/nonexistent"], "/nonexistent does not exist"),
        (["eval", str(run), "--device", "cuda"], "CUDA is not available"),
        (["train", "--resume", str(run), "--quiet", "--name", "y"], "--resume continues"),
    ]
    code = (
        "import sys\n"
        "from hardstat.cli import app\n"
        f"for args in {[args + ['--quiet'] * (args[0] == 'train') for args, _ in cases]!r}:\n"
        "    try:\n"
        "        app(args)\n"
        "    except SystemExit as e:\n"
        "        assert e.code == 1, (args, e.code)\n"
        "print('torch' in sys.modules)\n"
    )
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path
    )
    assert out.returncode == 0 and out.stdout.strip() == "False", out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == len(cases), out.stderr
    for line, (args, message) in zip(lines, cases, strict=True):
        assert line.startswith("Error: ") and message in line, (args, line)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r"]


def test_resume_of_a_finished_run_says_so_and_changes_nothing(tmp_path: Path) -> None:
    args = ["train", "--runs-dir", str(tmp_path), "--name", "f", "-q", "--epochs", "1"]
    assert invoke(*args).exit_code == 0
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "f").rglob("*")}
    result = invoke("train", "--resume", str(tmp_path / "f"))
    assert result.exit_code == 0, result.output
    assert result.stderr == f"run {tmp_path / 'f'} is already finished; nothing to resume\n"
    assert result.stdout.strip() == str(tmp_path / "f")
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "f").rglob("*")} == before


def test_runs_started_in_the_same_second_get_their_own_directories(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import time

    monkeypatch.setattr(time, "strftime", lambda fmt, *a: "20260101-000000")
    args = ["train", "--runs-dir", str(tmp_path), "-q", "--stop-after", "1"]
    first, second = invoke(*args), invoke(*args)
    assert first.exit_code == second.exit_code == 0, second.output
    name = "tiny-band0-100-s0-20260101-000000"
    assert first.stdout.strip() == str(tmp_path / name)
    assert second.stdout.strip() == str(tmp_path / f"{name}-2")


def test_a_run_another_process_trains_is_not_offered_for_resume(tmp_path: Path) -> None:
    from hardstat import runs

    args = ["train", "--runs-dir", str(tmp_path), "--name", "live", "-q", "--stop-after", "1"]
    assert invoke(*args).exit_code == 0
    with runs.RunLock(tmp_path / "live"):  # as the training process holds it
        result = invoke(*args)
    assert result.exit_code == 1 and len(result.stderr.strip().splitlines()) == 1
    assert "is in use by process" in result.stderr and "--resume" not in result.stderr


def test_help_describes_every_option_plainly() -> None:
    wide = invoke("train", "--help", env={"COLUMNS": "240"})
    text = " ".join(wide.stdout.split())
    for phrase in (
        "--backbone <convnet|resnet18|resnet50> Encoder network. Default: the preset's (tiny "
        "convnet",
        "--epochs <int> Passes over the training set. Default: the preset's (tiny 3, demo 15,",
        "--batch-size -B <int> Images per step",
        "--seed <int> Seed of the initial weights",
    ):
        assert phrase in text, phrase
    for command in (["train"], ["eval"], ["sql"], ["analyze", "consistency"], ["report"], []):
        assert "<bool>" not in invoke(*command, "--help").stdout, command
    bad = invoke("train", "--backbone", "vgg")
    assert bad.exit_code == 2 and "'vgg' is not one of 'convnet'" in bad.output
    assert "Value error" not in bad.output
