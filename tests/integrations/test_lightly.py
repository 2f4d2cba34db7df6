"""hardstat.integrations.lightly and examples/lightly_moco.py with the real lightly package
(skipped without it: pip install "hardstat[lightly]")."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

pytest.importorskip("lightly", reason="lightly is not installed (pip install 'hardstat[lightly]')")

from lightly.loss import NTXentLoss  # noqa: E402

from hardstat import runs  # noqa: E402
from hardstat.cli import app  # noqa: E402
from hardstat.integrations.lightly import IdMemoryBank  # noqa: E402
from hardstat.negatives import info_nce, nt_xent_similarities, similarities  # noqa: E402

REPO = Path(__file__).parents[2]


def keys_of(step: int, ids: torch.Tensor, dim: int = 8) -> torch.Tensor:
    """A distinct unit key for every (step, sample id)."""
    g = torch.Generator().manual_seed(1000 * step)
    return F.normalize(torch.randn(len(ids), dim, generator=g) + ids[:, None].float(), dim=1)


@pytest.mark.parametrize("batch", [4, 3, 10])
def test_ids_follow_their_keys_through_wrap_around(batch: int) -> None:
    k = 10  # batch 3 and 4 do not divide K: lightly drops the part of a batch past the end
    bank = IdMemoryBank(size=(k, 8))
    assert (bank.sample_ids == -1).all() and (bank.key_steps == -1).all()
    written: dict[tuple[int, int], torch.Tensor] = {}
    for step in range(9):
        ids = torch.arange(batch) + 100 * step
        key = keys_of(step, ids)
        before = bank.bank.clone()
        bank.next_batch(ids, step)
        _, seen_bank = bank(key, update=True)
        assert seen_bank is not None and torch.equal(seen_bank.T, before)  # what the loss saw
        assert bank.seen is not None and torch.equal(bank.seen.keys, before)
        for i, sid in enumerate(ids.tolist()):
            written[(sid, step)] = key[i]
        for slot in range(k):
            sid, ks = int(bank.sample_ids[slot]), int(bank.key_steps[slot])
            if sid == -1:
                assert ks == -1
                continue
            assert torch.equal(bank.bank[slot], written[(sid, ks)]), (slot, sid, ks)


def test_update_without_next_batch_is_refused() -> None:
    bank = IdMemoryBank(size=(8, 4))
    with pytest.raises(ValueError, match="next_batch"):
        bank(torch.zeros(2, 4), update=True)
    bank.next_batch(torch.arange(3), 0)
    with pytest.raises(ValueError, match="3"):
        bank(torch.zeros(2, 4), update=True)


def test_state_dict_carries_keys_and_provenance() -> None:
    bank = IdMemoryBank(size=(6, 4))
    bank.next_batch(torch.arange(4), 7)
    bank(F.normalize(torch.randn(4, 4), dim=1), update=True)
    state = bank.state_dict()
    assert {"bank", "bank_ptr", "sample_ids", "key_steps"} <= set(state)
    again = IdMemoryBank(size=(6, 4))
    again.load_state_dict(state)
    assert torch.equal(again.bank, bank.bank) and int(again.bank_ptr) == 4
    assert again.sample_ids.tolist() == [0, 1, 2, 3, -1, -1]
    assert again.key_steps.tolist() == [7, 7, 7, 7, -1, -1]


def test_hardstat_loss_equals_lightly_ntxent() -> None:
    torch.manual_seed(0)
    t = 0.2
    z1, z2 = torch.randn(6, 8), torch.randn(6, 8)
    s = nt_xent_similarities(F.normalize(z1, dim=1), F.normalize(z2, dim=1))
    ours = info_nce(s.l_pos, s.l_neg, t, None).mean()
    assert torch.allclose(ours, NTXentLoss(temperature=t)(z1, z2), atol=1e-5)
    # with a memory bank (MoCo): the similarities to bank.seen reproduce lightly's loss
    criterion = NTXentLoss(temperature=t, memory_bank_size=(16, 8))
    criterion.memory_bank = bank = IdMemoryBank(size=(16, 8))
    for step in range(3):
        q, k = torch.randn(6, 8, requires_grad=True), torch.randn(6, 8)
        bank.next_batch(torch.arange(6) + 6 * step, step)
        loss = criterion(q, k)
        assert bank.seen is not None
        l_pos, l_neg = similarities(F.normalize(q, dim=1), F.normalize(k, dim=1), bank.seen.keys)
        assert torch.allclose(info_nce(l_pos, l_neg, t, None).mean(), loss, atol=1e-5)
    # K = 16, B = 6: the third batch fills slots 12-15 and lightly drops its last two keys
    assert bank.sample_ids.tolist() == list(range(16))
    assert bank.key_steps.tolist() == [0] * 6 + [1] * 6 + [2] * 4 and int(bank.bank_ptr) == 0


@pytest.mark.slow
def test_lightly_example_log_is_analysed_and_reported(tmp_path: Path) -> None:
    run = tmp_path / "lightly-moco"
    args = "--subset 256 --epochs 4 --batch-size 32 --queue-size 128 --width 16 --every 2"
    done = subprocess.run(
        [
            sys.executable,
            str(REPO / "examples" / "lightly_moco.py"),
            *args.split(),
            "--out",
            str(run),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == str(run)
    m = runs.read_manifest(run)
    assert (m["status"], m["negatives"], m["queue_size"], m["steps_done"]) == (
        "finished",
        "queue",
        128,
        32,
    )
    cli = CliRunner()
    consistency = cli.invoke(app, ["analyze", "consistency", str(run), "--permutations", "200"])
    assert consistency.exit_code == 0, consistency.output
    # four epochs: four keys per image, so persistence and the calls can be measured
    assert "hard band 0-5: hardest 7 of K = 128" in consistency.stdout
    assert "persistence (C6)" in consistency.stdout
    semantic = cli.invoke(
        app, ["analyze", "semantic", str(run), "--permutations", "200", "--bootstrap", "200"]
    )
    assert semantic.exit_code == 0, semantic.output
    assert "Spearman rho(rank, class_similarity)" in semantic.stdout
    report = cli.invoke(app, ["report", str(run), "--out", str(tmp_path / "r.html")])
    assert report.exit_code == 0, report.output
    html = (tmp_path / "r.html").read_text()
    assert "Does hardness persist with the image?" in html
    assert "Are hard negatives semantically similar to their query?" in html
    # the charts at least; gallery images only where negatives are called (a 4-epoch run on
    # 256 images gives too little evidence across keys for calls, honestly)
    assert html.count("data:image/png;base64") >= 2
