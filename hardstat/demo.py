"""``hardstat demo``: the offline showcase, from nothing to charts and a report.

Trains MoCo v2 on the real CIFAR-10 sample shipped with hardstat (the ``demo`` preset), logs
ranks, evaluates a linear probe, runs the consistency and semantic analyses once, saves their
charts and JSON results beside the run, and writes the HTML report from those same results
(collect, then render: the report does not run them again). Every step goes through the same
library functions as the individual commands. How long it takes: docs/timings.md.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

BAND = "0-5"
"""The consistency test's hard band (also the report's default)."""
MEASURE = "wup"
"""The WordNet measure of the semantic analysis."""


@dataclass(frozen=True)
class DemoResult:
    run_dir: Path
    report: Path
    files: tuple[Path, ...]
    knn_top1: float | None
    linear_top1: float
    seconds: float


def run_demo(
    out: Path,
    *,
    name: str | None = None,
    epochs: int | None = None,
    progress: bool = True,
    say: Callable[[str], None] = print,
) -> DemoResult:
    """Train the demo run under ``out`` and write its analyses and report; return the paths."""
    from hardstat.config import preset

    t0 = time.perf_counter()
    config = preset("demo")
    if epochs is not None:
        config = config.replace(**{"optim.epochs": epochs})
    run_dir = Path(out) / (name or f"demo-{time.strftime('%Y%m%d-%H%M%S')}")

    say(f"[1/4] training MoCo v2 on 2,000 real CIFAR-10 images -> {run_dir}")
    from hardstat.train.loop import train
    from hardstat.train.posthoc import evaluate_run

    result = train(config, run_dir, progress=progress)
    say("[2/4] linear probe on frozen features")
    (linear,) = evaluate_run(run_dir, linear=True, knn=False)

    say("[3/4] analyses: consistency of hardness, WordNet semantics of hard negatives")
    from hardstat.analysis import logs
    from hardstat.analysis.consistency import ConsistencyResult, consistency
    from hardstat.analysis.semantic import semantic
    from hardstat.charts import save_chart
    from hardstat.charts.consistency import consistency_chart
    from hardstat.charts.semantic import semantic_chart
    from hardstat.errors import CorruptLogError, LogError

    analysis_dir = run_dir / "analysis"
    analysis_dir.mkdir(exist_ok=True)
    con = logs.connect(logs.find_runs([run_dir]))
    cons: ConsistencyResult | str
    try:
        try:
            cons = consistency(con, band=BAND)
        except LogError as e:  # e.g. one epoch: no image has two keys yet
            if isinstance(e, CorruptLogError):
                raise
            cons = str(e)
            say(f"      consistency not available: {e}")
        sem = semantic(con, measure=MEASURE)
    finally:
        con.close()
    files = [
        save_chart(
            semantic_chart(sem.bins_frame(), sem.trajectory_frame()), analysis_dir / "semantic.png"
        )
    ]
    if not isinstance(cons, str):
        chart = consistency_chart(cons.chart_tables(), band=cons.band)
        files.append(save_chart(chart, analysis_dir / "consistency.png"))
    for stem, res in (("consistency", cons), ("semantic", sem)):
        if isinstance(res, str):
            continue
        path = analysis_dir / f"{stem}.json"
        path.write_text(json.dumps(res.to_dict(), indent=2, default=str) + "\n")
        files.append(path)

    say("[4/4] report (from the results above)")
    from hardstat.report import build_report

    report = build_report(
        [run_dir],
        out=analysis_dir / "report.html",
        band=BAND,
        measure=MEASURE,
        semantic=sem,
        consistency=cons,
    )
    return DemoResult(
        run_dir=run_dir,
        report=Path(report),
        files=tuple(files),
        knn_top1=result.knn_top1,
        linear_top1=linear.top1,
        seconds=time.perf_counter() - t0,
    )
