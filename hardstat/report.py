"""One self-contained HTML report of a run or a sweep (``hardstat report``).

The report gathers the analyses of :mod:`hardstat.analysis` on one page that opens offline:
a header (runs, dataset, K, bands, seeds, versions), the band ablation with its accuracy chart
(only when the runs differ in band), the semantic analysis and the consistency test on the
all-negatives runs (band ``0-100`` when present, else all runs), and a gallery of the most
consistently hard and easy negatives with, beside each hard one, the queries it was hardest for.

Charts are embedded as base64 PNG (rendered offline by vl-convert) and images as base64 PNG
data URIs, so the file loads nothing from the network. Images come from the run's dataset spec
when it is ``npz:`` (``train.npz``; sample_ids index it, also under a ``subset``); for other
datasets the gallery shows ids and classes only. No torch here.
"""

from __future__ import annotations

import base64
import html
import struct
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hardstat import display
from hardstat.data import DEMO_DIR
from hardstat.errors import (
    ConfigError,
    CorruptLogError,
    HardstatError,
    LogError,
    WordNetError,
)

if TYPE_CHECKING:
    import duckdb

    from hardstat.analysis.ablation import BandAblation
    from hardstat.analysis.consistency import ConsistencyResult
    from hardstat.analysis.downstream import Downstream
    from hardstat.analysis.logs import RunInfo
    from hardstat.analysis.semantic import SemanticResult

ALL_BAND = "0-100"
THUMB_SCALE = 3
"""Thumbnails are upscaled by this factor (32 -> 96 px), nearest neighbour."""
MAX_EPOCH_TABLE_RUNS = 6
"""The kNN-per-epoch table is shown for at most this many runs (the chart always)."""


# ---------------------------------------------------------------------------------------------
# Small pure helpers: images


def upscale(image: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour upscaling of an (H, W, C) or (H, W) image by an integer factor."""
    if factor < 1:
        raise ConfigError(f"the upscaling factor must be >= 1 (got {factor})")
    return np.repeat(np.repeat(image, factor, axis=0), factor, axis=1)


def encode_png(image: np.ndarray) -> bytes:
    """A uint8 (H, W, 3) RGB or (H, W) grey image as PNG bytes (no filter, zlib level 9)."""
    img = np.ascontiguousarray(image, dtype=np.uint8)
    if img.ndim == 2:
        color_type, channels = 0, 1
    elif img.ndim == 3 and img.shape[2] == 3:
        color_type, channels = 2, 3
    else:
        raise ConfigError(f"cannot encode an image of shape {img.shape}; use H x W or H x W x 3")
    h, w = img.shape[:2]
    rows = img.reshape(h, w * channels)
    raw = np.concatenate([np.zeros((h, 1), np.uint8), rows], axis=1).tobytes()

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", w, h, 8, color_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw, 9))
        + chunk(b"IEND", b"")
    )


def data_uri(png: bytes) -> str:
    """``data:image/png;base64,...`` for PNG bytes."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def npz_train_file(spec: str) -> Path | None:
    """The train .npz of an ``npz:PATH`` dataset spec (PATH/train.npz or PATH itself when it is
    an .npz file) or of the shipped ``demo`` dataset; None for other dataset kinds."""
    if spec == "demo":
        return DEMO_DIR / "train.npz"
    if not spec.startswith("npz:"):
        return None
    path = Path(spec[len("npz:") :])
    return path if path.suffix == ".npz" else path / "train.npz"


def image_file(
    spec: str, run_dirs: Sequence[Path], dataset: str | None = None
) -> tuple[Path | None, str]:
    """The .npz file the gallery may read images from, and a sentence that says where they come
    from (or why there are none).

    Images come only from a dataset the user names (``dataset``, e.g. ``--dataset npz:PATH``),
    the demo dataset shipped with hardstat, or a file inside one of the runs' directories: a
    report built from someone else's logs never embeds a file from elsewhere on this machine
    just because a manifest names it.
    """
    if dataset is not None:
        file = npz_train_file(dataset)
        if file is None:
            return None, f"--dataset {dataset!r} is not an npz: dataset (or demo), so no images"
        return file, f"Images from {file} (--dataset)."
    file = npz_train_file(spec)
    if file is None:
        return None, f"images are shown only for npz: datasets (this run's is {spec!r})"
    if spec == "demo":
        return file, "Images from the demo dataset shipped with hardstat."
    resolved = file.resolve()
    if any(resolved.is_relative_to(Path(d).resolve()) for d in run_dirs):
        return file, f"Images from {file}, inside the run."
    return None, (
        f"the runs' manifest names images at {file}, outside the runs; hardstat reads images "
        f"only from a dataset you name, so give --dataset {spec} to show them"
    )


def load_images(spec: str, file: Path | None = None) -> tuple[np.ndarray | None, str | None]:
    """(images uint8 N x H x W x 3, None) from an ``npz:`` spec (or ``file``, when given),
    else (None, why not)."""
    file = file if file is not None else npz_train_file(spec)
    if file is None:
        return None, f"images are shown only for npz: datasets (this run's is {spec!r})"
    if not file.is_file():
        return None, f"{file} is missing, so no images are shown"
    try:
        with np.load(file) as data:
            images = np.asarray(data["images"])
    except (OSError, ValueError, KeyError) as e:
        return None, f"cannot read images from {file} ({type(e).__name__}), so none are shown"
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[3] != 3:
        return None, f"{file} 'images' is not uint8 N x H x W x 3, so no images are shown"
    return images, None


# ---------------------------------------------------------------------------------------------
# Small pure helpers: text


def esc(value: object) -> str:
    """HTML-escaped text of a value; a missing one (None, NaN) is the dash. Numbers are
    formatted by :mod:`hardstat.display` before they get here."""
    return display.DASH if display.missing(value) else html.escape(str(value))


def html_table(
    columns: Sequence[str], rows: Sequence[Sequence[object]], *, numeric: Sequence[bool] = ()
) -> str:
    """An HTML table with escaped cells; ``numeric[i]`` right-aligns column i."""
    right = list(numeric) + [False] * (len(columns) - len(numeric))
    head = "".join(f"<th>{esc(c)}</th>" for c in columns)
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="num">{esc(v)}</td>' if right[i] else f"<td>{esc(v)}</td>"
            for i, v in enumerate(row)
        )
        + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def canonical_band(spec: object) -> str | None:
    """A band spec in its canonical form (``"0-100"``), or the text as given when unparsable."""
    from hardstat.bands import parse_band

    if spec is None:
        return None
    try:
        return parse_band(str(spec)).spec
    except (HardstatError, ValueError):
        return str(spec)


