"""Chart of ``hardstat analyze semantic``: same-class fraction and class_similarity by hardness,
and the headline contrast per epoch.

A pure function of the result's tables (:meth:`SemanticResult.bins_frame`,
:meth:`SemanticResult.trajectory_frame`). The two bin panels share a categorical x axis of
hardness bins ordered hard -> easy (so the narrow hardest bins, 0-0.1% and 0.1-1%, get as much
room as the wide easy ones): points with 95% bootstrap error bars, and a dashed line at the value
over all ranks (what every bin would show if hardness were unrelated to class). The top panel is
the same-class fraction; the middle one the mean class_similarity of the different-class pairs
only, so it is not driven by the same-class share. The bottom panel is the headline contrast per
epoch, one line per run, the mean over runs with its t-interval band when there are several, and
the analysis window shaded.
"""

from __future__ import annotations

import textwrap
from typing import TYPE_CHECKING, Any

from hardstat.analysis.wordnet import MEASURE_TITLES

if TYPE_CHECKING:
    import polars as pl

_REQUIRED = (
    "bin",
    "n_pairs",
    "same_class_fraction",
    "same_class_ci_lo",
    "same_class_ci_hi",
    "n_pairs_different_class",
    "class_similarity_different_class",
    "class_similarity_ci_lo",
    "class_similarity_ci_hi",
    "overall_same_class_fraction",
    "overall_class_similarity_different_class",
)
_TRAJECTORY = ("run", "epoch", "estimate", "ci_lo", "ci_hi", "in_window")
_X_TITLE = "Hardness bin: rank percentile 100·(rank−1)/K, % (hardest left)"
_MEAN = "mean over runs"


def _panel(
    data: pl.DataFrame,
    *,
    value: str,
    lo: str,
    hi: str,
    n: str,
    overall: str,
    overall_text: str,
    title: str | list[str],
    order: list[str],
    color: str,
    axis_format: str,
    show_x_title: bool,
) -> Any:
    import altair as alt

    x = alt.X(
        "bin:N",
        sort=order,
        title=_X_TITLE if show_x_title else None,
        axis=alt.Axis(labelAngle=0, labels=True),
    )
    base = alt.Chart(data).encode(x=x)
    tooltip = [
        alt.Tooltip("bin:N", title="bin (%)"),
        alt.Tooltip(
            f"{value}:Q", title=" ".join([title] if isinstance(title, str) else title), format=".4f"
        ),
        alt.Tooltip(f"{lo}:Q", title="95% CI low", format=".4f"),
        alt.Tooltip(f"{hi}:Q", title="95% CI high", format=".4f"),
        alt.Tooltip(f"{n}:Q", title="pairs", format=","),
    ]
    y = alt.Y(
        f"{value}:Q",
        title=title,
        scale=alt.Scale(zero=False, nice=True),
        axis=alt.Axis(format=axis_format),
    )
    line = base.mark_line(color=color, strokeWidth=1.5, opacity=0.6).encode(y=y)
    bars = base.mark_rule(color=color, strokeWidth=2).encode(
        y=alt.Y(f"{lo}:Q", title=title), y2=f"{hi}:Q"
    )
    ticks_lo = base.mark_tick(color=color, width=10, thickness=2).encode(
        y=alt.Y(f"{lo}:Q", title=title)
    )
    ticks_hi = base.mark_tick(color=color, width=10, thickness=2).encode(
        y=alt.Y(f"{hi}:Q", title=title)
    )
    points = base.mark_point(filled=True, size=70, color=color).encode(y=y, tooltip=tooltip)
    rule = (
        alt.Chart(data)
        .mark_rule(strokeDash=[5, 4], color="gray")
        .encode(y=alt.Y(f"mean({overall}):Q", title=title))
    )
    label = (
        alt.Chart(data)
        .mark_text(align="right", baseline="bottom", dx=-2, dy=-2, color="gray", fontSize=10)
        .encode(
            x=alt.value("width"),
            y=alt.Y(f"mean({overall}):Q"),
            text=alt.value(overall_text),
        )
    )
    return alt.layer(rule, label, line, bars, ticks_lo, ticks_hi, points).properties(
        width=560, height=170
    )


