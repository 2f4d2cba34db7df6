"""Difficulty bands of negatives: parsing specs and the exact count rule (no torch).

A band says which of a query's K queue negatives, ranked by similarity (rank 1 = most similar =
hardest), enter the loss. Specs, in percent of the queue:

``0-100``       all negatives (plain MoCo)
``0-5``         the hardest 5%
``5-100``       the easiest 95%
``0.1-100``     all but the hardest 0.1%
``0-5,50-55``   a union of ranges
``random:5``    5% of the negatives drawn uniformly at random for each query (the control that
                separates "fewer negatives" from "harder negatives")
``random=5-100`` as many negatives as the band ``5-100`` keeps, drawn uniformly at random for
                each query: the count-matched control of any rank band (``random=0-5,50-55``
                matches a union; in a sweep's band list, ``random=0-5+50-55``)

Count rule: the range a-b keeps the ranks r with ``ceil(a*K/100) < r <= ceil(b*K/100)``, computed
in exact rational arithmetic. So ``0-5`` on K=4096 keeps ranks 1..205, ``5-100`` keeps 206..4096
and ``0.1-100`` keeps 6..4096. ``random:p`` keeps ``ceil(p*K/100)`` negatives, exactly as many as
``0-p``; ``random=BAND`` keeps exactly as many as BAND for every K. Overlapping ranges in a union
count once. ``random=0-p`` is the same band as ``random:p`` and is written that way.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from fractions import Fraction

from hardstat.errors import ConfigError

_NUMBER = r"(?:\d+(?:\.\d*)?|\.\d+)"
_RANGE = re.compile(rf"^\s*({_NUMBER})\s*-\s*({_NUMBER})\s*$")
_RANDOM = re.compile(rf"^\s*random\s*:\s*({_NUMBER})\s*$")
_MATCHED = re.compile(r"^\s*random\s*=(.*)$")

_HELP = (
    "use e.g. '0-5', '5-100', '0-5,50-55', 'random:5' or 'random=5-100' (percent of the queue, "
    "0 to 100)"
)


@dataclass(frozen=True)
class Band:
    """A parsed band: ranges of percent (lo, hi], a random fraction (``random:p``), or a random
    subset as large as the ranges would keep (``random=RANGES``, ``count_matched``). Immutable
    and hashable."""

    ranges: tuple[tuple[Fraction, Fraction], ...] = ()
    random_percent: Fraction | None = None
    count_matched: bool = False

    @property
    def is_random(self) -> bool:
        return self.random_percent is not None or self.count_matched

    @property
    def matched_band(self) -> Band:
        """The rank band whose count this band keeps: itself for a rank band, ``0-p`` for
        ``random:p``, BAND for ``random=BAND``."""
        if self.random_percent is not None:
            return Band(ranges=((Fraction(0), self.random_percent),))
        return Band(ranges=self.ranges)

    @property
    def is_all(self) -> bool:
        """True when every negative is kept for any K (the band ``0-100``)."""
        return not self.is_random and any(lo == 0 and hi == 100 for lo, hi in self.ranges)

    @property
    def spec(self) -> str:
        """Canonical spec string, e.g. ``0-5,50-55``, ``random:5`` or ``random=5-100``."""
        if self.random_percent is not None:
            return f"random:{_fmt(self.random_percent)}"
        ranges = ",".join(f"{_fmt(lo)}-{_fmt(hi)}" for lo, hi in self.ranges)
        return f"random={ranges}" if self.count_matched else ranges

    def rank_intervals(self, queue_size: int) -> tuple[tuple[int, int], ...]:
        """Kept ranks as disjoint, sorted half-open intervals ``(lo, hi]`` of 1-based ranks.

        Raises ConfigError for a random band (it keeps no fixed ranks).
        """
        if self.is_random:
            raise ConfigError(f"band {self.spec} keeps random negatives, not fixed ranks")
        return _intervals(self.ranges, queue_size)

    def kept_count(self, queue_size: int) -> int:
        """Exact number of negatives per query this band keeps out of ``queue_size``."""
        if self.random_percent is not None:
            return _cut(self.random_percent, queue_size)
        return sum(hi - lo for lo, hi in _intervals(self.ranges, queue_size))

    def kept_fraction(self, queue_size: int) -> float:
        return self.kept_count(queue_size) / queue_size

    def check(self, queue_size: int) -> None:
        """Raise ConfigError if the band keeps no negative out of ``queue_size``."""
        if self.kept_count(queue_size) == 0:
            raise ConfigError(
                f"band {self.spec} keeps no negative out of a queue of {queue_size}; "
                "widen the band or enlarge the queue"
            )


def _intervals(
    ranges: tuple[tuple[Fraction, Fraction], ...], queue_size: int
) -> tuple[tuple[int, int], ...]:
    """Ranges of percent as disjoint, sorted half-open intervals ``(lo, hi]`` of 1-based ranks."""
    cuts = sorted((_cut(lo, queue_size), _cut(hi, queue_size)) for lo, hi in ranges)
    merged: list[tuple[int, int]] = []
    for lo, hi in cuts:
        if hi <= lo:
            continue
        if merged and lo <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], hi))
        else:
            merged.append((lo, hi))
    return tuple(merged)


def _cut(percent: Fraction, queue_size: int) -> int:
    """ceil(percent * K / 100) in exact arithmetic."""
    return math.ceil(percent * queue_size / 100)


def _fmt(x: Fraction) -> str:
    if x.denominator == 1:
        return str(x.numerator)
    text = f"{float(x):.10f}".rstrip("0").rstrip(".")
    return text


def _percent(text: str, spec: str) -> Fraction:
    value = Fraction(text)
    if not 0 <= value <= 100:
        raise ConfigError(f"band {spec!r}: {text} is outside [0, 100]; {_HELP}")
    return value


def parse_band(spec: str) -> Band:
    """Parse a band spec; raise ConfigError with a one-line message on malformed input."""
    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError(f"empty band spec; {_HELP}")
    m = _RANDOM.match(spec)
    if m:
        pct = _percent(m.group(1), spec)
        if pct == 0:
            raise ConfigError(f"band {spec!r} keeps no negative; {_HELP}")
        return Band(random_percent=pct)
    m = _MATCHED.match(spec)
    if m:
        if not m.group(1).strip() or _MATCHED.match(m.group(1)) or _RANDOM.match(m.group(1)):
            raise ConfigError(
                f"malformed band {spec!r}: random= takes rank ranges, e.g. 'random=5-100'"
            )
        ranges = _ranges(m.group(1), spec)
        if len(ranges) == 1 and ranges[0][0] == 0:  # random=0-p keeps ceil(pK/100): random:p
            return Band(random_percent=ranges[0][1])
        return Band(ranges=ranges, count_matched=True)
    return Band(ranges=_ranges(spec, spec))


def _ranges(text: str, spec: str) -> tuple[tuple[Fraction, Fraction], ...]:
    ranges: list[tuple[Fraction, Fraction]] = []
    for part in re.split(r"[,+]", text):  # '+' also joins ranges, e.g. in sweep band lists
        m = _RANGE.match(part)
        if not m:
            raise ConfigError(f"malformed band {spec!r} (at {part.strip()!r}); {_HELP}")
        lo, hi = _percent(m.group(1), spec), _percent(m.group(2), spec)
        if hi <= lo:
            raise ConfigError(f"band {spec!r}: range {part.strip()} is empty (need lo < hi)")
        ranges.append((lo, hi))
    return tuple(sorted(ranges))
