"""docs/record.md: its two complete examples run as they are and write analysable runs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from hardstat import runs
from hardstat.analysis import logs

DOC = Path(__file__).parents[1] / "docs" / "record.md"


def examples() -> list[str]:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    return [b for b in blocks if b.startswith("import torch") and "Recorder.create(" in b]


def test_the_doc_has_both_examples() -> None:
    assert len(examples()) == 2
    for block in examples():
        code = [line for line in block.splitlines() if line.strip()]
        assert len([line for line in code if not line.startswith(("import", "from"))]) <= 22


@pytest.mark.parametrize(
    ("index", "run", "negatives"), [(0, "my-moco", "queue"), (1, "my-simclr", "in_batch")]
)
def test_doc_example_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, index: int, run: str, negatives: str
) -> None:
    monkeypatch.chdir(tmp_path)
    exec(compile(examples()[index], f"docs/record.md example {index}", "exec"), {})
    m = runs.read_manifest(tmp_path / "runs" / run)
    assert (m["status"], m["negatives"], m["steps_done"]) == ("finished", negatives, 40)
    con = logs.connect(logs.find_runs([tmp_path / "runs" / run]))
    (steps, queries, bad) = con.execute(
        """SELECT count(DISTINCT step), count(DISTINCT (step, query_id)),
                  count(*) FILTER (WHERE rank < 1 OR rank > r.queue_size)
           FROM pairs, runs r"""
    ).fetchone()
    assert steps == 4 and queries == 4 * 64 and bad == 0  # steps 0, 10, 20, 30