def _trajectory_panel(data: pl.DataFrame) -> Any:
    import altair as alt
    import polars as pl

    from hardstat.analysis.semantic import CONTRASTS, HEADLINE

    name = str(data["contrast"][0]) if "contrast" in data.columns else HEADLINE
    what, where = next((c.short for c in CONTRASTS if c.name == name), (name, ""))
    y_title = [what, where, "per epoch"] if where else [what, "per epoch"]

    runs = data.filter(pl.col("run") != _MEAN)
    mean = data.filter(pl.col("run") == _MEAN)
    epochs = [int(e) for e in data["epoch"].to_list()]
    domain = [min(epochs) - 0.5, max(epochs) + 0.5]
    scale = alt.Scale(domain=domain, nice=False, zero=False)
    x = alt.X("epoch:Q", title="Epoch", scale=scale, axis=alt.Axis(format="d", tickMinStep=1))
    layers = []
    window = data.filter(pl.col("in_window"))
    if len(window):
        inside = [int(e) for e in window["epoch"].to_list()]
        span = pl.DataFrame({"start": [min(inside) - 0.5], "end": [max(inside) + 0.5]})
        layers.append(
            alt.Chart(span)
            .mark_rect(color="#eeeeee")
            .encode(x=alt.X("start:Q", title="Epoch", scale=scale), x2="end:Q")
        )
        layers.append(
            alt.Chart(span)
            .mark_text(align="left", baseline="top", dx=3, dy=3, color="gray", fontSize=10)
            .encode(x=alt.X("start:Q", scale=scale), y=alt.value(0), text=alt.value("window"))
        )
    layers.append(
        alt.Chart(pl.DataFrame({"zero": [0.0]}))
        .mark_rule(color="gray", strokeDash=[2, 2])
        .encode(y=alt.Y("zero:Q", title=y_title))
    )
    if len(mean):
        layers.append(
            alt.Chart(mean)
            .mark_area(color="black", opacity=0.12)
            .encode(x=x, y=alt.Y("ci_lo:Q", title=y_title), y2="ci_hi:Q")
        )
        layers.append(
            alt.Chart(mean)
            .mark_line(color="black", strokeWidth=2)
            .encode(x=x, y=alt.Y("estimate:Q", title=y_title))
        )
    layers.append(
        alt.Chart(runs)
        .mark_line(point=alt.OverlayMarkDef(size=25), strokeWidth=1.2, opacity=0.85)
        .encode(
            x=x,
            y=alt.Y("estimate:Q", title=y_title, scale=alt.Scale(zero=False)),
            color=alt.Color("run:N", title="run", legend=alt.Legend(orient="bottom")),
            tooltip=[
                alt.Tooltip("run:N"),
                alt.Tooltip("epoch:Q"),
                alt.Tooltip("estimate:Q", format="+.4f"),
            ],
        )
    )
    return alt.layer(*layers).properties(width=560, height=150)


def semantic_chart(
    table: pl.DataFrame, trajectory: pl.DataFrame | None = None, *, title: str | None = None
) -> Any:
    """Same-class fraction (top) and different-class class_similarity (middle) of negatives per
    hardness bin with 95% bootstrap CIs, from :meth:`SemanticResult.bins_frame`, and the
    headline contrast per epoch (bottom) from :meth:`SemanticResult.trajectory_frame` when
    given and not empty."""
    import altair as alt

    missing = [c for c in _REQUIRED if c not in table.columns]
    if missing:
        raise ValueError(f"the semantic chart needs columns {', '.join(missing)}")
    if trajectory is not None:
        missing = [c for c in _TRAJECTORY if c not in trajectory.columns]
        if missing:
            raise ValueError(f"the semantic trajectory needs columns {', '.join(missing)}")
    data = table.filter(table["n_pairs"] > 0)
    order = data["bin"].to_list()
    measure = str(table["measure"][0]) if "measure" in table.columns and len(table) else ""
    name = MEASURE_TITLES.get(measure, measure)
    unit = "(0–1)" if measure in ("wup", "path") else "(0–3.64)" if measure == "lch" else ""
    same = _panel(
        data,
        value="same_class_fraction",
        lo="same_class_ci_lo",
        hi="same_class_ci_hi",
        n="n_pairs",
        overall="overall_same_class_fraction",
        overall_text="all ranks (chance)",
        title="Same-class negatives (%)",
        order=order,
        color="#d62728",
        axis_format=".0%",
        show_x_title=False,
    )
    similar = _panel(
        data,
        value="class_similarity_different_class",
        lo="class_similarity_ci_lo",
        hi="class_similarity_ci_hi",
        n="n_pairs_different_class",
        overall="overall_class_similarity_different_class",
        overall_text="all ranks",
        title=[f"{name} {unit}".strip(), "different-class pairs"],
        order=order,
        color="#1f77b4",
        axis_format=".2f",
        show_x_title=True,
    )
    panels = [same, similar]
    if trajectory is not None and len(trajectory.drop_nulls("estimate")):
        panels.append(_trajectory_panel(trajectory.drop_nulls("estimate")))
    heading = title or f"Are hard negatives semantically close? WordNet {name} class_similarity"
    design = str(table["resampling"][0]) if "resampling" in table.columns and len(table) else ""
    subtitle = [
        "query class vs negative class, runs pooled; bars: 95% bootstrap CI"
        + (f" ({design})" if design else "")
        + "; dashed: all ranks"
    ]
    note = table["classes_note"].drop_nulls() if "classes_note" in table.columns else None
    if note is not None and len(note):  # synthetic classes: say so before anything else
        subtitle[0:0] = textwrap.wrap(str(note[0]), 110)
    if len(panels) == 3:
        subtitle.append(
            "per epoch: one line per run (point estimates); black: mean over runs, band: its "
            "95% t-interval; shaded: the analysis window"
        )
    return (
        alt.vconcat(*panels, spacing=14)
        .properties(
            title=alt.TitleParams(
                heading, subtitle=subtitle, fontSize=14, subtitleFontSize=11, anchor="start"
            )
        )
        .configure_axis(labelFontSize=11, titleFontSize=11)
        .configure_view(stroke=None)
    )
