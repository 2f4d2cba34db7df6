"""Chart of ``hardstat analyze consistency``: per-negative in-band rates, observed vs null.

Pure functions from the result's histogram tables (polars) to altair charts: observed numbers
of negatives per bin as bars, the exact null expectation (exchangeable hardness: a mixture of
Binomial(m_i, p)) as a step line, on a square-root count axis so the tails stay visible.
"""

from __future__ import annotations

from typing import Any

import polars as pl

OBSERVED = "observed"
NULL = "null: hardness exchangeable"


def _panel(table: pl.DataFrame, lo: str, hi: str, x_title: str, title: str) -> Any:
    import altair as alt

    data = table.select(
        pl.col(lo).alias("lo"),
        pl.col(hi).alias("hi"),
        ((pl.col(lo) + pl.col(hi)) / 2).alias("mid"),
        pl.col("observed").cast(pl.Float64).alias(OBSERVED),
        pl.col("null").alias(NULL),
    ).unpivot(index=["lo", "hi", "mid"], variable_name="source", value_name="negatives")
    color = alt.Color(
        "source:N",
        scale=alt.Scale(domain=[OBSERVED, NULL], range=["#4c78a8", "#222222"]),
        legend=alt.Legend(title=None, orient="top", direction="horizontal"),
    )
    y = alt.Y(
        "negatives:Q",
        title="number of negatives (square-root scale)",
        scale=alt.Scale(type="sqrt", domainMin=0, nice=True),
        stack=None,
    )
    base = alt.Chart(data.to_arrow()).properties(width=360, height=260, title=title)
    bars = (
        base.transform_filter(alt.datum.source == OBSERVED)
        .mark_bar(opacity=0.75)
        .encode(
            x=alt.X("lo:Q", title=x_title),
            x2="hi:Q",
            y=y,
            y2=alt.Y2(datum=0),
            color=color,
            tooltip=[
                alt.Tooltip("lo:Q", format=".3f", title="from"),
                alt.Tooltip("hi:Q", format=".3f", title="to"),
                alt.Tooltip("negatives:Q", format=",.0f", title="observed"),
            ],
        )
    )
    line = (
        base.transform_filter(alt.datum.source == NULL)
        .mark_line(interpolate="step", strokeWidth=1.6)
        .encode(
            x=alt.X("mid:Q"),
            y=y,
            color=color,
            tooltip=[
                alt.Tooltip("mid:Q", format=".3f", title="bin centre"),
                alt.Tooltip("negatives:Q", format=",.1f", title="null expected"),
            ],
        )
    )
    return alt.layer(bars, line)


def rate_chart(rate_histogram: pl.DataFrame) -> Any:
    """Per-negative in-band rate k/m: observed histogram vs the exact null expectation."""
    return _panel(
        rate_histogram,
        "rate_lo",
        "rate_hi",
        "in-band rate k/m (share of a negative's appearances ranked in the band)",
        "In-band rate per negative",
    )


def z_chart(z_histogram: pl.DataFrame) -> Any:
    """Per-negative standardized residual z = (k - m p) / sqrt(m p (1 - p)), observed vs null."""
    return _panel(
        z_histogram,
        "z_lo",
        "z_hi",
        "z = (k - m p) / sqrt(m p (1 - p)) (end bins hold all beyond)",
        "Standardized excess of in-band appearances",
    )


def consistency_chart(
    rate_histogram: pl.DataFrame, z_histogram: pl.DataFrame | None = None, *, band: str = ""
) -> Any:
    """Both panels side by side (the z panel only with ``z_histogram``)."""
    import altair as alt

    panels = [rate_chart(rate_histogram)]
    if z_histogram is not None:
        panels.append(z_chart(z_histogram))
    title = "Is hardness a property of the negative?" + (f" (band {band})" if band else "")
    return (
        alt.hconcat(*panels)
        .resolve_scale(color="shared")
        .properties(title=alt.TitleParams(title, fontSize=15, anchor="start"))
    )
