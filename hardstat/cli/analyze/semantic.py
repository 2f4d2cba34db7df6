"""``hardstat analyze semantic``: are hard negatives semantically similar to their query?"""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from hardstat.cli.analyze import app
from hardstat.cli.errors import reports_errors

if TYPE_CHECKING:
    from hardstat.analysis.semantic import SemanticResult

DEFAULT_EDGES = "0,0.1,1,5,10,25,50,75,95,100"


class Measure(StrEnum):
    wup = "wup"
    path = "path"
    lch = "lch"


class SemanticFormat(StrEnum):
    table = "table"
    json = "json"


@app.command("semantic")
@reports_errors
def semantic(
    runs: Annotated[
        list[str],
        typer.Argument(
            metavar="RUN...",
            help="Runs to pool (run directories, sweep directories or globs).",
            show_default=False,
        ),
    ],
    measure: Annotated[
        Measure,
        typer.Option(
            help="WordNet similarity of two classes: wup (Wu-Palmer), path, lch (Leacock-Chodorow)."
        ),
    ] = Measure.wup,
    bins: Annotated[
        str,
        typer.Option(
            help="Edges of the hardness bins in percent of the queue (rank percentile "
            "100·(rank-1)/K), increasing, comma-separated."
        ),
    ] = DEFAULT_EDGES,
    bootstrap: Annotated[
        int,
        typer.Option(help="Bootstrap replicates (resampling queries) for the 95% CIs; 0: none."),
    ] = 1000,
    permutations: Annotated[
        int,
        typer.Option(
            help="Label permutations for the p-value of Spearman's rho; 0 (none) or >= 200."
        ),
    ] = 1000,
    seed: Annotated[int, typer.Option(help="Seed of the bootstrap and permutations.")] = 0,
    fmt: Annotated[
        SemanticFormat, typer.Option("--format", "-f", help="table (text) or json.")
    ] = SemanticFormat.table,
    out: Annotated[
        Path | None,
        typer.Option(
            help="Also write the chart (similarity and same-class fraction by hardness bin) to "
            "x.html, x.png, x.svg or x.json.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """WordNet similarity of query and negative classes by hardness, with a null model.

    Per hardness bin of the rank percentile 100·(rank-1)/K (hard to easy): pairs, mean WordNet
    similarity of the query's and the negative's classes, and the same-class fraction, with
    95% bootstrap CIs over queries. Spearman's rho of rank and similarity over all pairs and
    without same-class pairs, with a permutation p-value (labels of negatives shuffled) and
    the analytic one. CIFAR-10/100 runs use shipped similarity tables; other datasets need
    WordNet (`hardstat wordnet install`).

    Example: `hardstat analyze semantic runs/c10 --measure lch --out semantic.png`
    """
    from hardstat.charts import FORMATS

    if out is not None and out.suffix.lower() not in FORMATS:
        raise typer.BadParameter(
            f"{out.name}: use a file ending in {', '.join(FORMATS)}", param_hint="--out"
        )
    if permutations != 0 and permutations < 200:
        raise typer.BadParameter("use 0 or at least 200", param_hint="--permutations")
    if bootstrap < 0:
        raise typer.BadParameter("use 0 or more", param_hint="--bootstrap")

    from hardstat.analysis import logs
    from hardstat.analysis.semantic import bins_from_edges
    from hardstat.analysis.semantic import semantic as run_semantic
    from hardstat.errors import ConfigError

    try:
        bin_spec = bins_from_edges([e.strip() for e in bins.split(",") if e.strip()])
    except ConfigError as e:
        raise typer.BadParameter(str(e), param_hint="--bins") from None

    con = logs.connect(logs.find_runs(runs))
    try:
        result = run_semantic(
            con,
            measure=measure.value,
            bins=bin_spec,
            bootstrap=bootstrap,
            permutations=permutations,
            seed=seed,
        )
    finally:
        con.close()
    if fmt is SemanticFormat.json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
    else:
        typer.echo("\n".join(render(result)))
    if out is not None:
        from hardstat.charts import save_chart
        from hardstat.charts.semantic import semantic_chart

        save_chart(semantic_chart(result.bins_frame()), out)
        typer.echo(f"wrote {out}", err=True)


def render(result: SemanticResult) -> list[str]:
    """The result as text: one table row per hardness bin, then Spearman's rho and p-values."""
    from hardstat.analysis.wordnet import MEASURE_TITLES
    from hardstat.cli.sql import format_table

    name = MEASURE_TITLES.get(result.measure, result.measure)
    runs = ", ".join(result.runs)
    head = [
        f"{name} similarity of query and negative classes ({result.similarity_source}; "
        f"same class = {result.diagonal:.4g}); runs: {runs}",
        f"{result.n_pairs:,} pairs of {result.n_queries:,} logged queries; "
        f"95% CIs: {result.bootstrap} bootstrap replicates over queries",
        "",
    ]
    ranks = any(b.rank_first is not None for b in result.bins)
    cols = ["bin %", *(["ranks"] if ranks else []), "pairs", "mean similarity [95% CI]"]
    cols += ["same class % [95% CI]"]
    rows = []
    for b in result.bins:
        row = [b.label]
        if ranks:
            empty = b.rank_first is None or b.rank_last is None or b.rank_first > b.rank_last
            one = b.rank_first == b.rank_last
            row.append(
                "—" if empty else str(b.rank_first) if one else f"{b.rank_first}–{b.rank_last}"
            )
        row += [
            f"{b.n_pairs:,}",
            _ci(b.mean_similarity, b.ci_lo, b.ci_hi, 1, 4),
            _ci(b.same_class_fraction, b.same_class_ci_lo, b.same_class_ci_hi, 100, 2),
        ]
        rows.append(row)
    all_row = ["all", *([""] if ranks else []), f"{result.n_pairs:,}"]
    all_row += [f"{result.mean_similarity:.4f}", f"{100 * result.same_class_fraction:.2f}"]
    rows.append(all_row)
    table = format_table(cols, rows, [False, *([False] if ranks else []), True, True, True])
    perm = f"{result.permutations} permutations of the negatives' labels"
    return [
        *head,
        *table,
        "",
        f"Spearman rho(rank, similarity) = {_num(result.spearman_rho)}: permutation p = "
        f"{_num(result.p_value)} ({perm}), analytic p = {_num(result.p_value_analytic)}",
        f"without same-class pairs ({result.n_pairs_excluding_same_class:,} pairs): rho = "
        f"{_num(result.spearman_rho_excluding_same_class)}, permutation p = "
        f"{_num(result.p_value_excluding_same_class)}, analytic p = "
        f"{_num(result.p_value_analytic_excluding_same_class)}",
        "rho < 0: harder negatives (smaller rank) belong to classes more similar to the "
        "query's; the analytic p treats pairs as independent, read the permutation p.",
    ]


def _num(value: float) -> str:
    return "—" if value != value else f"{value:.4g}"  # NaN -> dash


def _ci(value: float, lo: float, hi: float, scale: float, digits: int) -> str:
    if value != value:
        return "—"
    text = f"{scale * value:.{digits}f}"
    if lo == lo and hi == hi:
        text += f" [{scale * lo:.{digits}f}, {scale * hi:.{digits}f}]"
    return text
