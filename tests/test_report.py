"""The HTML report: pure helpers by hand, and a report on planted fixture runs."""

from __future__ import annotations

import base64
import json
import re
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from runlogs import write_run

from hardstat import schema
from hardstat.analysis import logs
from hardstat.analysis.ablation import band_ablation
from hardstat.classes import CIFAR10_CLASSES
from hardstat.errors import ConfigError
from hardstat.report import (
    build_report,
    canonical_band,
    choose_runs,
    encode_png,
    esc,
    hardest_queries,
    html_table,
    load_images,
    npz_train_file,
    upscale,
)


def decode_png(png: bytes) -> np.ndarray:
    """Minimal decoder for the PNGs :func:`encode_png` writes (8-bit, filter 0, one IDAT)."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, {}
    while pos < len(png):
        (length,) = struct.unpack(">I", png[pos : pos + 4])
        kind, data = png[pos + 4 : pos + 8], png[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", png[pos + 8 + length : pos + 12 + length])
        assert crc == zlib.crc32(kind + data)
        chunks[kind] = data
        pos += 12 + length
    w, h, depth, color, _, _, _ = struct.unpack(">IIBBBBB", chunks[b"IHDR"])
    assert depth == 8
    channels = {0: 1, 2: 3}[color]
    raw = np.frombuffer(zlib.decompress(chunks[b"IDAT"]), np.uint8).reshape(h, 1 + w * channels)
    assert (raw[:, 0] == 0).all()  # filter type None on every row
    img = raw[:, 1:].reshape(h, w, channels)
    return img[:, :, 0] if channels == 1 else img


# -- pure helpers ----------------------------------------------------------------------------


def test_upscale_is_nearest_neighbour() -> None:
    img = np.array([[[1, 2, 3], [4, 5, 6]]], np.uint8)  # 1 x 2 x 3
    big = upscale(img, 3)
    assert big.shape == (3, 6, 3)
    assert (big[:, :3] == [1, 2, 3]).all() and (big[:, 3:] == [4, 5, 6]).all()
    with pytest.raises(ConfigError):
        upscale(img, 0)


def test_png_round_trip_rgb_and_grey() -> None:
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    grey = rng.integers(0, 256, (4, 3), dtype=np.uint8)
    assert (decode_png(encode_png(rgb)) == rgb).all()
    assert (decode_png(encode_png(grey)) == grey).all()
    with pytest.raises(ConfigError):
        encode_png(np.zeros((2, 2, 4), np.uint8))


def test_npz_spec_and_image_loading(tmp_path: Path) -> None:
    assert npz_train_file("npz:/d/c10") == Path("/d/c10/train.npz")
    assert npz_train_file("npz:/d/one.npz") == Path("/d/one.npz")
    assert npz_train_file("cifar10:/data") is None
    images = np.arange(2 * 4 * 4 * 3, dtype=np.uint8).reshape(2, 4, 4, 3)
    np.savez(tmp_path / "train.npz", images=images, labels=np.array([0, 1]))
    got, why = load_images(f"npz:{tmp_path}")
    assert why is None and got is not None and (got == images).all()
    assert load_images("synthetic")[0] is None
    missing, why = load_images(f"npz:{tmp_path / 'nope'}")
    assert missing is None and why is not None and "missing" in why


def test_text_helpers_escape_and_format() -> None:
    t = html_table(["a<b"], [["<script>&"]], numeric=[True])
    assert "&lt;script&gt;&amp;" in t and "a&lt;b" in t and 'class="num"' in t
    assert "<script>" not in t
    assert esc(None) == esc(float("nan")) == "—" and esc("a<b") == "a&lt;b"
    assert canonical_band("0-100") == "0-100" and canonical_band("random:5") == "random:5"
    assert choose_runs({"a": "0-5", "b": "0-100", "c": "random:5"}) == ["b"]
    assert choose_runs({"a": "0-5", "c": "random:5"}) == ["a", "c"]


# -- planted fixture runs ------------------------------------------------------------------

N_IDS, QUEUE, QUERIES, STEPS = 60, 40, 6, 25
HARD, EASY = (0, 1, 2), (3, 4, 5)


def planted_pairs(seed: int) -> dict[str, np.ndarray]:
    """Pairs in rank order per (step, query): HARD ids score high, EASY ids low, rest noise."""
    rng = np.random.default_rng(seed)
    prop = np.zeros(N_IDS)
    prop[list(HARD)], prop[list(EASY)] = 4.0, -4.0
    cols: dict[str, list[np.ndarray]] = {c: [] for c in ("step", "query_id", "neg_id")}
    for step in range(STEPS):
        others = rng.permutation(np.arange(len(HARD + EASY), N_IDS))[: QUEUE - len(HARD + EASY)]
        queue = np.concatenate([np.array(HARD + EASY), others])
        q_ids = rng.choice(np.setdiff1d(np.arange(N_IDS), queue), QUERIES, replace=False)
        score = prop[queue][None, :] + rng.standard_normal((QUERIES, len(queue)))
        order = np.argsort(-score, axis=1, kind="stable")
        cols["neg_id"].append(queue[order].ravel())
        cols["query_id"].append(np.repeat(q_ids, len(queue)))
        cols["step"].append(np.full(QUERIES * len(queue), step))
    n = sum(len(a) for a in cols["step"])
    return {
        "step": np.concatenate(cols["step"]).astype(np.int32),
        "query_id": np.concatenate(cols["query_id"]).astype(np.int32),
        "neg_id": np.concatenate(cols["neg_id"]).astype(np.int32),
        "rank": np.tile(np.arange(1, QUEUE + 1, dtype=np.int32), n // QUEUE),
        "similarity": np.zeros(n, np.float16),
        "in_band": np.ones(n, bool),
    }


def ev(kind: str, step: int, top1: float) -> dict[str, object]:
    return {"step": step, "epoch": 0, "kind": kind, "top1": top1, "top5": None, "params": "{}"}


def set_dataset(run: Path, spec: str) -> None:
    path = run / schema.MANIFEST_FILE
    manifest = json.loads(path.read_text())
    manifest["dataset"]["spec"] = spec
    path.write_text(json.dumps(manifest))


IMAGES = np.random.default_rng(7).integers(0, 256, (N_IDS, 32, 32, 3), dtype=np.uint8)
LABELS = (np.arange(N_IDS) % 10).astype(np.int16)


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, np.ndarray]]:
    root = tmp_path_factory.mktemp("report")
    data = root / "data"
    data.mkdir()
    np.savez(data / "train.npz", images=IMAGES, labels=LABELS)
    pairs = planted_pairs(0)
    sweep = root / "sweep"
    run = write_run(
        sweep,
        "all<s0>",
        queue_size=QUEUE,
        pairs=pairs,
        labels=LABELS,
        evals=[ev("knn", 24, 0.75), ev("linear", 24, 0.875)],
    )
    set_dataset(run, f"npz:{data}")
    hard = write_run(sweep, "hard-s0", queue_size=QUEUE, band="0-5", evals=[ev("knn", 24, 0.5)])
    set_dataset(hard, f"npz:{data}")  # one dataset: the band ablation pools no others
    return sweep, pairs


@pytest.fixture(scope="module")
def page(
    sweep: tuple[Path, dict[str, np.ndarray]], tmp_path_factory: pytest.TempPathFactory
) -> str:
    out = tmp_path_factory.mktemp("out") / "r" / "report.html"
    data = sweep[0].parent / "data"
    path = build_report(
        [sweep[0]],
        out=out,
        band="0-10",
        thumbnails=3,
        bootstrap=0,
        permutations=0,
        dataset=f"npz:{data}",
    )
    assert path == out
    return out.read_text()


def section(page: str, name: str) -> str:
    match = re.search(rf'<section id="{name}">(.*?)</section>', page, re.S)
    assert match, f"no section {name}"
    return match.group(1)


def test_sections_and_header(page: str) -> None:
    for name in ("header", "bands", "semantic", "consistency", "gallery"):
        section(page, name)
    head = section(page, "header")
    assert "all&lt;s0&gt;" in head and "hard-s0" in head and "all<s0>" not in page
    assert "<dd>0-100, 0-5</dd>" in head and f"<dd>{QUEUE}</dd>" in head


def test_band_table_values(page: str) -> None:
    bands = section(page, "bands")
    tables = re.findall(r"<tbody>(.*?)</tbody>", bands)
    contrast, per_band = (
        [re.findall(r"<td[^>]*>(.*?)</td>", r) for r in re.findall(r"<tr>(.*?)</tr>", t)]
        for t in tables
    )
    # one paired seed: the contrast is shown with its point but no interval, inconclusive
    assert contrast == [
        ["0-5", "2 / 40", "38 (95.000%)", "1", "s0 -25.00", "-25.00", "—", "—", "—", "inconclusive"]
    ]
    # band, kept / K, kept %, runs, kNN runs, mean kNN, linear runs, mean linear; 0-5 keeps 2
    assert per_band[0] == ["0-100", "40 / 40", "100.000", "1", "1", "75.00", "1", "87.50"]
    assert per_band[1] == ["0-5", "2 / 40", "5.000", "1", "1", "50.00", "0", "—"]
    assert "Holm" in bands and "1 paired seed, so no interval" in bands
    assert '<img class="chart"' in bands


def test_band_section_omits_an_ablation_it_cannot_make(tmp_path: Path) -> None:
    from hardstat.report import _bands_section, collect

    write_run(tmp_path, "a-s0", queue_size=QUEUE, evals=[ev("knn", 24, 0.5)])
    write_run(tmp_path, "b-s0", queue_size=2 * QUEUE, band="0-5", evals=[ev("knn", 24, 0.5)])
    data = collect([tmp_path], thumbnails=0, bootstrap=0, permutations=0)
    assert isinstance(data.bands, str) and data.bands.startswith("the runs mix queue sizes")
    html = _bands_section(data.bands)
    assert "Omitted: the runs mix queue sizes" in html and "<table>" not in html


def test_downstream_accuracy_section(page: str) -> None:
    # the kNN monitor and the linear probe of the evals table, per run, in % (issue #12, 2)
    down = section(page, "downstream")
    assert "<h2>Downstream accuracy</h2>" in down
    table = re.search(r"<tbody>(.*?)</tbody>", down).group(1)  # type: ignore[union-attr]
    rows = [re.findall(r"<td[^>]*>(.*?)</td>", r) for r in re.findall(r"<tr>(.*?)</tr>", table)]
    # run, final kNN, at epoch, best kNN, at epoch, linear top-1, linear top-5
    assert rows == [
        ["all&lt;s0&gt;", "75.00", "0", "75.00", "0", "87.50", "—"],
        ["hard-s0", "50.00", "0", "50.00", "0", "—", "—"],
    ]
    assert '<img class="chart"' in down and "kNN monitor per epoch" in down
    order = [m.group(1) for m in re.finditer(r'<section id="(\w+)">', page)]
    assert order == ["header", "downstream", "bands", "semantic", "consistency", "gallery"]


def test_npz_runs_carry_no_stand_in_note(page: str) -> None:
    assert "Synthetic stand-ins" not in page


def test_semantic_and_consistency_on_the_all_negatives_run(page: str) -> None:
    sem, cons = section(page, "semantic"), section(page, "consistency")
    assert "Runs: all&lt;s0&gt;." in sem and "hard-s0" not in sem
    assert '<img class="chart"' in sem and '<img class="chart"' in cons
    assert "0-10: hardest 4 of K = 40" in cons


def gallery_figures(gallery: str, cls: str) -> list[tuple[int, str, str]]:
    pattern = (
        rf'<figure class="{cls}"><img src="data:image/png;base64,([A-Za-z0-9+/=]+)" '
        r'alt="sample (\d+)"><figcaption>#\d+ ([^<]*)'
    )
    return [(int(i), b64, name) for b64, i, name in re.findall(pattern, gallery)]


def test_gallery_shows_the_planted_negatives_with_their_images(page: str) -> None:
    gallery = section(page, "gallery")
    hard = gallery_figures(gallery, "neg hard")
    easy = gallery_figures(gallery, "neg easy")
    assert {i for i, _, _ in hard} == set(HARD)
    assert {i for i, _, _ in easy} == set(EASY)
    names = {c.label: c.name for c in CIFAR10_CLASSES}
    for i, b64, name in hard + easy:
        assert name == names[LABELS[i]]
        img = decode_png(base64.b64decode(b64))
        assert img.shape == (96, 96, 3) and (img == upscale(IMAGES[i], 3)).all()


def slow_hardest_queries(pairs: dict[str, np.ndarray], neg: int, n: int) -> list[tuple[int, int]]:
    best: dict[int, int] = {}
    for q, g, r in zip(pairs["query_id"], pairs["neg_id"], pairs["rank"], strict=True):
        if g == neg:
            best[int(q)] = min(best.get(int(q), 10**9), int(r))
    return sorted(((q, r) for q, r in best.items()), key=lambda x: (x[1], x[0]))[:n]


def test_queries_beside_each_hard_negative(
    page: str, sweep: tuple[Path, dict[str, np.ndarray]]
) -> None:
    root, pairs = sweep
    gallery = section(page, "gallery")
    rows = re.findall(r'<div class="hardrow">(.*?)</div></div>', gallery, re.S)
    assert len(rows) == len(HARD)
    for row in rows:
        neg = int(re.search(r'alt="sample (\d+)"', row).group(1))  # type: ignore[union-attr]
        shown = [
            (int(i), int(r))
            for i, r in re.findall(
                r'alt="sample (\d+)"><figcaption>#\d+ [^<]*<br><small>rank (\d+)</small>', row
            )
        ]
        assert shown == slow_hardest_queries(pairs, neg, 4)
        for q, _ in shown:
            b64 = re.search(rf'src="data:image/png;base64,([^"]+)" alt="sample {q}"', row)
            assert (
                b64 and (decode_png(base64.b64decode(b64.group(1))) == upscale(IMAGES[q], 3)).all()
            )
    con = logs.connect(logs.find_runs([root / "all<s0>"]))
    try:
        got = hardest_queries(con, [0, 5], 2)
    finally:
        con.close()
    assert got == {0: slow_hardest_queries(pairs, 0, 2), 5: slow_hardest_queries(pairs, 5, 2)}


def test_no_network_resources_and_small(page: str) -> None:
    assert "http://" not in page and "https://" not in page
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*//""", page)
    assert len(page) < 3_000_000


