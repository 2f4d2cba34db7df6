"""The presentation layer: p-values to the precision the model supports, dashes, JSON values."""

from __future__ import annotations

import math

import numpy as np

from hardstat import display


def test_p_text_analytic() -> None:
    assert display.p_text(0.0123) == "p = 0.012"
    assert display.p_text(0.5) == "p = 0.5"
    assert display.p_text(3.14e-5) == "p = 3.1e-05"
    assert display.p_text(1e-300) == "p < 1e-16"
    assert display.p_text(0.0) == "p < 1e-16"
    assert display.p_text(float("nan")) == "p = n/a"
    assert display.p_text(None) == "p = n/a"


def test_p_text_permutation_never_below_its_resolution() -> None:
    assert display.p_text(0.25, permutations=1000) == "p = 0.250 (1,000 permutations)"
    # 1 / 1001 is the smallest permutation p with the +1 correction
    assert display.p_text(1 / 1001, permutations=1000) == "p = 1.0e-03 (1,000 permutations)"
    assert display.p_text(1e-9, permutations=99) == "p = 0.010 (99 permutations)"
    assert display.p_text(0.5, permutations=0) == "p = n/a"


def test_numbers_intervals_and_dashes() -> None:
    assert display.number(float("nan")) == display.DASH
    assert display.number(0.12345, ".2f") == "0.12"
    assert display.interval(0.1, 0.2, ".1f") == "[0.1, 0.2]"
    assert display.interval(0.1, None) == display.DASH
    assert display.estimate(0.05, 0.01, 0.09, ".2f") == "0.05 [0.01, 0.09]"
    assert display.estimate(0.05, math.nan, 0.09, ".2f") == "0.05"
    assert display.percent(0.4321) == "43.2%"
    assert display.points(0.0048) == "+0.48 pp"
    assert display.points(-0.01, 1) == "-1.0 pp"
    assert display.points(-0.25, unit=False) == "-25.00" and display.points(None) == display.DASH
    assert display.percent(0.05, 3, symbol=False) == "5.000"
    assert display.percent(math.nan, symbol=False) == display.DASH
    assert display.margin_points(0.01) == "±1.00 pp"


def test_scaled_numbers_intervals_and_estimates() -> None:
    # fractions shown in percent (or percentage points) without the unit, for table cells
    assert display.number(0.1234, ".2f", scale=100) == "12.34"
    assert display.number(None, ".2f", scale=100) == display.DASH
    assert display.interval(-0.01, 0.02, "+.2f", scale=100) == "[-1.00, +2.00]"
    assert display.estimate(0.005, -0.01, 0.02, "+.2f", scale=100) == "+0.50 [-1.00, +2.00]"
    assert display.estimate(0.005, None, None, "+.2f", scale=100) == "+0.50"
    assert display.estimate(math.nan, 0.0, 1.0, scale=100) == display.DASH


def test_p_text_with_a_log10_beyond_double_precision() -> None:
    assert display.p_text(0.0, log10=-310.4) == "p < 1e-16, log10 p = -310"
    assert display.p_text(0.0, log10=-2500.0) == "p < 1e-16, log10 p = -2,500"
    assert display.p_text(0.02, log10=math.log10(0.02)) == "p = 0.02"
    assert display.p_text(0.0, log10=math.nan) == "p < 1e-16"


def test_json_value() -> None:
    value = {"a": (1, float("inf")), "b": np.float32(0.5), "c": np.array([1, 2]), "d": [math.nan]}
    assert display.json_value(value) == {"a": [1, None], "b": 0.5, "c": [1, 2], "d": [None]}
