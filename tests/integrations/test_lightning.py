"""hardstat.integrations.lightning with PyTorch Lightning's own Trainer (skipped without it:
pip install "hardstat[lightning]")."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

pl = pytest.importorskip(
    "pytorch_lightning",
    reason="pytorch-lightning is not installed (pip install 'hardstat[lightning]')",
)

from hardstat import runs  # noqa: E402
from hardstat.classes import CIFAR10_CLASSES  # noqa: E402
from hardstat.integrations.lightning import RecorderCallback  # noqa: E402
from hardstat.negatives import info_nce, nt_xent_similarities  # noqa: E402
from hardstat.record import Recorder  # noqa: E402

N, B = 64, 16  # 4 steps per epoch


class SimCLR(pl.LightningModule):
    """A tiny SimCLR on random vectors (two noisy views of each), in-batch negatives."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 8))

    def training_step(self, batch: Any, batch_idx: int) -> dict[str, Any]:
        x, ids = batch
        z1 = F.normalize(self.net(x + 0.1 * torch.randn_like(x)), dim=1)
        z2 = F.normalize(self.net(x + 0.1 * torch.randn_like(x)), dim=1)
        s = nt_xent_similarities(z1, z2)
        losses = info_nce(s.l_pos, s.l_neg, 0.5, None)
        record = dict(
            query_ids=ids,
            pos_similarity=s.l_pos[:B],
            neg_similarity=s.l_neg[:B],
            neg_ids=ids[s.neg_index[:B]],
            losses=losses[:B],
        )
        return {"loss": losses.mean(), "hardstat": record}

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.05)


def loader() -> torch.utils.data.DataLoader:
    g = torch.Generator().manual_seed(0)
    data = torch.utils.data.TensorDataset(torch.randn(N, 8, generator=g), torch.arange(N))
    return torch.utils.data.DataLoader(
        data, batch_size=B, shuffle=True, drop_last=True, generator=g
    )


def trainer(epochs: int, callback: RecorderCallback) -> Any:
    return pl.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[callback],
    )


def new_recorder(run: Path) -> Recorder:
    return Recorder.create(
        run,
        negatives="in_batch",
        negatives_per_query=2 * B - 2,
        train_labels=torch.arange(N) % 10,
        classes=CIFAR10_CLASSES,
        every=2,
        queries=4,
    )


def test_callback_records_every_step_and_resumes_from_a_lightning_checkpoint(
    tmp_path: Path,
) -> None:
    torch.manual_seed(0)
    run = tmp_path / "run"
    first = trainer(1, RecorderCallback(new_recorder(run)))
    model = SimCLR()
    first.fit(model, loader())
    first.save_checkpoint(tmp_path / "epoch1.ckpt")  # carries the recorder's state
    m = runs.read_manifest(run)
    assert (m["status"], m["steps_done"], m["epochs_done"]) == ("finished", 4, 1)
    # a new process continues the run from the checkpoint
    second = trainer(2, RecorderCallback(Recorder.open(run)))
    second.fit(SimCLR(), loader(), ckpt_path=tmp_path / "epoch1.ckpt")
    steps = pq.read_table(run / "steps").to_pydict()
    assert steps["step"] == list(range(8)) and steps["epoch"] == [0] * 4 + [1] * 4
    assert steps["lr"] == pytest.approx([0.05] * 8)
    pairs = pq.read_table(run / "pairs", columns=["step", "query_id", "neg_id", "key_step"])
    logged = sorted(set(pairs.column("step").to_pylist()))
    assert logged == [0, 2, 4, 6]
    assert pairs.num_rows == len(logged) * 4 * (2 * B - 2)
    p = pairs.to_pydict()
    assert p["key_step"] == p["step"] and all(
        q != n for q, n in zip(p["query_id"], p["neg_id"], strict=True)
    )
    m = runs.read_manifest(run)
    assert (m["status"], m["steps_done"], m["negatives"]) == ("finished", 8, "in_batch")


def test_training_step_without_the_record_is_an_error(tmp_path: Path) -> None:
    class Plain(SimCLR):
        def training_step(self, batch: Any, batch_idx: int) -> Any:
            return super().training_step(batch, batch_idx)["loss"]

    rec = new_recorder(tmp_path / "run")
    with pytest.raises(Exception, match="training_step must return a dict"):
        trainer(1, RecorderCallback(rec)).fit(Plain(), loader())
    assert runs.read_manifest(tmp_path / "run")["status"] == "interrupted"