def choose_runs(bands: dict[str, str | None]) -> list[str]:
    """Runs for the semantic and consistency sections: those with band 0-100, else all."""
    full = [r for r, b in bands.items() if canonical_band(b) == ALL_BAND]
    return full or list(bands)


# ---------------------------------------------------------------------------------------------
# Sections


@dataclass(frozen=True)
class Thumb:
    """One gallery image: its sample_id, class name and PNG data URI (None without images)."""

    sample_id: int
    class_name: str | None
    uri: str | None
    caption: str = ""


def _chart_img(chart: Any, alt: str, scale: float = 1.5) -> str:
    import vl_convert as vlc

    png = vlc.vegalite_to_png(chart.to_json(), scale=scale)
    return f'<img class="chart" alt="{esc(alt)}" src="{data_uri(png)}">'


def _note(text: str) -> str:
    return f'<p class="note">{esc(text)}</p>'


def _header(infos: Sequence[RunInfo], runs: Sequence[dict[str, Any]], created: str) -> str:
    from hardstat import __version__
    from hardstat.classes import stand_in_note

    datasets = sorted({_spec(i) for i in infos})
    ks = sorted({r["queue_size"] for r in runs if r["queue_size"] is not None})
    bands = list(dict.fromkeys(str(canonical_band(r["band"])) for r in runs))
    seeds = sorted({r["seed"] for r in runs if r["seed"] is not None})
    trained = sorted(
        {str(i.manifest.get("versions", {}).get("hardstat", "?")) for i in infos} - {"?"}
    )
    facts = [
        ("runs", str(len(runs))),
        ("dataset", ", ".join(datasets)),
        ("queue size K", ", ".join(map(str, ks)) or display.DASH),
        ("bands", ", ".join(bands)),
        ("seeds", ", ".join(map(str, seeds)) or display.DASH),
        (
            "training processes",
            ", ".join(map(str, sorted({int(r.get("processes") or 1) for r in runs}))),
        ),
        (
            "hardstat version",
            f"{__version__} (report); {', '.join(trained) or 'unknown'} (training)",
        ),
        ("created", created),
    ]
    dl = "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in facts)
    table = html_table(
        ["run", "band", "kept / K", "seed", "epochs done", "steps done", "status"],
        [
            [
                r["run"],
                canonical_band(r["band"]),
                f"{r['band_kept']} / {r['queue_size']}",
                r["seed"],
                r["epochs_done"],
                r["steps_done"],
                r["status"],
            ]
            for r in runs
        ],
        numeric=[False, False, True, True, True, True, False],
    )
    stand_in = stand_in_note({i.name: _spec(i) for i in infos})
    note = _note(stand_in) if stand_in else ""
    return (
        f'<section id="header"><h1>hardstat report</h1><dl class="facts">{dl}</dl>{note}{table}'
        "</section>"
    )


