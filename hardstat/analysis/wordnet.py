"""Class-by-class similarity over WordNet 3.0 (the corpus itself: :mod:`hardstat.corpus`).

The semantic analysis compares classes by three WordNet measures of their noun synsets, as NLTK
computes them:

``wup``   Wu & Palmer (1994): ``2 depth(lcs) / (depth(a) + depth(b))``, in (0, 1].
``path``  ``1 / (1 + shortest hypernym/hyponym path length)``, in (0, 1].
``lch``   Leacock & Chodorow (1998): ``-log((path length + 1) / (2 D))`` with D the depth of the
          noun taxonomy (NLTK: 19 for WordNet 3.0), in (0, log(2 D)].

The diagonal (a class with itself) is set explicitly to each measure's maximum, :data:`DIAGONAL`
(wup 1, path 1, lch log(2 * 19) = 3.6376), because NLTK's self-similarity is not always the
maximum: ``wup(dog.n.01, dog.n.01)`` is 0.93 (dog has two hypernym paths of different lengths).

Tables for CIFAR-10 and CIFAR-100 (all three measures) ship in ``hardstat/data/`` so those
datasets need no corpus; other class sets need NLTK's WordNet 3.0 corpus, which
:mod:`hardstat.corpus` finds, checks and installs (its names are re-exported here, as before).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hardstat.analysis.measures import MEASURE_TITLES as MEASURE_TITLES
from hardstat.analysis.measures import MEASURES as MEASURES
from hardstat.classes import CIFAR10_CLASSES, CIFAR100_CLASSES, ClassInfo, wnid_offset
from hardstat.corpus import (  # the corpus's names, kept importable from here
    CHECK_OFFSET,
    CHECK_PAIR,
    CHECK_VALUES,
    INSTALL_HINT,
    LEXNAMES,
    OPTIONAL_FILES,
    REQUIRED_FILES,
    InstallReport,
    WordNetCheck,
    check_wordnet,
    default_data_dir,
    default_target,
    find_wordnet,
    install_wordnet,
    search_roots,
    wordnet_available,
    wordnet_reader,
)
from hardstat.errors import WordNetError

__all__ = [
    "CHECK_OFFSET",
    "CHECK_PAIR",
    "CHECK_VALUES",
    "DIAGONAL",
    "INSTALL_HINT",
    "LCH_MAX",
    "LEXNAMES",
    "MEASURES",
    "MEASURE_TITLES",
    "NOUN_DEPTH",
    "OPTIONAL_FILES",
    "REQUIRED_FILES",
    "SHIPPED",
    "ClassSimilarity",
    "InstallReport",
    "WordNetCheck",
    "check_wordnet",
    "class_similarity",
    "class_synsets",
    "data_dir",
    "default_data_dir",
    "default_target",
    "find_wordnet",
    "install_wordnet",
    "load_shipped_table",
    "search_roots",
    "shipped_similarity",
    "shipped_table_path",
    "similarity_for_classes",
    "wordnet_available",
    "wordnet_reader",
    "write_shipped_tables",
]

NOUN_DEPTH = 19
"""NLTK's depth D of the WordNet 3.0 noun taxonomy (longest hypernym path, in edges)."""

LCH_MAX = math.log(2 * NOUN_DEPTH)
"""Largest Leacock–Chodorow value for nouns, ``-log(1 / (2 D))`` = 3.6376 (a synset vs itself)."""

DIAGONAL = {"wup": 1.0, "path": 1.0, "lch": LCH_MAX}
"""Similarity of a class with itself, set explicitly (see the module docstring)."""


# --------------------------------------------------------------------------------------------
# Class similarity


def _check_measure(measure: str) -> None:
    if measure not in MEASURES:
        raise ValueError(f"measure must be one of {', '.join(MEASURES)}, got {measure!r}")


