"""Chart of a band ablation: paired differences from the reference band, per band, over seeds.

For each band (x, in the ablation's order): one point per seed, the difference between that
seed's run and the reference band's run of the same seed; the mean difference (diamond) with
its 95% t-interval (bar), coloured by the verdict; a rule at 0 (no difference) and the
equivalence margin shaded around it. The y axis is in percentage points.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import polars as pl

from hardstat import display

if TYPE_CHECKING:
    import altair as alt

VERDICT_COLOURS = {
    "better": "#2ca02c",
    "worse": "#d62728",
    "equivalent": "#1f77b4",
    "inconclusive": "#7f7f7f",
}
"""Verdict -> colour of its mean and interval."""


def bands_chart(
    contrasts: pl.DataFrame,
    pairs: pl.DataFrame,
    *,
    reference: str = "0-100",
    metric: str = "top-1",
    margin: float = 0.01,
) -> alt.LayerChart:
    """Paired differences per band from a :class:`~hardstat.analysis.ablation.BandAblation`.

    ``contrasts`` needs band, n_seeds, mean_diff, ci95_lo, ci95_hi, kept_fraction, verdict (in
    display order); ``pairs`` needs band, seed, run, reference_run, diff. Differences are
    fractions (0.01 = 1 pp); ``margin`` likewise. ``metric`` names the accuracy in the titles.
    """
    import altair as alt

    order = contrasts["band"].to_list()
    means = contrasts.select(
        "band",
        "n_seeds",
        "verdict",
        "kept_fraction",
        *(pl.col(c) * 100 for c in ("mean_diff", "ci95_lo", "ci95_hi")),
    ).filter(pl.col("mean_diff").is_not_null())
    points = pairs.select(
        "band",
        "seed",
        "run",
        "reference_run",
        pl.col("diff") * 100,
        pl.format("s{}", "seed").alias("slot"),
    )
    means = means.with_columns(pl.lit("mean").alias("slot"))
    # within a band: one slot per seed, a gap, then the mean and its interval
    slots = [f"s{s}" for s in sorted(set(points["seed"].to_list()))] + ["", "mean"]
    offset = alt.XOffset("slot:N", scale=alt.Scale(domain=slots, paddingOuter=0.5))
    pp = 100 * margin

    y_title = f"Δ {metric} vs {reference} (pp)"
    x = alt.X(
        "band:N",
        sort=order,
        title="band of negatives in the loss (% of the queue by rank; 0 = hardest)",
        axis=alt.Axis(labelAngle=0),
    )
    x = x.scale(domain=order, paddingInner=0.3)
    y_scale = alt.Scale(zero=True, nice=True, padding=8)
    colour = alt.Color(
        "verdict:N",
        scale=alt.Scale(domain=list(VERDICT_COLOURS), range=list(VERDICT_COLOURS.values())),
        legend=alt.Legend(title="verdict", orient="bottom"),
    )

    margin_band = (
        alt.Chart(_values(pl.DataFrame({"low": [-pp], "high": [pp]})))
        .mark_rect(color="#1f77b4", opacity=0.12)
        .encode(y=alt.Y("low:Q", title=y_title, scale=y_scale), y2="high:Q")
    )
    zero = (
        alt.Chart(_values(pl.DataFrame({"zero": [0.0]})))
        .mark_rule(color="black", strokeDash=[5, 4], opacity=0.8)
        .encode(y=alt.Y("zero:Q", title=y_title, scale=y_scale))
    )
    dots = (
        alt.Chart(_values(points))
        .mark_circle(size=45, opacity=0.6, color="black")
        .encode(
            x=x,
            xOffset=offset,
            y=alt.Y("diff:Q", title=y_title, scale=y_scale),
            tooltip=[
                alt.Tooltip("band:N"),
                alt.Tooltip("seed:Q"),
                alt.Tooltip("run:N"),
                alt.Tooltip("reference_run:N", title=f"{reference} run"),
                alt.Tooltip("diff:Q", format="+.2f", title="Δ (pp)"),
            ],
        )
    )
    base = alt.Chart(_values(means)).encode(x=x, xOffset=offset, color=colour)
    bars = (
        base.transform_filter("isValid(datum.ci95_lo)")
        .mark_rule(strokeWidth=2.5)
        .encode(y=alt.Y("ci95_lo:Q", title=y_title, scale=y_scale), y2="ci95_hi:Q")
    )
    centres = base.mark_point(shape="diamond", size=140, filled=True, opacity=1).encode(
        y=alt.Y("mean_diff:Q", title=y_title, scale=y_scale),
        tooltip=[
            alt.Tooltip("band:N"),
            alt.Tooltip("n_seeds:Q", title="paired seeds"),
            alt.Tooltip("mean_diff:Q", format="+.2f", title="mean Δ (pp)"),
            alt.Tooltip("ci95_lo:Q", format="+.2f", title="95% CI low"),
            alt.Tooltip("ci95_hi:Q", format="+.2f", title="95% CI high"),
            alt.Tooltip("verdict:N"),
            alt.Tooltip("kept_fraction:Q", format=".3%", title="kept fraction"),
        ],
    )
    subtitle = [
        f"points: seeds (each minus the {reference} run of the same seed); right of them, "
        "diamond and bar: mean and 95% t-interval, coloured by verdict",
        f"shaded: equivalence margin {display.margin_points(margin)}; verdicts Holm-adjusted "
        "over the bands shown",
    ]
    return (
        alt.layer(margin_band, zero, bars, dots, centres)
        .properties(
            width=max(260, 120 * len(order)),
            height=300,
            title=alt.Title(
                f"Paired difference from {reference} by band of negatives", subtitle=subtitle
            ),
        )
        .configure_axis(labelFontSize=12, titleFontSize=12)
    )


def _values(df: pl.DataFrame) -> Any:
    import altair as alt

    return alt.Data(values=df.to_dicts())
