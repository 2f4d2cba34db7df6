"""Chart of ``hardstat analyze consistency``: effect sizes first, then the test and the calls.

Pure functions from the result's tables (:meth:`hardstat.analysis.consistency.
ConsistencyResult.chart_tables`, polars) to altair charts:

* intraclass correlations with their 95% intervals: within a key (how much the queries of a
  step agree about one key) and between keys of one image (what persists with the image);
* the primary test: the permutation null of the persistence statistic (negative identities
  permuted within strata) as a histogram, the observed statistic and its interval as a rule
  and a band;
* per-negative Stouffer z over the negatives with enough keys, observed against the standard
  normal expected under the null, on a square-root count axis so the tails stay visible.
"""

from __future__ import annotations

from typing import Any

import polars as pl

OBSERVED = "observed"
NULL = "null"


def icc_chart(icc: pl.DataFrame) -> Any:
    """Points with 95% interval bars: ICC by measure (hardness, in band) and kind."""
    import altair as alt

    base = alt.Chart(icc.to_arrow()).encode(
        y=alt.Y("kind:N", title=None, sort=["within a key", "between keys of one image"]),
        color=alt.Color(
            "measure:N", legend=alt.Legend(title=None, orient="top", direction="horizontal")
        ),
        yOffset="measure:N",
    )
    bars = base.mark_rule(strokeWidth=2).encode(
        x=alt.X("lo:Q", title="intraclass correlation (95% interval)"), x2="hi:Q"
    )
    points = base.mark_point(filled=True, size=60).encode(
        x="value:Q",
        tooltip=[
            "kind:N",
            "measure:N",
            alt.Tooltip("value:Q", format=".4f"),
            alt.Tooltip("lo:Q", format=".4f"),
            alt.Tooltip("hi:Q", format=".4f"),
        ],
    )
    zero = alt.Chart(pl.DataFrame({"x": [0.0]}).to_arrow()).mark_rule(color="#888").encode(x="x:Q")
    return alt.layer(zero, bars, points).properties(
        width=300, height=130, title="Effect sizes: ICC of hardness"
    )


def persistence_chart(null: pl.DataFrame, observed: pl.DataFrame) -> Any:
    """Histogram of the permutation null of the persistence statistic, with the observed value
    (rule) and its 95% interval (band)."""
    import altair as alt

    bars = (
        alt.Chart(null.to_arrow())
        .mark_bar(color="#9d9d9d", opacity=0.8)
        .encode(
            x=alt.X("lo:Q", title="correlation of centred key scores, different keys of an image"),
            x2="hi:Q",
            y=alt.Y("permutations:Q", title="permutations"),
            y2=alt.Y2(datum=0),
            tooltip=[alt.Tooltip("lo:Q", format=".4f"), "permutations:Q"],
        )
    )
    obs = alt.Chart(observed.to_arrow())
    band = obs.mark_rect(color="#4c78a8", opacity=0.25).encode(x="lo:Q", x2="hi:Q")
    rule = obs.mark_rule(color="#4c78a8", strokeWidth=2.5).encode(
        x="statistic:Q",
        tooltip=[alt.Tooltip("statistic:Q", format=".4f"), alt.Tooltip("p:Q", format=".4f")],
    )
    row = observed.row(0, named=True) if observed.height else {}
    subtitle = row.get("label", "")
    return alt.layer(bars, band, rule).properties(
        width=300,
        height=200,
        title=alt.TitleParams("Persistence across keys vs its permutation null", subtitle=subtitle),
    )


def z_chart(z: pl.DataFrame) -> Any:
    """Per-negative Stouffer z: observed counts per bin (bars) against N(0, 1) (step line)."""
    import altair as alt

    data = z.select(
        "lo", "hi", ((pl.col("lo") + pl.col("hi")) / 2).alias("mid"), OBSERVED, NULL
    ).unpivot(index=["lo", "hi", "mid"], variable_name="source", value_name="negatives")
    color = alt.Color(
        "source:N",
        scale=alt.Scale(domain=[OBSERVED, NULL], range=["#4c78a8", "#222222"]),
        legend=alt.Legend(title=None, orient="top", direction="horizontal"),
    )
    y = alt.Y(
        "negatives:Q",
        title="negatives (square-root scale)",
        scale=alt.Scale(type="sqrt", domainMin=0, nice=True),
        stack=None,
    )
    base = alt.Chart(data.to_arrow())
    bars = (
        base.transform_filter(alt.datum.source == OBSERVED)
        .mark_bar(opacity=0.75)
        .encode(
            x=alt.X("lo:Q", title="z of the negative's keys (+ = consistently hard)"),
            x2="hi:Q",
            y=y,
            y2=alt.Y2(datum=0),
            color=color,
            tooltip=[
                alt.Tooltip("lo:Q", format=".2f", title="from"),
                alt.Tooltip("hi:Q", format=".2f", title="to"),
                alt.Tooltip("negatives:Q", format=",.0f"),
            ],
        )
    )
    line = (
        base.transform_filter(alt.datum.source == NULL)
        .mark_line(interpolate="step", strokeWidth=1.6)
        .encode(x="mid:Q", y=y, color=color)
    )
    return alt.layer(bars, line).properties(
        width=300, height=200, title="Per negative: z across its keys vs N(0, 1)"
    )


def consistency_chart(tables: dict[str, pl.DataFrame], *, band: str = "") -> Any:
    """The three panels side by side, from ``ConsistencyResult.chart_tables()``."""
    import altair as alt

    panels = [icc_chart(tables["icc"])]
    if tables["null"].height:
        panels.append(persistence_chart(tables["null"], tables["observed"]))
    panels.append(z_chart(tables["z"]))
    title = "Does hardness persist with the image, beyond its class?" + (
        f" (hard band {band})" if band else ""
    )
    return (
        alt.hconcat(*panels)
        .resolve_scale(color="independent")
        .properties(title=alt.TitleParams(title, fontSize=15, anchor="start"))
    )