def _spec(info: RunInfo) -> str:
    return str((info.manifest.get("dataset") or {}).get("spec", "?"))


def _downstream_section(result: Downstream | str, chance: float | None) -> str:
    head = (
        '<section id="downstream"><h2>Downstream accuracy</h2>'
        "<p>Top-1 accuracy on the held-out split: the weighted kNN monitor after each evaluated "
        "epoch of training (kind <code>knn</code> in the runs' <code>evals</code> table) and "
        "the linear probe on the frozen encoder (<code>linear</code>, from <code>hardstat eval "
        "RUN --linear</code>). Several evaluations at one step are averaged. One run is one "
        "draw: compare bands over seeds in the band ablation below.</p>"
    )
    if isinstance(result, str):
        return head + _note(f"Not available: {result}") + "</section>"
    if result.empty:
        return (
            head
            + _note(
                "No evaluation in these runs: the kNN monitor runs during training unless "
                "eval.knn_every is 0; add a linear probe with: hardstat eval RUN --linear"
            )
            + "</section>"
        )
    from hardstat.charts.downstream import downstream_chart

    cols, rows = result.final_rows()
    parts = [head, html_table(cols, rows, numeric=[False] + [True] * (len(cols) - 1))]
    parts.append(
        _chart_img(
            downstream_chart(result.evals, chance=chance),
            "kNN monitor top-1 per epoch and linear-probe top-1, per run",
        )
    )
    kcols, krows = result.knn_rows()
    if 1 < len(kcols) <= 1 + MAX_EPOCH_TABLE_RUNS and krows:
        parts.append("<h3>kNN monitor per epoch</h3>")
        parts.append(html_table(kcols, krows, numeric=[False] + [True] * (len(kcols) - 1)))
    if not result.kind("linear").height:
        parts.append(_note("No linear probe yet; add one with: hardstat eval RUN --linear"))
    return "".join(parts) + "</section>"


def _bands_section(result: BandAblation | str) -> str:
    head = '<section id="bands"><h2>Band ablation: downstream accuracy per band</h2>'
    if isinstance(result, str):  # e.g. runs of different datasets: no ablation to show
        return head + _note(f"Omitted: {result}") + "</section>"
    if result.no_contrast is not None and result.bands.height < 2:
        return head + _note(result.no_contrast) + "</section>"  # the CLI's line, word for word
    from hardstat.charts.bands import bands_chart

    cols, rows = result.band_rows()
    table = html_table(cols, rows, numeric=[False] + [True] * (len(cols) - 1))
    if result.no_contrast is not None:
        return head + table + _note(result.no_contrast) + "</section>"
    ccols, crows = result.contrast_rows()
    what = f"{result.metric_label}: band minus {result.reference}, paired by seed"
    contrasts = f"<p>{esc(what)}</p>"
    contrasts += html_table(ccols, crows, numeric=[False] + [True] * 7 + [False, False])
    contrasts += _note(result.rule() + ".")
    chart = _chart_img(
        bands_chart(
            result.contrasts,
            result.pairs,
            reference=result.reference,
            metric=result.metric_label,
            margin=result.margin,
        ),
        "paired differences from the reference band, per band",
    )
    notes = "".join(_note(w) for w in result.warnings)
    return head + contrasts + chart + table + notes + "</section>"


