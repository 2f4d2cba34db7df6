"""examples/simclr.py (plain PyTorch SimCLR, in-batch negatives) on generated images."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from hardstat import runs

REPO = Path(__file__).parents[2]


def run_example(out: Path, *args: str) -> subprocess.CompletedProcess[str]:
    argv = ["--data", "synthetic:128", "--epochs", "2", "--batch-size", "32", "--every", "1"]
    return subprocess.run(
        [sys.executable, str(REPO / "examples" / "simclr.py"), *argv, *args, "--out", str(out)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=600,
    )


@pytest.mark.parametrize("band", ["0-100", "0-5"])
def test_simclr_example_writes_an_in_batch_log(tmp_path: Path, band: str) -> None:
    run = tmp_path / "simclr"
    done = run_example(run, "--queries", "8", "--band", band)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == str(run) and "kNN top-1" in done.stderr
    m = runs.read_manifest(run)
    k = 2 * 32 - 2
    assert (m["negatives"], m["queue_size"], m["status"], m["steps_done"]) == (
        "in_batch",
        k,
        "finished",
        8,
    )
    assert m["band"] == band and m["band_kept"] == (k if band == "0-100" else 4)
    pairs = f"read_parquet('{run}/pairs/*.parquet')"
    con = duckdb.connect()
    (n_queries, bad_ranks, own, wrong_key_step, kept) = con.execute(
        f"""WITH q AS (SELECT step, query_id, count(*) AS n, count(DISTINCT rank) AS ranks,
                              min(rank) AS lo, max(rank) AS hi, sum(in_band::INT) AS kept,
                              sum((neg_id = query_id)::INT) AS own,
                              sum((key_step != step)::INT) AS wrong_key_step,
                              count(DISTINCT neg_id) AS others
                       FROM {pairs} GROUP BY ALL)
            SELECT count(*), sum((n != {k} OR ranks != {k} OR lo != 1 OR hi != {k}
                                  OR others != 31)::INT),
                   sum(own), sum(wrong_key_step), list(DISTINCT kept)
            FROM q"""
    ).fetchone()
    assert n_queries == 8 * 8  # every step logged, 8 queries each
    assert bad_ranks == 0 and own == 0 and wrong_key_step == 0  # each other sample twice
    assert kept == [m["band_kept"]]
    # rank 1 is the most similar negative of every query
    (disorder,) = con.execute(
        f"""SELECT count(*) FROM (SELECT step, query_id, rank, similarity,
                   lag(similarity) OVER (PARTITION BY step, query_id ORDER BY rank) AS prev
                   FROM {pairs}) WHERE similarity > prev"""
    ).fetchone()
    assert disorder == 0