def test_single_run_without_images(tmp_path: Path) -> None:
    run = write_run(tmp_path, "solo", queue_size=QUEUE, pairs=planted_pairs(1), labels=LABELS)
    out = build_report(
        [run], out=tmp_path / "solo.html", band="0-10", thumbnails=2, bootstrap=0, permutations=0
    )
    page = out.read_text()
    # one run, one band: the line analyze bands prints, word for word (issue #12, 4)
    con = logs.connect(logs.find_runs([run]))
    line = band_ablation(con).no_contrast
    con.close()
    assert line is not None and line.startswith("no contrast: every run has band 0-100")
    assert section(page, "bands") == (
        "<h2>Band ablation: downstream accuracy per band</h2>" + f'<p class="note">{esc(line)}</p>'
    )
    # a synthetic run: the header and the semantic section say its classes are stand-ins
    stand_in = "Synthetic stand-ins: run solo trained on synthetic, generated shapes"
    assert stand_in in section(page, "header") and stand_in in section(page, "semantic")
    # no evaluation at all: the downstream section says how to get one
    assert "No evaluation in these runs" in section(page, "downstream")
    gallery = section(page, "gallery")
    assert "Ids and classes only: images are shown only for npz: datasets" in gallery
    assert "data:image/png" not in gallery and gallery.count('class="noimg"') >= 4
    assert {int(i) for i in re.findall(r'<figure class="neg hard">.*?#(\d+) ', gallery)} <= set(
        range(N_IDS)
    )