def _semantic_section(result: SemanticResult | str, runs: Sequence[str]) -> str:
    head = (
        '<section id="semantic"><h2>Are hard negatives semantically similar to their query?</h2>'
        f"<p>Runs: {esc(', '.join(runs))}.</p>"
    )
    if isinstance(result, str):
        return head + _note(f"Not available: {result}") + "</section>"
    from hardstat.analysis.wordnet import MEASURE_TITLES
    from hardstat.charts.semantic import semantic_chart

    stand_in = _note(result.classes_note) if result.classes_note else ""
    name = MEASURE_TITLES.get(result.measure, result.measure)
    cols, rows = result.contrast_rows()
    effects = html_table(cols, rows, numeric=[False, False, True, True, True])
    cols, rows, numeric = result.bin_rows()
    table = html_table(cols, rows, numeric=numeric)
    n = result.permutations
    text = (
        f"<p>{esc(name)} class_similarity of query and negative classes "
        f"({esc(result.class_similarity_source)}); window: {esc(result.window)}; "
        f"{result.n_pairs:,} pairs of {result.n_queries:,} logged queries, "
        f"{result.n_self_negatives_excluded:,} self-negative pairs left out. Effect sizes per "
        "run (value minus reference; class_similarity over different-class pairs only) with "
        f"95% intervals from a {esc(result.resampling_text)}, conditional on the run; with "
        "several runs, their mean with a t-interval over runs.</p>"
    )
    rho = (
        f"<p>Spearman ρ(rank, class_similarity) = {display.number(result.spearman_rho, '.4g')} "
        f"(permutation {esc(display.p_text(result.p_value, permutations=n))}; "
        f"analytic {esc(display.p_text(result.p_value_analytic))}); without same-class pairs "
        f"ρ = {display.number(result.spearman_rho_excluding_same_class, '.4g')}. ρ &lt; 0: "
        "harder negatives belong to classes more similar to the query's.</p>"
    )
    notes = "".join(_note(w) for w in result.warnings)
    chart = _chart_img(
        semantic_chart(result.bins_frame(), result.trajectory_frame()),
        "same-class fraction and class_similarity by hardness, and per epoch",
    )
    return head + stand_in + text + effects + chart + table + rho + notes + "</section>"


def consistency_rows(r: ConsistencyResult) -> list[tuple[str, str]]:
    """(name, value) rows summarising a consistency result (the CLI's summary, band first)."""
    kept = display.percent(r.kept_fraction, 2)
    band = f"{r.band}: hardest {r.kept} of K = {r.queue_size} ({kept} of the queue)"
    return [("band", band), *r.summary_rows()]


def _consistency_section(result: ConsistencyResult | str, runs: Sequence[str], band: str) -> str:
    band = band if isinstance(result, str) else result.band
    head = (
        '<section id="consistency"><h2>Does hardness persist with the image?</h2>'
        f"<p>Runs: {esc(', '.join(runs))}. A key is one view of an image encoded at one step; "
        "persistence asks whether a key's hardness (beyond its class) carries over to the "
        f"image's other keys. Hard band for the in-band figures: {esc(band)}.</p>"
    )
    if isinstance(result, str):
        return head + _note(f"Not available: {result}") + "</section>"
    from hardstat.charts.consistency import consistency_chart

    dl = "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in consistency_rows(result))
    chart = _chart_img(
        consistency_chart(result.chart_tables(), band=result.band),
        "intraclass correlations, the persistence test against its permutation null, and "
        "per-negative z across keys",
    )
    notes = "".join(_note(n) for n in result.notes)
    return head + f'<dl class="facts">{dl}</dl>' + chart + notes + "</section>"