def class_synsets(classes: Sequence[ClassInfo], reader: Any | None = None) -> list[Any]:
    """NLTK synsets of the classes: by synset name, else by wnid (WordNet 3.0 noun offset)."""
    from nltk.corpus.reader.wordnet import WordNetError as NLTKWordNetError

    for c in classes:  # before looking for the corpus, which could not help
        if c.synset is None and c.wnid is None:
            raise WordNetError(
                f"class {c.label} ({c.name}) has no WordNet synset or wnid; the semantic "
                "analysis needs a WordNet noun for every class"
            )
    reader = wordnet_reader() if reader is None else reader
    out = []
    for c in classes:
        try:
            if c.synset is not None:
                syn = reader.synset(c.synset)
            else:
                syn = reader.synset_from_pos_and_offset("n", wnid_offset(str(c.wnid)))
        except (NLTKWordNetError, ValueError, LookupError) as e:
            raise WordNetError(
                f"class {c.label} ({c.name}): {c.synset or c.wnid} is not in WordNet 3.0 ({e}); "
                "fix the run's classes table"
            ) from e
        if c.synset is not None and c.wnid is not None and f"n{syn.offset():08d}" != c.wnid:
            raise WordNetError(
                f"class {c.label} ({c.name}): synset {c.synset} is n{syn.offset():08d}, not wnid "
                f"{c.wnid}; fix the run's classes table"
            )
        if syn.pos() != "n":
            raise WordNetError(f"class {c.label} ({c.name}): {syn.name()} is not a noun")
        out.append(syn)
    return out


def class_similarity(
    classes: Sequence[ClassInfo], measure: str = "wup", *, reader: Any | None = None
) -> np.ndarray:
    """The (C, C) similarity of the classes' synsets under ``measure``, computed from the
    corpus (:func:`wordnet_reader` unless ``reader`` is given).

    Row/column i is ``classes[i]``. The diagonal is :data:`DIAGONAL` (the measure's maximum)
    for same-class pairs; off-diagonal entries are NLTK's values, symmetric by construction.
    """
    _check_measure(measure)
    synsets = class_synsets(classes, reader)
    n = len(synsets)
    out = np.empty((n, n), dtype=np.float64)
    for i in range(n):
        out[i, i] = DIAGONAL[measure]
        for j in range(i + 1, n):
            value = getattr(synsets[i], f"{measure}_similarity")(synsets[j])
            if value is None:
                raise WordNetError(
                    f"no {measure} similarity between {synsets[i].name()} and "
                    f"{synsets[j].name()}; use another --measure"
                )
            out[i, j] = out[j, i] = float(value)
    return out


# Shipped tables: hardstat/data/<name>_wordnet.csv, one row per unordered class pair (a <= b).
SHIPPED: dict[str, tuple[ClassInfo, ...]] = {
    "cifar10": CIFAR10_CLASSES,
    "cifar100": CIFAR100_CLASSES,
}
_CSV_FIELDS = ("label_a", "label_b", "synset_a", "synset_b", *MEASURES)


def data_dir() -> Path:
    """The package's data directory (``hardstat/data``)."""
    return Path(__file__).resolve().parent.parent / "data"


def shipped_table_path(name: str, directory: Path | None = None) -> Path:
    return (directory or data_dir()) / f"{name}_wordnet.csv"


def write_shipped_tables(directory: Path | None = None, *, reader: Any | None = None) -> list[Path]:
    """Compute the CIFAR-10 and CIFAR-100 tables from the corpus and write them (the
    ``hardstat wordnet tables`` command). Values are written with full float64 precision."""
    directory = directory or data_dir()
    directory.mkdir(parents=True, exist_ok=True)
    reader = wordnet_reader() if reader is None else reader
    paths = []
    for name, classes in SHIPPED.items():
        mats = {m: class_similarity(classes, m, reader=reader) for m in MEASURES}
        path = shipped_table_path(name, directory)
        tmp = path.with_suffix(".csv.tmp")
        with tmp.open("w", newline="") as f:
            w = csv.writer(f, lineterminator="\n")
            w.writerow(_CSV_FIELDS)
            for i, a in enumerate(classes):
                for j in range(i, len(classes)):
                    b = classes[j]
                    w.writerow(
                        [
                            a.label,
                            b.label,
                            a.synset,
                            b.synset,
                            *(repr(float(mats[m][i, j])) for m in MEASURES),
                        ]
                    )
        tmp.replace(path)
        paths.append(path)
    return paths


