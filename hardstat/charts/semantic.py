"""Chart of ``hardstat analyze semantic``: WordNet similarity and same-class fraction by hardness.

A pure function of the per-bin table (:meth:`SemanticResult.bins_frame`): two panels sharing a
categorical x axis of hardness bins ordered hard -> easy (so the narrow hardest bins, 0-0.1% and
0.1-1%, get as much room as the wide easy ones), points with 95% bootstrap error bars, and a
dashed line at the value over all pairs (what every bin would show if hardness were unrelated to
class).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hardstat.analysis.wordnet import MEASURE_TITLES

if TYPE_CHECKING:
    import polars as pl

_REQUIRED = (
    "bin",
    "n_pairs",
    "mean_similarity",
    "ci_lo",
    "ci_hi",
    "same_class_fraction",
    "same_class_ci_lo",
    "same_class_ci_hi",
    "overall_similarity",
    "overall_same_class_fraction",
)
_X_TITLE = "Hardness bin: rank percentile 100·(rank−1)/K, % (hardest left)"


def _panel(
    data: pl.DataFrame,
    *,
    value: str,
    lo: str,
    hi: str,
    overall: str,
    title: str,
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
        alt.Tooltip(f"{value}:Q", title=title, format=".4f"),
        alt.Tooltip(f"{lo}:Q", title="95% CI low", format=".4f"),
        alt.Tooltip(f"{hi}:Q", title="95% CI high", format=".4f"),
        alt.Tooltip("n_pairs:Q", title="pairs", format=","),
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
            text=alt.value("all pairs"),
        )
    )
    return alt.layer(rule, label, line, bars, ticks_lo, ticks_hi, points).properties(
        width=520, height=190
    )


def semantic_chart(table: pl.DataFrame, *, title: str | None = None) -> Any:
    """Mean WordNet similarity (top) and same-class fraction (bottom) of negatives per hardness
    bin, with 95% bootstrap CIs over queries, from :meth:`SemanticResult.bins_frame`."""
    import altair as alt

    missing = [c for c in _REQUIRED if c not in table.columns]
    if missing:
        raise ValueError(f"the semantic chart needs columns {', '.join(missing)}")
    data = table.filter(table["n_pairs"] > 0)
    order = data["bin"].to_list()
    measure = str(table["measure"][0]) if "measure" in table.columns and len(table) else ""
    name = MEASURE_TITLES.get(measure, measure)
    unit = "(0–1)" if measure in ("wup", "path") else "(0–3.64)" if measure == "lch" else ""
    top = _panel(
        data,
        value="mean_similarity",
        lo="ci_lo",
        hi="ci_hi",
        overall="overall_similarity",
        title=f"Mean {name} similarity {unit}".replace("  ", " ").strip(),
        order=order,
        color="#1f77b4",
        axis_format=".2f",
        show_x_title=False,
    )
    bottom = _panel(
        data,
        value="same_class_fraction",
        lo="same_class_ci_lo",
        hi="same_class_ci_hi",
        overall="overall_same_class_fraction",
        title="Same-class negatives (%)",
        order=order,
        color="#d62728",
        axis_format=".0%",
        show_x_title=True,
    )
    heading = title or f"Are hard negatives semantically similar? WordNet {name} similarity"
    subtitle = (
        "query class vs negative class; points: mean over pairs, bars: 95% bootstrap CI over "
        "queries, dashed: all pairs"
    )
    return (
        alt.vconcat(top, bottom, spacing=12)
        .properties(
            title=alt.TitleParams(
                heading, subtitle=subtitle, fontSize=14, subtitleFontSize=11, anchor="start"
            )
        )
        .configure_axis(labelFontSize=11, titleFontSize=12)
        .configure_view(stroke=None)
    )
