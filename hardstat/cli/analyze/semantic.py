"""``hardstat analyze semantic``: are hard negatives semantically close to their query?"""

from __future__ import annotations

import json
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated

import typer

from hardstat.cli.analyze import app
from hardstat.cli.errors import reports_errors
from hardstat.cli.options import (
    DEFAULT_MEASURE,
    ChartOption,
    Command,
    Format,
    FormatOption,
    Measure,
    OutAlias,
    RunsArgument,
    chart_path,
)

if TYPE_CHECKING:
    from hardstat.analysis.semantic import SemanticResult

DEFAULT_EDGES = "0,0.1,1,5,10,25,50,75,95,100"
MAX_EPOCH_ROWS = 25
"""The text trajectory shows at most this many epochs (evenly spaced; all are in the JSON)."""


class Resampling(StrEnum):
    step_negative = "step-negative"
    query_negative = "query-negative"
    step = "step"
    query = "query"


@app.command("semantic", cls=Command)
@reports_errors
def semantic(
    runs: RunsArgument,
    measure: Annotated[
        Measure,
        typer.Option(
            help="WordNet class_similarity of two classes: wup (Wu-Palmer), path, lch "
            "(Leacock-Chodorow)."
        ),
    ] = DEFAULT_MEASURE,
    epochs: Annotated[
        str | None,
        typer.Option(
            help="Epochs to analyse, A-B, A- (from A on) or A, counted from 0; 0- for all. "
            "Default (neither --epochs nor --steps): late training, the last third of each "
            "run's logged steps.",
            show_default=False,
        ),
    ] = None,
    steps: Annotated[
        str | None,
        typer.Option(
            help="Global steps to analyse, A-B, A- or A (with --epochs: both must hold).",
            show_default=False,
        ),
    ] = None,
    bins: Annotated[
        str,
        typer.Option(
            help="Edges of the hardness bins in percent of the queue (rank percentile "
            "100·(rank-1)/K), increasing, comma-separated."
        ),
    ] = DEFAULT_EDGES,
    resampling: Annotated[
        Resampling,
        typer.Option(
            help="Bootstrap design of the intervals within a run: step-negative (two-way: "
            "steps with their queries x negatives), query-negative, step, or query (too "
            "narrow: ignores the shared queue and encoder; for comparison)."
        ),
    ] = Resampling.step_negative,
    bootstrap: Annotated[
        int,
        typer.Option(help="Bootstrap replicates for the 95% intervals; 0: none."),
    ] = 1000,
    permutations: Annotated[
        int,
        typer.Option(
            help="Label permutations for the p-value of Spearman's rho; 0 (none) or >= 200."
        ),
    ] = 1000,
    seed: Annotated[int, typer.Option(help="Seed of the bootstrap and permutations.")] = 0,
    fmt: FormatOption = Format.table,
    chart: ChartOption = None,
    out: OutAlias = None,
) -> None:
    """WordNet class_similarity of query and negative classes by hardness: effect sizes with
    honest intervals, then a null model.

    Effect sizes per run, with 95% intervals from a two-way bootstrap over steps (each with its
    queries) x negatives, conditional on the run: the same-class excess in the hardest 5% over
    chance, the class_similarity gap of different-class pairs between the hardest 5% and the
    25-75% bins (the headline), and between the easiest 5% and the 50-75% bin (the U shape).
    With several runs (seeds), their mean with a t-interval over runs. Per hardness bin (runs
    pooled): pairs, same-class fraction, and mean class_similarity of different-class pairs only.
    The headline contrast per epoch. Then Spearman's rho of rank and class_similarity with a
    label-permutation p-value. Self-negatives (a query's own image) are left out and counted.
    CIFAR-10/100 runs use shipped tables; other datasets need WordNet (`hardstat wordnet
    install`). See docs/analyses.md.

    Example: `hardstat analyze semantic runs/c10-s0 runs/c10-s1 runs/c10-s2 --chart semantic.png`
    """
    from hardstat.analysis import logs
    from hardstat.analysis.semantic import bins_from_edges, check_options, parse_range
    from hardstat.analysis.semantic import semantic as run_semantic
    from hardstat.errors import ConfigError

    out = chart_path(chart, out)
    check_options(measure.value, bootstrap, permutations, resampling=resampling.value)
    try:
        bin_spec = bins_from_edges([e.strip() for e in bins.split(",") if e.strip()])
    except ConfigError as e:
        raise e.reworded(f"--bins {bins}: {e}") from None
    epoch_range = None if epochs is None else parse_range(epochs, "--epochs")
    step_range = None if steps is None else parse_range(steps, "--steps")

    con = logs.connect(logs.find_runs(runs))
    try:
        result = run_semantic(
            con,
            measure=measure.value,
            bins=bin_spec,
            bootstrap=bootstrap,
            permutations=permutations,
            seed=seed,
            epochs=epoch_range,
            steps=step_range,
            resampling=resampling.value,
        )
    finally:
        con.close()
    for warning in result.warnings:
        typer.echo(f"warning: {warning}", err=True)
    if fmt is Format.json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
    else:
        typer.echo("\n".join(render(result)))
    if out is not None:
        from hardstat.charts import save_chart
        from hardstat.charts.semantic import semantic_chart

        save_chart(semantic_chart(result.bins_frame(), result.trajectory_frame()), out)
        typer.echo(f"wrote {out}", err=True)


