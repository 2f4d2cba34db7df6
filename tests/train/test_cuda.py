"""The trainer on CUDA with bf16 mixed precision (skipped without a GPU; no DuckDB needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

torch = pytest.importorskip("torch")

from hardstat import runs  # noqa: E402
from hardstat.config import preset  # noqa: E402
from hardstat.train.loop import train  # noqa: E402

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
]


def test_trains_and_logs_on_cuda_with_amp(tmp_path: Path) -> None:
    config = preset("tiny").replace(device="cuda", amp=True, band="0-5", **{"optim.epochs": 2})
    result = train(config, tmp_path / "run", progress=False)
    assert not result.interrupted and result.steps_done == 16
    manifest = runs.read_manifest(tmp_path / "run")
    assert manifest["status"] == "finished" and manifest["device"].startswith("cuda")
    steps = pq.read_table(tmp_path / "run" / "steps").to_pydict()
    assert len(steps["step"]) == 16 and np.isfinite(steps["loss"]).all()
    pairs = pq.read_table(tmp_path / "run" / "pairs", columns=["step", "query_id", "rank"])
    k = config.model.queue_size
    ranks = pairs.column("rank").to_numpy().reshape(-1, k)
    assert (np.sort(ranks, axis=1) == np.arange(1, k + 1)).all()  # a permutation per query
    in_band = pq.read_table(tmp_path / "run" / "pairs", columns=["in_band"]).column(0)
    assert (
        in_band.to_numpy().reshape(-1, k).sum(axis=1).tolist()
        == [config.parsed_band.kept_count(k)] * ranks.shape[0]
    )
    assert result.knn_top1 is not None and 0.0 <= result.knn_top1 <= 1.0
