"""WordNet corpora for tests: Debian's database when installed, a shared test corpus, or none."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from hardstat import corpus

DEBIAN = Path("/usr/share/wordnet")
HAVE_DEBIAN = (DEBIAN / "data.noun").is_file()
NO_DEBIAN = "no /usr/share/wordnet (apt-get install wordnet-base wordnet-sense-index)"


def use_test_corpus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """A WordNet for the tests: the one NLTK finds, else a copy of Debian's under the session's
    temporary directory (shared by test modules, so the reader is built once); else skip."""
    if corpus.wordnet_available():
        yield
        return
    if not HAVE_DEBIAN:
        pytest.skip(f"no WordNet corpus for NLTK and {NO_DEBIAN}")
    root = tmp_path_factory.getbasetemp() / "nltk_data"
    if not (root / "corpora" / "wordnet").is_dir():
        corpus.install_wordnet(DEBIAN, root, verify=False)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NLTK_DATA", str(root))
        yield


def hide_corpus(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Nowhere to find WordNet: empty nltk.data.path, no NLTK_DATA, a fresh HOME."""
    import nltk

    monkeypatch.setattr(nltk.data, "path", [])
    monkeypatch.delenv("NLTK_DATA", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
