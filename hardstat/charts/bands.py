"""Chart of a band ablation: downstream top-1 accuracy per band of negatives.

One point per run (seed), the band's mean with a ± one sample standard deviation bar, and a
dashed rule at the all-negatives (``0-100``) mean. kNN top-1 and, when any run has one, linear
top-1 are two colours side by side within each band. Bands keep the order of the ablation's
``bands`` table (``0-100`` first).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import polars as pl

if TYPE_CHECKING:
    import altair as alt

KNN = "kNN top-1 (final)"
LINEAR = "linear top-1"
METRICS = {"knn_top1": KNN, "linear_top1": LINEAR}
"""Per-run accuracy columns and their legend names."""


def bands_chart(
    runs: pl.DataFrame, bands: pl.DataFrame, *, reference: str = "0-100"
) -> alt.LayerChart:
    """Accuracy versus band from a :class:`~hardstat.analysis.ablation.BandAblation`'s tables.

    ``runs`` needs run, band, seed, knn_top1, linear_top1; ``bands`` needs band, kept_fraction,
    knn_top1_mean/std and linear_top1_mean/std, in display order.
    """
    import altair as alt

    order = bands["band"].to_list()
    kept = dict(zip(order, bands["kept_fraction"].to_list(), strict=True))
    present = [c for c in METRICS if runs[c].is_not_null().any()] or ["knn_top1"]
    names = [METRICS[c] for c in present]

    points = pl.concat(
        [
            runs.select(
                "run",
                "band",
                "seed",
                pl.col(c).alias("top1"),
                pl.lit(METRICS[c]).alias("metric"),
            )
            for c in present
        ]
    ).filter(pl.col("top1").is_not_null())
    means = pl.concat(
        [
            bands.select(
                "band",
                pl.col(f"{c}_mean").alias("mean"),
                pl.col(f"{c}_std").alias("std"),
                pl.lit(METRICS[c]).alias("metric"),
            )
            for c in present
        ]
    ).filter(pl.col("mean").is_not_null())
    means = means.with_columns(
        (pl.col("mean") - pl.col("std")).alias("low"),
        (pl.col("mean") + pl.col("std")).alias("high"),
        pl.col("band").replace_strict(kept, default=None).alias("kept_fraction"),
    )
    ref = means.filter(pl.col("band") == reference).select(
        "metric", pl.col("mean").alias("reference")
    )

    x = alt.X(
        "band:N",
        sort=order,
        title="band of negatives in the loss (% of the queue by rank; 0 = hardest)",
        axis=alt.Axis(labelAngle=0),
    )
    y_title = "top-1 accuracy on the held-out split"
    color = alt.Color(
        "metric:N",
        scale=alt.Scale(domain=names, range=["#1f77b4", "#ff7f0e"][: len(names)]),
        legend=alt.Legend(title=None, orient="bottom"),
    )
    offset = alt.XOffset("metric:N", scale=alt.Scale(domain=names, paddingInner=0.3))

    dots = (
        alt.Chart(_values(points))
        .mark_circle(size=45, opacity=0.55)
        .encode(
            x=x,
            xOffset=offset,
            y=alt.Y(
                "top1:Q",
                title=y_title,
                scale=alt.Scale(zero=False, nice=True, padding=8),
                axis=alt.Axis(format="%"),
            ),
            color=color,
            tooltip=[
                alt.Tooltip("run:N"),
                alt.Tooltip("seed:Q"),
                alt.Tooltip("metric:N"),
                alt.Tooltip("top1:Q", format=".2%"),
            ],
        )
    )
    mean_base = alt.Chart(_values(means)).encode(x=x, xOffset=offset, color=color)
    bars = (
        mean_base.transform_filter("isValid(datum.std)")
        .mark_rule(strokeWidth=2)
        .encode(y=alt.Y("low:Q", title=y_title), y2="high:Q")
    )
    centres = mean_base.mark_point(shape="diamond", size=110, filled=True).encode(
        y=alt.Y("mean:Q", title=y_title),
        tooltip=[
            alt.Tooltip("band:N"),
            alt.Tooltip("metric:N"),
            alt.Tooltip("mean:Q", format=".2%", title="mean"),
            alt.Tooltip("std:Q", format=".2%", title="std (ddof=1)"),
            alt.Tooltip("kept_fraction:Q", format=".2%", title="kept fraction"),
        ],
    )
    layers: list[Any] = [bars, dots, centres]
    if ref.height:
        layers.insert(
            0,
            alt.Chart(_values(ref))
            .mark_rule(strokeDash=[5, 4], opacity=0.8)
            .encode(y=alt.Y("reference:Q", title=y_title), color=color),
        )
    subtitle = (
        f"points: runs (seeds); diamond and bar: mean ± sample std; dashed: {reference} mean"
        if ref.height
        else f"points: runs (seeds); diamond and bar: mean ± sample std; no {reference} run"
    )
    return (
        alt.layer(*layers)
        .properties(
            width=max(240, 110 * len(order)),
            height=300,
            title=alt.Title("Downstream accuracy by band of negatives", subtitle=subtitle),
        )
        .configure_axis(labelFontSize=12, titleFontSize=12)
    )


def _values(df: pl.DataFrame) -> Any:
    import altair as alt

    return alt.Data(values=df.to_dicts())
