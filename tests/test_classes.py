"""hardstat.classes: which datasets are synthetic, and the sentence that says so."""

from __future__ import annotations

from hardstat.classes import is_synthetic, stand_in_note


def test_is_synthetic() -> None:
    assert is_synthetic("synthetic") and is_synthetic("synthetic:512")
    assert is_synthetic(" Synthetic:64")
    assert not is_synthetic("cifar10") and not is_synthetic("npz:/data/synthetic")
    assert not is_synthetic(None) and not is_synthetic("demo")


def test_stand_in_note_names_the_synthetic_runs() -> None:
    assert stand_in_note({"a": "cifar10", "b": None}) is None
    one = stand_in_note({"t": "synthetic:512"})
    assert one is not None and one.startswith("Synthetic stand-ins: run t trained on synthetic:512")
    assert "not what the images show" in one
    some = stand_in_note({"x": "synthetic:64", "y": "demo", "z": "synthetic:128"})
    assert some is not None
    assert some.startswith(
        "Synthetic stand-ins: runs x, z trained on synthetic:128 and synthetic:64"
    )