def hardest_queries(
    con: duckdb.DuckDBPyConnection, neg_ids: Sequence[int], per_negative: int
) -> dict[int, list[tuple[int, int]]]:
    """For each negative, up to ``per_negative`` (query_id, best rank) pairs where it ranked
    smallest (hardest), ties by query_id."""
    if not neg_ids or per_negative < 1:
        return {}
    from hardstat.analysis.logs import query

    sql = """
        SELECT neg_id, query_id, min(rank) AS best_rank
        FROM pairs
        WHERE list_contains(?, neg_id)
        GROUP BY neg_id, query_id
        QUALIFY row_number() OVER (PARTITION BY neg_id ORDER BY best_rank, query_id) <= ?
        ORDER BY neg_id, best_rank, query_id
    """
    out: dict[int, list[tuple[int, int]]] = {int(n): [] for n in neg_ids}
    for row in query(con, sql, [[int(n) for n in neg_ids], per_negative]).to_pylist():
        out[int(row["neg_id"])].append((int(row["query_id"]), int(row["best_rank"])))
    return out


def class_names(con: duckdb.DuckDBPyConnection, sample_ids: Sequence[int]) -> dict[int, str]:
    """Class name of each train sample_id that the runs' samples table labels."""
    if not sample_ids:
        return {}
    from hardstat.analysis.logs import query

    sql = """
        SELECT s.sample_id, any_value(coalesce(c.name, CAST(s.label AS VARCHAR))) AS name
        FROM samples s LEFT JOIN classes c ON c.run = s.run AND c.label = s.label
        WHERE s.split = 'train' AND list_contains(?, s.sample_id)
        GROUP BY s.sample_id
    """
    rows = query(con, sql, [[int(i) for i in sample_ids]]).to_pylist()
    return {int(r["sample_id"]): str(r["name"]) for r in rows}


def _thumb(sample_id: int, names: dict[int, str], images: np.ndarray | None, caption: str) -> Thumb:
    uri = None
    if images is not None and 0 <= sample_id < len(images):
        uri = data_uri(encode_png(upscale(images[sample_id], THUMB_SCALE)))
    return Thumb(sample_id, names.get(sample_id), uri, caption)


def _figure(t: Thumb, cls: str = "") -> str:
    img = (
        f'<img src="{t.uri}" alt="sample {t.sample_id}">'
        if t.uri
        else '<div class="noimg">no image</div>'
    )
    cap = f"#{t.sample_id} {esc(t.class_name or 'unlabelled')}"
    if t.caption:
        cap += f"<br><small>{esc(t.caption)}</small>"
    return f'<figure class="{cls}">{img}<figcaption>{cap}</figcaption></figure>'


@dataclass(frozen=True)
class Gallery:
    """What the gallery shows: each consistently hard negative with the queries it was hardest
    for, the consistently easy ones, and where the images came from (``source``) or why there
    are none (``why``)."""

    hard: tuple[tuple[Thumb, tuple[Thumb, ...]], ...]
    easy: tuple[Thumb, ...]
    source: str
    why: str | None
    min_keys: int
    fdr: float
    n_hard: int
    n_easy: int


def collect_gallery(
    con: duckdb.DuckDBPyConnection,
    result: ConsistencyResult | str,
    infos: Sequence[RunInfo],
    thumbnails: int,
    queries_per_negative: int,
    dataset: str | None = None,
) -> Gallery | str:
    """The gallery's thumbnails from a consistency result (or why there is no gallery)."""
    if isinstance(result, str):
        return "the consistency test did not run."
    if thumbnails == 0:
        return "--thumbnails 0."
    hard = [int(i) for i in result.hard_ids[:thumbnails]]
    easy = [int(i) for i in result.easy_ids[:thumbnails]]
    queries = hardest_queries(con, hard, queries_per_negative)
    ids = hard + easy + [q for qs in queries.values() for q, _ in qs]
    names = class_names(con, ids)
    specs = list(dict.fromkeys(_spec(i) for i in infos))
    source = ""
    if len(specs) == 1 or dataset is not None:
        file, source = image_file(specs[0], [i.path for i in infos], dataset)
        images, why = load_images(specs[0], file) if file else (None, source)
    else:
        images, why = None, "runs use several datasets (name one with --dataset)"
    per = {row["neg_id"]: row for row in result.per_negative.to_dicts()}

    def caption(n: int) -> str:
        row = per.get(n)
        if row is None:
            return ""
        effect, z = display.number(row["effect"], "+.1f"), display.number(row["z"], "+.1f")
        return f"{effect} pp, {row['n_keys']} keys, z {z}"

    return Gallery(
        hard=tuple(
            (
                _thumb(n, names, images, caption(n)),
                tuple(_thumb(q, names, images, f"rank {r}") for q, r in queries.get(n, [])),
            )
            for n in hard
        ),
        easy=tuple(_thumb(n, names, images, caption(n)) for n in easy),
        source=source,
        why=why,
        min_keys=result.min_keys,
        fdr=result.fdr,
        n_hard=result.n_consistently_hard,
        n_easy=result.n_consistently_easy,
    )


