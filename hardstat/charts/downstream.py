"""Chart of downstream accuracy: the kNN monitor's top-1 per epoch (a line per run) and each
run's linear probe (a diamond at the epoch its encoder was taken from), from
:attr:`hardstat.analysis.downstream.Downstream.evals`."""

from __future__ import annotations

from typing import Any

import polars as pl

MAX_RUN_COLOURS = 10
"""With more runs than this, colour by band (one line per run still) instead of by run."""

_REQUIRED = ("run", "band", "kind", "epoch", "top1")


def downstream_chart(evals: pl.DataFrame, *, chance: float | None = None) -> Any:
    """kNN top-1 per epoch (lines) and linear-probe top-1 (diamonds), coloured by run (by band
    beyond :data:`MAX_RUN_COLOURS` runs); ``chance`` (e.g. 1 / classes) as a dashed rule."""
    import altair as alt

    missing = [c for c in _REQUIRED if c not in evals.columns]
    if missing:
        raise ValueError(f"the downstream chart needs columns {', '.join(missing)}")
    data = evals.filter(pl.col("epoch").is_not_null()).with_columns(
        pl.col("kind").replace({"knn": "kNN monitor", "linear": "linear probe"}).alias("what")
    )
    by = "run" if data["run"].n_unique() <= MAX_RUN_COLOURS else "band"
    epochs = [int(e) for e in data["epoch"].to_list()] or [0]
    scale = alt.Scale(domain=[min(epochs) - 0.5, max(epochs) + 0.5], nice=False, zero=False)
    x = alt.X("epoch:Q", title="Epoch", scale=scale, axis=alt.Axis(format="d", tickMinStep=1))
    y = alt.Y("top1:Q", title="top-1 accuracy (held-out split)", axis=alt.Axis(format=".0%"))
    colour = alt.Color(f"{by}:N", title=by, legend=alt.Legend(orient="bottom", columns=4))
    tooltip = [
        alt.Tooltip("run:N"),
        alt.Tooltip("band:N"),
        alt.Tooltip("what:N", title="evaluation"),
        alt.Tooltip("epoch:Q"),
        alt.Tooltip("top1:Q", format=".2%", title="top-1"),
    ]
    layers = []
    if chance is not None:
        layers.append(
            alt.Chart(pl.DataFrame({"chance": [chance]}))
            .mark_rule(color="gray", strokeDash=[4, 3])
            .encode(y=alt.Y("chance:Q"))
        )
    knn = data.filter(pl.col("kind") == "knn")
    if knn.height:
        layers.append(
            alt.Chart(knn)
            .mark_line(point=alt.OverlayMarkDef(size=30), strokeWidth=1.5)
            .encode(x=x, y=y, color=colour, detail="run:N", tooltip=tooltip)
        )
    linear = data.filter(pl.col("kind") == "linear")
    if linear.height:
        layers.append(
            alt.Chart(linear)
            .mark_point(shape="diamond", size=140, filled=True, stroke="black", strokeWidth=0.8)
            .encode(x=x, y=y, color=colour, tooltip=tooltip)
        )
    subtitle = "lines: weighted kNN monitor after each evaluated epoch; diamonds: linear probe"
    subtitle += " on the frozen encoder" + ("; dashed: chance" if chance is not None else "")
    return (
        alt.layer(*layers)
        .properties(
            width=560,
            height=240,
            title=alt.TitleParams(
                "Downstream accuracy per epoch",
                subtitle=subtitle,
                anchor="start",
                subtitleFontSize=11,
            ),
        )
        .configure_axis(labelFontSize=11, titleFontSize=11)
        .configure_view(stroke=None)
    )
