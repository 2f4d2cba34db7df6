"""``hardstat demo``: the offline showcase, from nothing to charts and a report in minutes.

Trains MoCo v2 on the real CIFAR-10 sample shipped with hardstat (the ``demo`` preset), logs
ranks, evaluates a linear probe, runs the consistency and semantic analyses, saves their charts
and JSON results beside the run, and writes the HTML report. Every step goes through the same
library functions as the individual commands.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


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
    from hardstat.analysis.consistency import consistency
    from hardstat.analysis.semantic import semantic
    from hardstat.charts import save_chart
    from hardstat.charts.consistency import consistency_chart
    from hardstat.charts.semantic import semantic_chart
    from hardstat.errors import LogError

    analysis_dir = run_dir / "analysis"
    analysis_dir.mkdir(exist_ok=True)
    con = logs.connect(logs.find_runs([run_dir]))
    try:
        try:
            cons = consistency(con, band="0-5")
        except LogError as e:  # e.g. one epoch: no image has two keys yet
            cons = None
            say(f"      consistency not available: {e}")
        sem = semantic(con, measure="wup")
    finally:
        con.close()
    files = [
        save_chart(
            semantic_chart(sem.bins_frame(), sem.trajectory_frame()), analysis_dir / "semantic.png"
        )
    ]
    if cons is not None:
        chart = consistency_chart(cons.chart_tables(), band=cons.band)
        files.append(save_chart(chart, analysis_dir / "consistency.png"))
    for stem, res in (("consistency", cons), ("semantic", sem)):
        if res is None:
            continue
        path = analysis_dir / f"{stem}.json"
        path.write_text(json.dumps(res.to_dict(), indent=2, default=str) + "\n")
        files.append(path)

    say("[4/4] report")
    from hardstat.report import build_report

    report = build_report([run_dir], out=analysis_dir / "report.html")
    return DemoResult(
        run_dir=run_dir,
        report=Path(report),
        files=tuple(files),
        knn_top1=result.knn_top1,
        linear_top1=linear.top1,
        seconds=time.perf_counter() - t0,
    )
