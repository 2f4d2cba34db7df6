"""Training under torchrun: 2 CPU processes with the gloo backend, launched as users launch them.

One uninterrupted 2-process run, the same config in a single process, and a 2-process run
stopped and resumed are compared: the gathered queue, the split of every logged step's queries
between the processes, the files each process writes, what the readers see, and resumption.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow.parquet as pq
import pytest

torch = pytest.importorskip("torch")
from typer.testing import CliRunner  # noqa: E402

from hardstat.cli import app  # noqa: E402
from hardstat.config import preset  # noqa: E402
from hardstat.errors import ConfigError  # noqa: E402
from hardstat.logwriter import part_name  # noqa: E402
from hardstat.train import distributed  # noqa: E402
from hardstat.train.checkpoint import checkpoint_path, load_checkpoint  # noqa: E402
from hardstat.train.loop import epoch_order, process_shares, train  # noqa: E402
from hardstat.train.model import MoCo  # noqa: E402

# tiny preset: B = 64 (32 per process), K = 256; 8 steps per epoch; every query logged
OPTIONS = [
    "--preset", "tiny", "--dataset", "synthetic:512", "--epochs", "2", "--device", "cpu",
    "--threads", "1", "--log-every", "2", "--log-queries", "0", "-q",
]  # fmt: skip
CONFIG = preset("tiny").replace(
    device="cpu",
    threads=1,
    **{
        "data.dataset": "synthetic:512",
        "optim.epochs": 2,
        "log.every": 2,
        "log.queries": 0,
    },
)
B, K, STEPS_PER_EPOCH, STEPS = 64, 256, 8, 16

pytestmark = pytest.mark.slow  # torchrun subprocesses: minutes; .ci/run runs them


def torchrun(*args: str, processes: int = 2, timeout: float = 240) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc-per-node N -m hardstat ARGS`` in a subprocess."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for var in distributed.ENV_VARS:  # never inherit a launcher's variables
        env.pop(var, None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    cmd += ["--nproc-per-node", str(processes), "-m", "hardstat", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)


def sql(query: str, *params: Any) -> list[tuple[Any, ...]]:
    return duckdb.connect().execute(query, list(params)).fetchall()


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("ddp")
    full = torchrun("train", *OPTIONS, "--out", str(root), "--name", "full")
    assert full.returncode == 0, full.stderr[-3000:]
    stopped = torchrun("train", *OPTIONS, "--out", str(root), "--name", "resumed",
                       "--stop-after", "5")  # fmt: skip
    assert stopped.returncode == 0, stopped.stderr[-3000:]
    shutil.copytree(root / "resumed", root / "stopped-copy")
    resumed = torchrun("train", "--resume", str(root / "resumed"), "-q")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    single = train(CONFIG, root / "single", progress=False)
    assert single.steps_done == STEPS
    return {"root": root, "full": full, "stopped": stopped, "resumed": resumed}


def global_batch(step: int) -> np.ndarray:
    """The sample ids of global batch ``step`` (synthetic sample ids are positions)."""
    epoch, i = divmod(step, STEPS_PER_EPOCH)
    return epoch_order(512, CONFIG.seed, epoch)[i * B : (i + 1) * B].numpy()


def test_main_process_reports_once(runs: dict[str, Any]) -> None:
    root = runs["root"]
    assert runs["full"].stdout.splitlines() == [str(root / "full")]
    assert runs["full"].stderr.count("final kNN top-1") == 1
    assert "stopped after step 5 (--stop-after)" in runs["stopped"].stderr


def test_each_process_writes_its_own_files(runs: dict[str, Any]) -> None:
    run = runs["root"] / "full"
    for table in ("pairs", "queries"):
        files = sorted(p.name for p in (run / table).iterdir())
        assert {f[:8] for f in files} == {"part-p00"} and len(files) == 4
        for process in (0, 1):
            mine = [f for f in files if f.startswith(f"part-p{process:03d}-")]
            assert mine == [part_name(process, seq) for seq in range(2)]  # one per epoch
            for f in mine:  # the process column agrees with the file's name
                col = pq.read_table(run / table / f, columns=["process"]).column(0)
                assert set(col.to_pylist()) == {process}
    for table in ("steps", "evals", "samples", "classes"):  # written by the main process only
        assert all(p.name.startswith("part-p000-") for p in (run / table).iterdir())
    manifest = (run / "manifest.json").read_text()
    assert '"processes": 2' in manifest and '"status": "finished"' in manifest


def test_gathered_queue_matches_a_single_process(runs: dict[str, Any]) -> None:
    two = load_checkpoint(checkpoint_path(runs["root"] / "full"))["model"]
    one = load_checkpoint(checkpoint_path(runs["root"] / "single"))["model"]
    for buffer in ("queue.sample_ids", "queue.labels", "queue.steps", "queue.ptr"):
        assert torch.equal(two[buffer], one[buffer]), buffer
    assert (two["queue.sample_ids"] >= 0).all()  # a full queue, no initial keys left
    # and the keys themselves are unit vectors from a trained key encoder
    assert torch.allclose(two["queue.keys"].norm(dim=1), torch.ones(K), atol=1e-5)


def test_logged_queries_cover_each_global_batch_once(runs: dict[str, Any]) -> None:
    run = runs["root"] / "full"
    rows = sql(
        f"SELECT step, process, list(query_id ORDER BY query_id) FROM '{run}/queries/*.parquet' "
        "GROUP BY ALL ORDER BY ALL"
    )
    assert [r[0] for r in rows] == [s for s in range(0, STEPS, 2) for _ in (0, 1)]
    for step, process, ids in rows:
        share = global_batch(step)[process * 32 : (process + 1) * 32]
        assert ids == sorted(share.tolist()), (step, process)
    (dupes,) = sql(
        f"SELECT count(*) - count(DISTINCT (step, query_id)) FROM '{run}/queries/*.parquet'"
    )[0]
    assert dupes == 0


def test_pairs_have_no_duplicates_and_match_a_single_process(runs: dict[str, Any]) -> None:
    two, one = runs["root"] / "full", runs["root"] / "single"
    (n, distinct_rank, queries) = sql(
        f"SELECT count(*), count(DISTINCT (step, query_id, rank)), "
        f"count(DISTINCT (step, query_id)) FROM '{two}/pairs/*.parquet'"
    )[0]
    assert n == distinct_rank == queries * K and queries == (STEPS // 2) * B
    # (step, query_id, neg_id) repeats only where the queue itself held two keys of one image
    # (the last batches of one epoch and the first of the next): exactly as in one process
    multiset = "SELECT step, query_id, neg_id, count(*) AS n FROM '{}/pairs/*.parquet' GROUP BY ALL"
    diff = sql(
        f"(({multiset.format(two)}) EXCEPT ALL ({multiset.format(one)})) UNION ALL "
        f"(({multiset.format(one)}) EXCEPT ALL ({multiset.format(two)}))"
    )
    assert diff == []
    (within_epoch_dupes,) = sql(
        f"SELECT count(*) FROM ({multiset.format(two)}) "
        f"WHERE n > 1 AND step % {STEPS_PER_EPOCH} >= {K // B}"
    )[0]
    assert within_epoch_dupes == 0


def test_sql_and_analyses_see_one_run(runs: dict[str, Any]) -> None:
    run = runs["root"] / "full"
    result = CliRunner().invoke(
        app,
        [
            "sql",
            str(run),
            "SELECT process, count(*) AS pairs FROM pairs GROUP BY process ORDER BY process",
            "--format",
            "csv",
        ],
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[1:] == [f"0,{8 * 32 * K}", f"1,{8 * 32 * K}"]
    result = CliRunner().invoke(app, ["sql", str(run), "SELECT count(*) FROM runs", "-f", "csv"])
    assert result.stdout.splitlines()[1] == "1"
    # the consistency analysis counts the pairs of both processes (those with a known neg_id
    # that is not the query itself)
    result = CliRunner().invoke(
        app,
        [
            "analyze",
            "consistency",
            str(run),
            "-f",
            "json",
            "--permutations",
            "99",
            "--min-keys",
            "2",
        ],
    )
    assert result.exit_code == 0, result.output
    (known,) = sql(
        f"SELECT count(neg_id) FILTER (WHERE neg_id <> query_id) FROM '{run}/pairs/*.parquet'"
    )[0]
    assert json.loads(result.stdout)["n_pairs"] == known > 8 * 32 * K


def test_resumed_run_logs_what_an_uninterrupted_run_logs(runs: dict[str, Any]) -> None:
    full, resumed = runs["root"] / "full", runs["root"] / "resumed"
    assert not (resumed / "superseded").exists()
    for table, key in [
        ("pairs", "step, query_id, rank"),
        ("queries", "step, query_id"),
        ("steps", "step"),
        ("evals", "step, kind"),
    ]:
        a = sql(f"SELECT * EXCLUDE (run) FROM '{full}/{table}/*.parquet' ORDER BY {key}")
        b = sql(f"SELECT * EXCLUDE (run) FROM '{resumed}/{table}/*.parquet' ORDER BY {key}")
        assert len(a) == len(b) > 0, table
        if table == "steps":  # wall-clock seconds differ; everything else is identical
            a = [r[:-2] + r[-1:] for r in a]
            b = [r[:-2] + r[-1:] for r in b]
        assert a == b, table


def test_resume_with_another_process_count_is_refused(runs: dict[str, Any]) -> None:
    stopped = runs["root"] / "stopped-copy"
    before = sorted((p.name, p.stat().st_mtime_ns) for p in stopped.rglob("*") if p.is_file())
    result = CliRunner().invoke(app, ["train", "--resume", str(stopped), "-q"])
    assert result.exit_code == 1
    assert "was trained by 2 process(es) and this resume has 1" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    after = sorted((p.name, p.stat().st_mtime_ns) for p in stopped.rglob("*") if p.is_file())
    assert before == after


def test_an_error_stops_every_process_with_one_line(runs: dict[str, Any]) -> None:
    # the run exists: the main process refuses, the other learns it instead of waiting forever
    again = torchrun("train", *OPTIONS, "--out", str(runs["root"]), "--name", "full", timeout=120)
    assert again.returncode != 0
    errors = [line for line in again.stderr.splitlines() if line.startswith("Error:")]
    assert errors == [
        f"Error: run directory {runs['root'] / 'full'} already exists; choose another --name, "
        f"delete it, or continue it with --resume {runs['root'] / 'full'}"
    ]


def test_process_shares() -> None:
    assert process_shares(256, 8, 1) == (256, 8)
    assert process_shares(256, 8, 4) == (64, 2)
    with pytest.raises(ConfigError, match="not divisible by the 3 processes"):
        process_shares(256, 6, 3)
    with pytest.raises(ConfigError, match=r"use --set model.bn_splits=4"):
        process_shares(256, 6, 4)
    p = [distributed.Processes(i, 3) for i in range(3)]
    assert [x.share(64) for x in p] == [22, 21, 21] and sum(x.share(5) for x in p) == 5


def test_one_process_needs_no_process_group() -> None:
    assert not distributed.active()
    x = torch.arange(6).view(3, 2)
    assert distributed.concat_all_gather(x) is x
    assert distributed.gather_objects({"a": 1}) == [{"a": 1}]
    assert distributed.any_process(True) and not distributed.any_process(False)


def test_launcher_variables_are_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.delenv("RANK", raising=False)
    with pytest.raises(ConfigError, match="launch with torchrun"):
        distributed.from_environment()
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    with pytest.raises(ConfigError, match="each process takes cuda:LOCAL_RANK"):
        distributed.setup_device("cuda:0", distributed.from_environment())


def test_a_sweep_under_torchrun_trains_each_run_with_every_process(tmp_path: Path) -> None:
    out = tmp_path / "sweep"
    args = ["sweep", "--preset", "tiny", "--dataset", "synthetic:512", "--epochs", "1",
            "--bands", "0-100,0-5", "--seeds", "0", "--out", str(out), "-q",
            "--set", "device=cpu", "--set", "threads=1"]  # fmt: skip
    result = torchrun(*args)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.splitlines() == [str(out)]  # reported once, by process 0
    assert result.stderr.count("0-5-s0") == 1
    for name in ("0-100-s0", "0-5-s0"):
        manifest = json.loads((out / name / "manifest.json").read_text())
        assert manifest["processes"] == 2 and manifest["status"] == "finished"
        files = {p.name[:7] for p in (out / name / "pairs").iterdir()}
        assert files == {"part-p0"} and len(list((out / name / "pairs").iterdir())) == 2
    status = json.loads((out / "sweep.json").read_text())
    assert [r["status"] for r in status["runs"]] == ["finished", "finished"]


def _join(rank: int, store: str) -> None:
    """Make this spawned process one of 2 gloo processes, as torchrun would."""
    os.environ.update(RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank))
    torch.distributed.init_process_group(
        "gloo", init_method=f"file://{store}", rank=rank, world_size=2
    )
    distributed.setup("cpu")  # the control group


def _spawn_two(target: Any, tmp_path: Path) -> list[dict[str, Any]]:
    """Run ``target(rank, store, out)`` in 2 spawned processes; their saved results."""
    outs = [str(tmp_path / f"p{r}.pt") for r in (0, 1)]
    ctx = torch.multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=target, args=(r, str(tmp_path / "store"), outs[r])) for r in (0, 1)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    return [torch.load(o, weights_only=False) for o in outs]


def _keys_in_two_processes(rank: int, store: str, out: str) -> None:
    """One of 2 processes: MoCo keys of its share, with the cross-process shuffle."""
    _join(rank, store)
    torch.manual_seed(0)
    moco = MoCo(backbone="convnet", width=8, dim=16, queue_size=32, bn_splits=1)
    images = torch.randn(8, 3, 16, 16, generator=torch.Generator().manual_seed(1))  # global
    share = images[rank * 4 : (rank + 1) * 4]
    gen = torch.Generator().manual_seed(10 + rank)  # process 0's draws the shuffles
    moco.encoder_k.eval()  # BN from running statistics: a key no longer depends on its batch
    k_eval, k_all_eval = moco.keys(share, gen)
    with torch.no_grad():
        eval_reference = moco.encoder_k(images)  # (8, C) no shuffle at all
    moco.encoder_k.train()  # BN from the statistics of each process's (shuffled) share
    k, k_all = moco.keys(share, gen)
    result = {"k_eval": k_eval, "k_all_eval": k_all_eval, "k": k, "k_all": k_all}
    result["eval_reference"] = eval_reference
    with torch.no_grad():  # (train-mode outputs depend on weights and batch statistics only)
        g = torch.Generator().manual_seed(10)  # process 0's generator, replayed
        torch.randperm(8, generator=g)  # the shuffle of the eval-mode call
        idx = torch.randperm(8, generator=g)  # the shuffle of the train-mode call
        shares = [moco.encoder_k(images[idx[p * 4 : (p + 1) * 4]]) for p in (0, 1)]
        result["train_reference"] = torch.cat(shares)[torch.argsort(idx)]
        unshuffled = [moco.encoder_k(images[p * 4 : (p + 1) * 4]) for p in (0, 1)]
        result["train_unshuffled"] = torch.cat(unshuffled)
    torch.save(result, out)
    torch.distributed.destroy_process_group()


def test_cross_process_shuffle_returns_every_key_to_its_image(tmp_path: Path) -> None:
    got = _spawn_two(_keys_in_two_processes, tmp_path)
    for rank, g in enumerate(got):
        mine = slice(rank * 4, (rank + 1) * 4)
        # with batch-independent BN the shuffle must be invisible: keys in image order
        torch.testing.assert_close(g["k_all_eval"], g["eval_reference"], rtol=0, atol=1e-6)
        torch.testing.assert_close(g["k_eval"], g["eval_reference"][mine], rtol=0, atol=1e-6)
        # in training mode each key is normalised with the share it was shuffled into: exactly
        # the keys of process 0's permutation, encoded share by share, put back in image order
        torch.testing.assert_close(g["k_all"], g["train_reference"], rtol=0, atol=1e-6)
        torch.testing.assert_close(g["k"], g["train_reference"][mine], rtol=0, atol=1e-6)
    torch.testing.assert_close(got[0]["k_all"], got[1]["k_all"], rtol=0, atol=0)
    # and that differs from normalising each process's own, unshuffled share
    assert not torch.allclose(got[0]["k_all"], got[0]["train_unshuffled"], atol=1e-3)


def _errors_in_two_processes(rank: int, store: str, out: str) -> None:
    """One of 2 processes: which error each raises when one or both fail in agreed()."""
    from hardstat.errors import DatasetError

    _join(rank, store)
    seen = []
    for failing in ({1}, {0, 1}, set()):
        try:
            with distributed.agreed():
                if rank in failing:
                    cls = ConfigError if rank == 0 else DatasetError
                    raise cls(f"failed in process {rank}")
            seen.append(None)
        except (ConfigError, DatasetError) as e:
            seen.append((type(e).__name__, str(e), e.reported_elsewhere))
    torch.save({"seen": seen}, out)
    torch.distributed.destroy_process_group()


def test_an_error_on_any_process_stops_all_and_is_reported_once(tmp_path: Path) -> None:
    got = _spawn_two(_errors_in_two_processes, tmp_path)
    # only process 1 fails: it reports its own error, process 0 raises a silent copy
    assert got[1]["seen"][0] == ("DatasetError", "failed in process 1", False)
    assert got[0]["seen"][0] == ("DatasetError", "failed in process 1", True)
    # both fail: process 0's error is the one, reported by process 0 only
    assert got[0]["seen"][1] == ("ConfigError", "failed in process 0", False)
    assert got[1]["seen"][1] == ("ConfigError", "failed in process 0", True)
    # nobody fails: nothing raised anywhere
    assert got[0]["seen"][2] is None and got[1]["seen"][2] is None


def test_the_cli_prints_an_error_once_and_names_its_process(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import typer

    from hardstat.cli.errors import reports_errors

    def fails(elsewhere: bool) -> None:
        error = ConfigError("bad thing; do this")
        error.reported_elsewhere = elsewhere
        raise error

    command = reports_errors(fails)
    monkeypatch.setenv("RANK", "1")
    with pytest.raises(typer.Exit) as e:
        command(False)
    assert e.value.exit_code == 1
    assert capsys.readouterr().err == "[process 1] Error: bad thing; do this\n"
    with pytest.raises(typer.Exit):
        command(True)
    assert capsys.readouterr().err == ""
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(typer.Exit):
        command(False)
    assert capsys.readouterr().err == "Error: bad thing; do this\n"


def test_a_killed_worker_leaves_a_resumable_run_and_no_traceback(tmp_path: Path) -> None:
    """SIGKILL one of two training processes: the survivor says in one line that it lost
    contact (no traceback from hardstat; torchrun's launcher prints its own report), and a
    resume with torchrun completes the run with every step once."""
    import signal
    import time

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for var in distributed.ENV_VARS:
        env.pop(var, None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    cmd += ["-m", "hardstat", "train", *OPTIONS, "--epochs", "4", "--out", str(tmp_path)]
    cmd += ["--name", "k"]
    proc = subprocess.Popen(
        cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env
    )
    checkpoint = tmp_path / "k" / "checkpoints" / "last.pt"
    deadline = time.monotonic() + 180
    while not checkpoint.is_file() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(0.3)
    workers = subprocess.run(
        ["ps", "-o", "pid=", "--ppid", str(proc.pid)], capture_output=True, text=True
    ).stdout.split()
    assert workers, "no worker processes found"
    os.kill(int(workers[-1]), signal.SIGKILL)
    _, err = proc.communicate(timeout=180)
    assert proc.returncode != 0
    assert "]: Traceback" not in err  # the training processes print no traceback
    resumed = torchrun("train", "--resume", str(tmp_path / "k"), "-q")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    steps = sql(f"SELECT step, count(*) FROM '{tmp_path}/k/steps/*.parquet' GROUP BY 1 ORDER BY 1")
    assert steps == [(s, 1) for s in range(4 * STEPS_PER_EPOCH)]
