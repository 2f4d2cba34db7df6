"""How hardstat writes numbers for people and for JSON: one place, used by the CLI tables, the
report and the JSON writers (no heavy imports).

* p-values are shown only to the precision the model supports: an analytic p below
  :data:`P_FLOOR` prints as ``p < 1e-16`` (its log10 is kept in JSON), a permutation p never
  below its resolution ``1 / (permutations + 1)``;
* a missing value (None, NaN) prints as an em dash and is ``null`` in JSON;
* intervals print as ``[lo, hi]``, differences in accuracy as signed percentage points.
"""

from __future__ import annotations

import math
from typing import IO, Any

P_FLOOR = 1e-16
"""Analytic p-values below this are displayed as ``p < 1e-16``: double precision, the tails of
the reference distributions and the models' assumptions support no finer statement."""

DASH = "—"


def missing(x: Any) -> bool:
    """True for None and non-finite floats."""
    return x is None or (isinstance(x, float) and not math.isfinite(x))


def p_text(
    p: float | None,
    *,
    permutations: int | None = None,
    floor: float = P_FLOOR,
    log10: float | None = None,
) -> str:
    """``p = 0.012``, ``p = 3.1e-05``, ``p < 1e-16``; for a permutation p (``permutations``
    given) ``p = 0.001 (1000 permutations)`` and never a value below ``1 / (permutations + 1)``.
    ``log10``: the p-value's log10 where it was computed beyond double precision; below the
    floor it is shown too (``p < 1e-16, log10 p = -310``)."""
    if missing(p):
        return "p = n/a"
    assert p is not None
    if permutations is not None:
        if permutations <= 0:
            return "p = n/a"
        shown = max(p, 1.0 / (permutations + 1))
        value = f"p = {shown:.3f}" if shown >= 0.001 else f"p = {shown:.1e}"
        return f"{value} ({permutations:,} permutations)"
    if log10 is not None and not missing(log10) and log10 < math.log10(floor):
        return f"p < {floor:.0e}, log10 p = {log10:,.0f}"
    if p < floor:
        return f"p < {floor:.0e}"
    return f"p = {p:.2g}" if p >= 0.001 else f"p = {p:.1e}"


def _scaled(x: float | None, scale: float) -> float | None:
    return None if missing(x) else x * scale  # type: ignore[operator]


def number(x: float | None, fmt: str = ".3f", *, scale: float = 1.0) -> str:
    """``x * scale`` formatted with ``fmt``, or the dash when missing (``scale=100``: a
    fraction in percent, or a difference of fractions in percentage points, without the
    unit, for table cells whose header names it)."""
    x = _scaled(x, scale)
    return DASH if x is None else format(x, fmt)


def interval(lo: float | None, hi: float | None, fmt: str = ".3f", *, scale: float = 1.0) -> str:
    """``[lo, hi]`` (each times ``scale``), or the dash when either end is missing."""
    lo, hi = _scaled(lo, scale), _scaled(hi, scale)
    if lo is None or hi is None:
        return DASH
    return f"[{format(lo, fmt)}, {format(hi, fmt)}]"


def estimate(
    x: float | None, lo: float | None, hi: float | None, fmt: str = ".3f", *, scale: float = 1.0
) -> str:
    """``x [lo, hi]``: an effect size with its interval (each times ``scale``); the point
    alone when the interval is missing, the dash when the point is."""
    if missing(x):
        return DASH
    ci = interval(lo, hi, fmt, scale=scale)
    point = number(x, fmt, scale=scale)
    return point if ci == DASH else f"{point} {ci}"


def percent(x: float | None, digits: int = 1, *, symbol: bool = True) -> str:
    """A fraction as a percentage, ``0.4321 -> 43.2%`` (``symbol=False``: ``43.2``, for a
    column whose header says %)."""
    text = number(x, f".{digits}f", scale=100)
    return text if text == DASH or not symbol else f"{text}%"


def points(x: float | None, digits: int = 2, *, unit: bool = True) -> str:
    """A difference of fractions in signed percentage points, ``0.0048 -> +0.48 pp``
    (``unit=False``: ``+0.48``)."""
    text = number(x, f"+.{digits}f", scale=100)
    return text if text == DASH or not unit else f"{text} pp"


def margin_points(x: float | None, digits: int = 2) -> str:
    """A symmetric margin of fractions in percentage points, ``0.01 -> ±1.00 pp``."""
    text = number(x, f".{digits}f", scale=100)
    return text if text == DASH else f"±{text} pp"


def json_value(value: Any) -> Any:
    """A value made JSON-ready: non-finite floats -> None, tuples -> lists, NumPy scalars and
    arrays -> Python numbers and lists (recursively through lists and dicts)."""
    if hasattr(value, "tolist") and not isinstance(value, str):  # NumPy scalar or array
        value = value.tolist()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, tuple | list):
        return [json_value(v) for v in value]
    if isinstance(value, dict):
        return {str(k): json_value(v) for k, v in value.items()}
    return value


_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
_INVISIBLE = {0x2028, 0x2029, 0x061C, 0x200E, 0x200F} | set(range(0x202A, 0x202F))
_INVISIBLE |= set(range(0x2066, 0x206A))


def printable(text: object) -> str:
    """Text that is safe to print on a terminal: control characters (ESC, CR, newline, DEL,
    C1 controls) and bidirectional overrides are shown as escapes (``\\x1b``, ``\\n``,
    ``\\u202e``), so data from a run (class or run names, query results) can never move the
    cursor, rewrite earlier output or change the terminal's state."""
    s = str(text)
    if s.isprintable():
        return s
    out = []
    for ch in s:
        code = ord(ch)
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif code < 0x20 or 0x7F <= code < 0xA0:
            out.append(f"\\x{code:02x}")
        elif code in _INVISIBLE:
            out.append(f"\\u{code:04x}")
        else:
            out.append(ch)
    return "".join(out)


class SafeStream:
    """A text stream (stderr) whose writes never raise: once the stream breaks (its reader is
    gone, the file system fails) everything written to it is dropped. Progress bars and
    messages go through it, so a dead ``tee`` or ``2>&1 | head`` never stops training."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream
        self.broken = False

    def write(self, text: str) -> int:
        if not self.broken:
            try:
                return self._stream.write(text)
            except (OSError, ValueError):
                self.broken = True
        return len(text)

    def flush(self) -> None:
        if not self.broken:
            try:
                self._stream.flush()
            except (OSError, ValueError):
                self.broken = True

    def isatty(self) -> bool:
        try:
            return not self.broken and self._stream.isatty()
        except (OSError, ValueError):
            return False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)