def test_bad_arguments_raise_config_errors(
    sweep: tuple[Path, dict[str, np.ndarray]], tmp_path: Path
) -> None:
    with pytest.raises(ConfigError, match=r"\.html"):
        build_report([sweep[0]], out=tmp_path / "report.txt")
    with pytest.raises(ConfigError, match="random"):
        build_report([sweep[0]], out=tmp_path / "r.html", band="random:5")
    with pytest.raises(ConfigError, match="permutations"):
        build_report([sweep[0]], out=tmp_path / "r.html", permutations=10)
    assert not (tmp_path / "r.html").exists()


def test_image_file_reads_only_named_datasets_the_demo_or_the_run(tmp_path: Path) -> None:
    from hardstat.data import DEMO_DIR
    from hardstat.report import image_file

    run = tmp_path / "run"
    file, note = image_file("npz:/home/someone/secret.npz", [run])
    assert file is None and "outside the runs" in note and "--dataset npz:" in note
    file, note = image_file("npz:/home/someone/secret.npz", [run], "npz:/data/c10")
    assert file == Path("/data/c10/train.npz") and "--dataset" in note
    assert image_file("npz:/x", [run], "cifar10")[0] is None
    assert image_file("demo", [run])[0] == DEMO_DIR / "train.npz"
    assert image_file(f"npz:{run}/imgs", [run])[0] == run / "imgs" / "train.npz"
    assert image_file(f"npz:{run}/../run/x.npz", [run])[0] == run / ".." / "run" / "x.npz"
    assert image_file(f"npz:{run}/../other/x.npz", [run])[0] is None
    assert image_file("synthetic", [run])[0] is None