_SHIPPED_CACHE: dict[str, dict[str, np.ndarray]] = {}


def load_shipped_table(name: str) -> dict[str, np.ndarray]:
    """A shipped table as ``{measure: (C, C) matrix}`` in the label order of
    ``SHIPPED[name]``. Raises WordNetError when the file is missing or does not match."""
    if name in _SHIPPED_CACHE:
        return _SHIPPED_CACHE[name]
    classes = SHIPPED[name]
    path = shipped_table_path(name)
    n = len(classes)
    mats = {m: np.full((n, n), np.nan) for m in MEASURES}
    try:
        with path.open(newline="") as f:
            rows = list(csv.DictReader(f))
    except OSError as e:
        raise WordNetError(
            f"the shipped table {path} is missing ({e.strerror}); reinstall hardstat or "
            "regenerate it with `hardstat wordnet tables`"
        ) from e
    for row in rows:
        i, j = int(row["label_a"]), int(row["label_b"])
        if not (0 <= i < n and 0 <= j < n) or (row["synset_a"], row["synset_b"]) != (
            classes[i].synset,
            classes[j].synset,
        ):
            raise WordNetError(
                f"the shipped table {path} does not match hardstat.classes; regenerate it with "
                "`hardstat wordnet tables`"
            )
        for m in MEASURES:
            mats[m][i, j] = mats[m][j, i] = float(row[m])
    if any(np.isnan(v).any() for v in mats.values()):
        raise WordNetError(
            f"the shipped table {path} is incomplete; regenerate it with `hardstat wordnet tables`"
        )
    _SHIPPED_CACHE[name] = mats
    return mats


def _matches(run_class: ClassInfo, known: ClassInfo) -> bool:
    if run_class.synset is None and run_class.wnid is None:
        return False
    return (run_class.synset in (None, known.synset)) and (run_class.wnid in (None, known.wnid))


def shipped_similarity(classes: Sequence[ClassInfo], measure: str) -> tuple[np.ndarray, str] | None:
    """The (C, C) matrix from a shipped table when every class is one of that table's classes
    (matched by synset and wnid; e.g. CIFAR-10 or a subset of it), with the table's name;
    else None."""
    _check_measure(measure)
    for name, known in SHIPPED.items():
        by_synset = {k.synset: k.label for k in known}
        by_wnid = {k.wnid: k.label for k in known}
        index = []
        for c in classes:
            k = by_synset.get(c.synset) if c.synset is not None else by_wnid.get(c.wnid)
            if k is None or not _matches(c, known[k]):
                break
            index.append(k)
        else:
            matrix = load_shipped_table(name)[measure]
            idx = np.asarray(index, dtype=np.intp)
            return matrix[np.ix_(idx, idx)].copy(), name
    return None


@dataclass(frozen=True)
class ClassSimilarity:
    """A class-by-class similarity matrix and where it came from."""

    measure: str
    matrix: np.ndarray  # (C, C), row/column i = the i-th class given
    source: str  # "shipped table cifar10", "WordNet corpus at ...", or "given"


def similarity_for_classes(classes: Sequence[ClassInfo], measure: str = "wup") -> ClassSimilarity:
    """The class similarity under ``measure``: from a shipped table when the classes are
    CIFAR-10/100 classes (no corpus needed), else computed from the WordNet corpus; a missing
    corpus raises WordNetError with install instructions."""
    shipped = shipped_similarity(classes, measure)
    if shipped is not None:
        matrix, name = shipped
        return ClassSimilarity(measure, matrix, f"shipped table {name}")
    return ClassSimilarity(
        measure, class_similarity(classes, measure), f"WordNet corpus at {find_wordnet()}"
    )