def render(result: SemanticResult) -> list[str]:
    """The result as text: effect sizes first (per run, then over runs), the bins, the
    trajectory of the headline contrast, then Spearman's rho and its p-values."""
    from hardstat import display
    from hardstat.analysis.semantic import CONTRASTS, HEADLINE
    from hardstat.analysis.wordnet import MEASURE_TITLES
    from hardstat.cli.sql import format_table

    name = MEASURE_TITLES.get(result.measure, result.measure)
    diagonal = "" if display.missing(result.diagonal) else f"; same class = {result.diagonal:.4g}"
    lines = [
        f"{name} class_similarity of query and negative classes "
        f"({result.class_similarity_source}{diagonal})",
        f"window: {result.window}",
    ]
    if result.classes_note:  # synthetic classes: said before any figure
        lines.insert(0, result.classes_note)
    for s in result.run_summaries:
        where = (
            f"steps {s.first_step}–{s.last_step} (epochs {s.first_epoch}–{s.last_epoch}), "
            f"{s.steps} of {s.logged_steps} logged steps"
            if s.steps
            else "no step"
        )
        lines.append(
            f"  {s.run}: {where}; {s.n_pairs:,} pairs, {s.n_queries:,} queries, "
            f"{s.n_negatives:,} negatives; {s.n_self_negatives_excluded:,} self-negative "
            "pairs left out"
        )
    lines += [
        f"95% intervals: {result.resampling_text}, {result.bootstrap} replicates; conditional "
        "on each run (they say nothing about other seeds)",
        "",
        "Effect sizes (value minus reference; hardest 5% = ranks with 100·(rank−1)/K < 5; "
        "class_similarity over different-class pairs only):",
    ]
    cols, rows = result.contrast_rows()
    lines += format_table(cols, rows, [False, False, True, True, True])
    if result.seed_contrasts:
        lines.append(
            "mean of runs: seeds as the unit, 95% t-interval over runs (n − 1 df); per run: "
            "the bootstrap interval"
        )

    lines += ["", "By hardness bin (runs pooled; class_similarity over different-class pairs):"]
    cols, rows, numeric = result.bin_rows()
    lines += format_table(cols, rows, numeric)

    headline = next(c for c in CONTRASTS if c.name == HEADLINE)
    lines += [
        "",
        f"Per epoch, the headline contrast: {': '.join(headline.short)} (point estimates; "
        "* = in the window):",
    ]
    lines += _trajectory_table(result, HEADLINE)

    n = result.permutations
    lines += [
        "",
        f"Spearman rho(rank, class_similarity) = {display.number(result.spearman_rho, '.4f')}"
        f" ({result.n_pairs:,} pairs): permutation {display.p_text(result.p_value, permutations=n)}"
        f", analytic {display.p_text(result.p_value_analytic)}",
        f"without same-class pairs ({result.n_pairs_excluding_same_class:,} pairs): rho = "
        f"{display.number(result.spearman_rho_excluding_same_class, '.4f')}, permutation "
        f"{display.p_text(result.p_value_excluding_same_class, permutations=n)}, analytic "
        f"{display.p_text(result.p_value_analytic_excluding_same_class)}",
        "rho < 0: harder negatives (smaller rank) belong to classes more similar to the query's. "
        "The permutation p shuffles the negatives' labels within each run; the analytic p "
        "treats pairs as independent, which they are not.",
    ]
    return lines


def _trajectory_table(result: SemanticResult, contrast: str) -> list[str]:
    from hardstat import display
    from hardstat.analysis.semantic import CONTRASTS, contrast_text
    from hardstat.cli.sql import format_table

    kind = next(c.kind for c in CONTRASTS if c.name == contrast)
    points = [t for t in result.trajectory if t.contrast == contrast]
    epochs = sorted({t.epoch for t in points})
    if not epochs:
        return ["(no epoch)"]
    shown = epochs
    if len(epochs) > MAX_EPOCH_ROWS:
        idx = {round(i * (len(epochs) - 1) / (MAX_EPOCH_ROWS - 1)) for i in range(MAX_EPOCH_ROWS)}
        shown = [epochs[i] for i in sorted(idx)]
    several = len(result.runs) > 1
    cols = ["epoch", *result.runs, *(["mean [95% t]"] if several else [])]
    rows = []
    for e in shown:
        at = {t.run: t for t in points if t.epoch == e}
        inw = any(t.in_window for t in at.values())
        row = [f"{e}{'*' if inw else ''}"]
        for run in result.runs:
            t = at.get(run)
            row.append(contrast_text(kind, t.estimate, t.ci_lo, t.ci_hi) if t else display.DASH)
        if several:
            m = at.get(None)
            row.append(contrast_text(kind, m.estimate, m.ci_lo, m.ci_hi) if m else display.DASH)
        rows.append(row)
    out = format_table(cols, rows, [False, *([True] * (len(cols) - 1))])
    if shown is not epochs:
        out.append(f"({len(shown)} of {len(epochs)} epochs, evenly spaced; all in --format json)")
    return out