def test_precomputed_results_are_used_not_computed_again(
    sweep: tuple[Path, dict[str, np.ndarray]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Collect, then render: the demo hands the report the results it computed already."""
    from hardstat.analysis import consistency as C
    from hardstat.analysis import semantic as S

    con = logs.connect(logs.find_runs([sweep[0] / "all<s0>"]))
    try:
        sem = S.semantic(con, bootstrap=0, permutations=0)
    finally:
        con.close()

    def refuse(*_a: object, **_k: object) -> None:
        raise AssertionError("computed again")

    monkeypatch.setattr(S, "semantic", refuse)
    monkeypatch.setattr(C, "consistency", refuse)
    out = build_report(
        [sweep[0]],
        out=tmp_path / "pre.html",
        thumbnails=1,
        semantic=sem,
        consistency="no image has two keys yet",
    )
    page = out.read_text()
    assert f"{sem.n_pairs:,} pairs" in section(page, "semantic")
    assert "Not available: no image has two keys yet" in section(page, "consistency")
    assert "Not available: the consistency test did not run." in section(page, "gallery")
    other = write_run(tmp_path / "x", "other", queue_size=QUEUE, pairs=planted_pairs(2))
    with pytest.raises(ConfigError, match="the semantic result given is of runs all<s0>"):
        build_report([other], out=tmp_path / "o.html", semantic=sem, consistency="n/a")
