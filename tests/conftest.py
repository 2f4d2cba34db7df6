"""Fixtures shared by the test modules: a WordNet corpus NLTK finds, or none."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from wordnet_corpus import hide_corpus, use_test_corpus


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """A WordNet 3.0 corpus NLTK finds (skips without one)."""
    yield from use_test_corpus(tmp_path_factory)


@pytest.fixture
def no_corpus(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Nowhere to find WordNet."""
    hide_corpus(monkeypatch, tmp_path)
