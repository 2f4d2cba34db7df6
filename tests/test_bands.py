import math
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hardstat.bands import parse_band
from hardstat.errors import ConfigError


@pytest.mark.parametrize(
    ("spec", "k", "kept"),
    [
        ("0-5", 4096, 205),
        ("5-100", 4096, 3891),
        ("0.1-100", 4096, 4091),
        ("0-100", 4096, 4096),
        ("random:5", 4096, 205),
        ("random=5-100", 4096, 3891),
        ("random=0.1-100", 4096, 4091),
        ("random=0-5,50-55", 4096, 205 + (2253 - 2048)),
        ("0-5,50-55", 4096, 205 + (2253 - 2048)),
        ("0-5,3-10", 100, 10),  # overlapping ranges count once
        ("7-8", 100, 1),  # exact arithmetic: ceil(7) = 7, not 8
        ("0-0.01", 4096, 1),
    ],
)
def test_kept_counts_by_hand(spec: str, k: int, kept: int) -> None:
    assert parse_band(spec).kept_count(k) == kept


def test_rank_intervals_by_hand() -> None:
    assert parse_band("0-5").rank_intervals(4096) == ((0, 205),)
    assert parse_band("0.1-100").rank_intervals(4096) == ((5, 4096),)
    assert parse_band("50-55,0-5").rank_intervals(4096) == ((0, 205), (2048, 2253))
    assert parse_band("0-5,5-10").rank_intervals(100) == ((0, 10),)


def test_canonical_spec() -> None:
    assert parse_band(" 0 - 5 ").spec == "0-5"
    assert parse_band("50-55,0-5").spec == "0-5,50-55"
    assert parse_band("random:5").spec == "random:5"
    assert parse_band("0.1-100").spec == "0.1-100"
    assert parse_band("0-100").is_all and not parse_band("0-5").is_all
    assert parse_band(" random = 5 - 100").spec == "random=5-100"
    assert parse_band("random=50-55+0-5").spec == "random=0-5,50-55"
    # random=0-p keeps ceil(pK/100) for every K, as random:p does: it is the same band
    assert parse_band("random=0-5") == parse_band("random:5")
    assert parse_band("random=0-5").spec == "random:5"
    assert not parse_band("random=0-100").is_all
    for spec in ("0-5", "5-100", "0-5,50-55", "random:5", "random=5-100", "random=0-5,50-55"):
        band = parse_band(spec)
        assert parse_band(band.spec) == band and band.spec == spec


def test_matched_band() -> None:
    assert parse_band("random=5-100").matched_band == parse_band("5-100")
    assert parse_band("random:5").matched_band == parse_band("0-5")
    assert parse_band("50-55").matched_band == parse_band("50-55")
    assert parse_band("random=5-100").is_random and parse_band("random:5").is_random
    with pytest.raises(ConfigError, match="keeps random negatives"):
        parse_band("random=5-100").rank_intervals(100)


@pytest.mark.parametrize(
    "spec",
    [
        "",
        "5",
        "5-",
        "a-b",
        "0-5;5-10",
        "-1-5",
        "0-101",
        "5-5",
        "10-5",
        "random:",
        "random:0",
        "random:101",
        "0-5,",
        "random=",
        "random=5",
        "random=random:5",
        "random=random=5-10",
        "random=5-5",
        "random=0-101",
        "random:5,0-5",
    ],
)
def test_malformed_specs_rejected(spec: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse_band(spec)
    assert "\n" not in str(e.value)


def test_band_keeping_nothing_rejected() -> None:
    band = parse_band("0.01-0.02")
    with pytest.raises(ConfigError, match="keeps no negative"):
        band.check(4096)


percents = st.fractions(min_value=0, max_value=100, max_denominator=1000)


@given(k=st.integers(1, 70000), a=percents, b=percents)
def test_count_rule_matches_definition(k: int, a: Fraction, b: Fraction) -> None:
    lo, hi = sorted((a, b))
    if lo == hi:
        return
    spec = f"{float(lo):.10g}-{float(hi):.10g}"
    band = parse_band(spec)
    ((flo, fhi),) = band.ranges
    # slow reference: count r in 1..K with ceil(lo K/100) < r <= ceil(hi K/100)
    cut_lo, cut_hi = math.ceil(flo * k / 100), math.ceil(fhi * k / 100)
    assert band.kept_count(k) == sum(1 for r in range(1, k + 1) if cut_lo < r <= cut_hi)


@given(k=st.integers(1, 70000), a=percents, b=percents, c=percents, d=percents)
def test_count_matched_random_keeps_the_rank_bands_count(
    k: int, a: Fraction, b: Fraction, c: Fraction, d: Fraction
) -> None:
    lo1, hi1 = sorted((a, b))
    lo2, hi2 = sorted((c, d))
    if lo1 == hi1 or lo2 == hi2:
        return
    spec = f"{float(lo1):.10g}-{float(hi1):.10g},{float(lo2):.10g}-{float(hi2):.10g}"
    ranked, matched = parse_band(spec), parse_band(f"random={spec}")
    # slow reference: ranks r in 1..K inside either range by the count rule
    cuts = [(math.ceil(lo * k / 100), math.ceil(hi * k / 100)) for lo, hi in ranked.ranges]
    count = sum(1 for r in range(1, k + 1) if any(x < r <= y for x, y in cuts))
    assert matched.kept_count(k) == ranked.kept_count(k) == count
    assert matched.is_random and parse_band(matched.spec).spec == matched.spec


def test_plus_joins_ranges_like_comma() -> None:
    plus, comma = parse_band("50-55+0-5"), parse_band("0-5,50-55")
    assert plus == comma and plus.spec == "0-5,50-55"
    assert plus.kept_count(4096) == 205 + (2253 - 2048)
    assert parse_band(" 0-5 + 5-10 ").rank_intervals(100) == ((0, 10),)
    for bad in ("0-5+", "+0-5", "0-5++5-10", "random:5+0-5"):
        with pytest.raises(ConfigError, match="malformed band"):
            parse_band(bad)
