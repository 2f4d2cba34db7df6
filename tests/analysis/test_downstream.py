"""Downstream accuracy from the evals table, against hand-computed values (float32-exact)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from hardstat.analysis import logs
from hardstat.analysis.downstream import COLUMNS, downstream


def ev(kind: str, step: int, epoch: int, top1: float, top5: float | None = None) -> dict:
    return {"step": step, "epoch": epoch, "kind": kind, "top1": top1, "top5": top5, "params": "{}"}


def of(path: Path):  # type: ignore[no-untyped-def]
    con = logs.connect(logs.find_runs([path]))
    try:
        return downstream(con)
    finally:
        con.close()


def test_final_best_and_linear_by_hand(make_run: Callable[..., Path]) -> None:
    make_run(
        "a",
        queue_size=64,
        evals=[
            ev("knn", 7, 0, 0.5),
            ev("knn", 15, 1, 0.75),
            ev("knn", 23, 2, 0.625),
            ev("knn", 23, 2, 0.375),  # a second evaluation at the same step: averaged
            ev("linear", 23, 2, 0.875, 0.96875),
        ],
    )
    run = make_run("b", queue_size=64, band="0-5", evals=[ev("knn", 7, 0, 0.25)])
    make_run("c", queue_size=64, band="5-100")  # no evaluation at all
    d = of(run.parent)
    assert d.runs == ("a", "b", "c") and list(d.evals.columns) == list(COLUMNS)
    knn_a = d.kind("knn").filter(d.kind("knn")["run"] == "a")
    assert knn_a["top1"].to_list() == [0.5, 0.75, 0.5] and knn_a["n_evals"].to_list() == [1, 1, 2]
    cols, rows = d.final_rows()
    assert cols[0] == "run" and len(cols) == 7
    # final kNN (epoch), best kNN (epoch), linear top-1, top-5; a run without any: dashes
    assert rows == [
        ["a", "50.00", "2", "75.00", "1", "87.50", "96.88"],
        ["b", "25.00", "0", "25.00", "0", "—", "—"],
        ["c", "—", "—", "—", "—", "—", "—"],
    ]
    kcols, krows = d.knn_rows()
    assert kcols == ["epoch", "a kNN top-1 %", "b kNN top-1 %"]
    assert krows == [["0", "50.00", "25.00"], ["1", "75.00", "—"], ["2", "50.00", "—"]]
    data = json.loads(json.dumps(d.to_dict()))  # JSON-ready: null where there is none
    final = {r["run"]: r for r in data["final"]}
    assert final["c"]["knn_top1"] is None and final["a"]["linear_top5"] == 0.96875
    assert final["a"]["best_epoch"] == 1


def test_no_evaluations(make_run: Callable[..., Path]) -> None:
    d = of(make_run("solo", queue_size=64))
    assert d.empty and d.runs == ("solo",)
    assert d.knn_rows() == (["epoch"], [])