def _gallery_section(gallery: Gallery | str) -> str:
    head = '<section id="gallery"><h2>Most consistently hard and easy negatives</h2>'
    if isinstance(gallery, str):
        what = "Omitted" if gallery.startswith("--") else "Not available"
        return head + _note(f"{what}: {gallery}") + "</section>"
    parts = [head]
    if gallery.why:
        parts.append(_note(f"Ids and classes only: {gallery.why}."))
    else:
        parts.append(f"<p>{esc(gallery.source)}</p>")
    parts.append(
        "<p>Negatives called consistently hard or easy from at least "
        f"{gallery.min_keys} keys each (Stouffer z across keys, BH FDR {gallery.fdr:g}), ranked "
        "by their persistent effect: an empirical-Bayes estimate of how much harder (+) or "
        "easier (−) than its class and key age predict the image is, in percentile points.</p>"
    )
    parts.append(f"<h3>Consistently hard ({gallery.n_hard:,} in all)</h3>")
    if not gallery.hard:
        parts.append(_note("No negative is consistently hard at this FDR."))
    rows = []
    for neg, queries in gallery.hard:
        qs = "".join(_figure(q, "query") for q in queries)
        rows.append(
            '<div class="hardrow">'
            + _figure(neg, "neg hard")
            + f'<div class="arrow">hardest for<br>→</div><div class="queries">{qs}</div></div>'
        )
    if rows:
        parts.append(f'<div class="hardrows">{"".join(rows)}</div>')
    parts.append(f"<h3>Consistently easy ({gallery.n_easy:,} in all)</h3>")
    if not gallery.easy:
        parts.append(_note("No negative is consistently easy at this FDR."))
    else:
        figs = "".join(_figure(t, "neg easy") for t in gallery.easy)
        parts.append(f'<div class="grid">{figs}</div>')
    return "".join(parts) + "</section>"


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px auto;
max-width:1300px;color:#222;padding:0 16px}
h1{margin-bottom:4px}h2{border-bottom:2px solid #ddd;padding-bottom:4px;margin-top:36px}
table{border-collapse:collapse;margin:12px 0;font-size:14px}
th,td{border:1px solid #ccc;padding:4px 8px;text-align:left}th{background:#f3f3f3}
td.num{text-align:right;font-variant-numeric:tabular-nums}
dl.facts{display:grid;grid-template-columns:max-content auto;gap:2px 16px;font-size:14px}
dl.facts dt{font-weight:600}dl.facts dd{margin:0}
.note{color:#8a5300;background:#fff7e6;border-left:4px solid #f0a020;padding:6px 10px}
img.chart{max-width:100%;display:block;margin:12px 0}
figure{margin:2px;display:inline-block;text-align:center;font-size:12px;width:102px;
vertical-align:top}
figure img,.noimg{width:96px;height:96px;image-rendering:pixelated;border:3px solid #999}
.noimg{display:flex;align-items:center;justify-content:center;background:#eee;color:#777}
figure.hard img{border-color:#c62828}figure.easy img{border-color:#2e7d32}
figure.query img{border-color:#1565c0}
.hardrows{display:grid;grid-template-columns:1fr 1fr;column-gap:24px}
.hardrow{display:flex;align-items:flex-start;gap:8px;border-bottom:1px solid #eee;padding:4px 0}
.arrow{align-self:center;color:#555;font-size:12px;width:52px;text-align:center}
.queries{display:flex;flex-wrap:nowrap}
.grid{display:flex;flex-wrap:wrap}
"""


def _check_target(out: Path) -> None:
    """Fail before the analyses when the report could not be written where asked."""
    import os

    from hardstat.errors import WriteError

    if out.is_dir():
        raise ConfigError(f"--out {out} is a directory; give a file name ending in .html")
    parent = out.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise WriteError(
            f"cannot write {out} (Permission denied: {parent} is not writable); choose another "
            "--out"
        )


def check_options(
    *,
    band: str = "0-5",
    measure: str = "wup",
    thumbnails: int = 12,
    queries_per_negative: int = 4,
    bootstrap: int = 1000,
    permutations: int = 1000,
) -> None:
    """Raise ConfigError for an option the report cannot use (before any analysis runs): the
    analyses' own checks, so a bad value reads the same here as in ``hardstat analyze``."""
    from hardstat.analysis.consistency import check_options as check_consistency
    from hardstat.analysis.semantic import check_options as check_semantic

    if thumbnails < 0 or queries_per_negative < 0:
        raise ConfigError("use 0 or more thumbnails and queries per negative")
    check_semantic(measure, bootstrap, permutations)
    check_consistency(band=band)


@dataclass(frozen=True)
class ReportData:
    """Everything the report shows, collected before any HTML is written (:func:`collect`);
    :func:`render` turns it into the page. Each analysis is its result or, where it could not
    run on these logs, the one-line reason."""

    infos: tuple[RunInfo, ...]
    runs: tuple[dict[str, Any], ...]
    created: str
    chosen: tuple[str, ...]
    band: str
    downstream: Downstream | str
    bands: BandAblation | str
    semantic: SemanticResult | str
    consistency: ConsistencyResult | str
    gallery: Gallery | str
    chance: float | None = None


def collect(
    run_specs: Sequence[str | Path],
    *,
    band: str = "0-5",
    measure: str = "wup",
    thumbnails: int = 12,
    queries_per_negative: int = 4,
    bootstrap: int = 1000,
    permutations: int = 1000,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
    dataset: str | None = None,
    semantic: SemanticResult | str | None = None,
    consistency: ConsistencyResult | str | None = None,
) -> ReportData:
    """Run every analysis the report shows on the runs (see :func:`build_report`) and return
    the results. ``semantic`` and ``consistency``, when given, are used as they are instead of
    being computed again (e.g. by ``hardstat demo``, which saved them already): results of the
    report's all-negatives runs (a ConfigError otherwise), or the reason the analysis could not
    run. A damaged log file raises :class:`~hardstat.errors.CorruptLogError`."""
    from hardstat.analysis import logs
    from hardstat.analysis.ablation import band_ablation
    from hardstat.analysis.consistency import consistency as run_consistency
    from hardstat.analysis.downstream import downstream
    from hardstat.analysis.semantic import semantic as run_semantic

    check_options(
        band=band,
        measure=measure,
        thumbnails=thumbnails,
        queries_per_negative=queries_per_negative,
        bootstrap=bootstrap,
        permutations=permutations,
    )
    say = progress or (lambda _msg: None)
    infos = logs.find_runs(run_specs)
    con = logs.connect(infos)
    try:
        runs = logs.query(
            con,
            "SELECT run, band, band_kept, queue_size, seed, status, epochs_done, steps_done, "
            "processes "
            "FROM runs ORDER BY run",
        ).to_pylist()
        created = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        say("downstream accuracy ...")
        down: Downstream | str = _attempt(lambda: downstream(con))
        say("band ablation ...")
        bands: BandAblation | str = _attempt(lambda: band_ablation(con), HardstatError)
    finally:
        con.close()

    chosen = choose_runs({r["run"]: r["band"] for r in runs})
    for name, given in (("semantic", semantic), ("consistency", consistency)):
        if given is not None and not isinstance(given, str) and sorted(given.runs) != chosen:
            raise ConfigError(
                f"the {name} result given is of runs {', '.join(given.runs)}, but the report's "
                f"all-negatives runs are {', '.join(chosen)}; leave it out to compute it"
            )
    chosen_infos = [i for i in infos if i.name in chosen]
    sub = logs.connect(chosen_infos)
    try:
        sem = semantic
        if sem is None:
            say(f"semantic analysis on {', '.join(chosen)} ...")
            sem = _attempt(
                lambda: run_semantic(
                    sub, measure=measure, bootstrap=bootstrap, permutations=permutations, seed=seed
                ),
                LogError,
                WordNetError,  # no labels, or no WordNet for these classes
            )
        cons = consistency
        if cons is None:
            say(f"consistency test (band {band}) ...")
            cons = _attempt(
                lambda: run_consistency(
                    sub, band=band, seed=seed, permutations=permutations, progress=say
                ),
                LogError,  # e.g. no logged pairs, or one epoch: no image has two keys
            )
        say("gallery ...")
        gallery = collect_gallery(
            sub, cons, chosen_infos, thumbnails, queries_per_negative, dataset
        )
    finally:
        sub.close()
    classes = {(i.manifest.get("dataset") or {}).get("num_classes") for i in infos}
    (n_classes,) = classes if len(classes) == 1 else (None,)
    return ReportData(
        infos=tuple(infos),
        runs=tuple(runs),
        created=created,
        chosen=tuple(chosen),
        band=band,
        downstream=down,
        bands=bands,
        semantic=sem,
        consistency=cons,
        gallery=gallery,
        chance=1 / n_classes if isinstance(n_classes, int) and n_classes > 1 else None,
    )


def _attempt(compute: Callable[[], Any], *expected: type[Exception]) -> Any:
    """``compute()``, or the one-line reason when it raises one of ``expected`` (LogError by
    default); a damaged log file always propagates."""
    caught = expected or (LogError,)
    try:
        return compute()
    except caught as e:
        if isinstance(e, CorruptLogError):
            raise
        return str(e)


def render(data: ReportData) -> str:
    """The report page (HTML) of collected results; no analysis runs here."""
    sections = [
        _header(data.infos, data.runs, data.created),
        _downstream_section(data.downstream, data.chance),
        _bands_section(data.bands),
        _semantic_section(data.semantic, data.chosen),
        _consistency_section(data.consistency, data.chosen, data.band),
        _gallery_section(data.gallery),
    ]
    title = f"hardstat report: {', '.join(r['run'] for r in data.runs)}"
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{esc(title)}</title><style>{_CSS}</style></head><body>"
        + "".join(sections)
        + '<footer><p class="small">Following Cai et al. 2020, "Are all negatives created '
        'equal in contrastive instance discrimination?" (arXiv 2010.06682). Rank 1 = most '
        "similar = hardest.</p></footer></body></html>\n"
    )


def build_report(
    run_specs: Sequence[str | Path],
    *,
    out: str | Path,
    band: str = "0-5",
    measure: str = "wup",
    thumbnails: int = 12,
    queries_per_negative: int = 4,
    bootstrap: int = 1000,
    permutations: int = 1000,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
    dataset: str | None = None,
    semantic: SemanticResult | str | None = None,
    consistency: ConsistencyResult | str | None = None,
) -> Path:
    """Write the HTML report of the runs (run directories, sweeps or globs) to ``out``.

    ``band`` is the consistency test's hard band, ``measure`` the WordNet similarity of the
    semantic section; ``thumbnails`` hard and as many easy negatives go in the gallery, each
    hard one with up to ``queries_per_negative`` queries it ranked hardest for. ``bootstrap``
    and ``permutations`` are passed to the analyses (0 skips them). A section whose analysis
    cannot run on these logs says why instead; a damaged log file stops the report (a
    :class:`~hardstat.errors.CorruptLogError`). ``dataset`` names where gallery images come from
    (:func:`image_file`). ``semantic`` and ``consistency``: results computed already, used
    instead of computing them again (:func:`collect`). The file is written atomically. Returns
    the path written.
    """
    out = Path(out)
    if out.suffix.lower() != ".html":
        raise ConfigError(f"cannot write the report to {out.name}: use a file ending in .html")
    check_options(
        band=band,
        measure=measure,
        thumbnails=thumbnails,
        queries_per_negative=queries_per_negative,
        bootstrap=bootstrap,
        permutations=permutations,
    )
    _check_target(out)
    data = collect(
        run_specs,
        band=band,
        measure=measure,
        thumbnails=thumbnails,
        queries_per_negative=queries_per_negative,
        bootstrap=bootstrap,
        permutations=permutations,
        seed=seed,
        progress=progress,
        dataset=dataset,
        semantic=semantic,
        consistency=consistency,
    )
    page = render(data)
    from hardstat.runs import write_bytes_atomic, write_failed

    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise write_failed(out.parent, e, "choose another --out") from e
    write_bytes_atomic(out, page.encode("utf-8"), todo="build the report again")
    return out
