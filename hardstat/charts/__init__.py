"""Charts: pure functions from a table (polars/Arrow) to an altair chart, and saving them.

Each analysis has its chart module (``charts.bands``, ``charts.consistency``,
``charts.semantic``). :func:`save_chart` writes HTML, PNG, SVG or Vega-Lite JSON by the file's
suffix, offline (PNG/SVG through vl-convert). altair is imported lazily by the chart modules.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hardstat.errors import HardstatError

FORMATS = (".html", ".png", ".svg", ".json")


def check_chart_path(path: Path) -> None:
    """Refuse a chart file whose suffix names no format (before any work is done)."""
    if Path(path).suffix.lower() not in FORMATS:
        raise HardstatError(
            f"cannot write a chart to {Path(path).name}: use a file ending in {', '.join(FORMATS)}"
        )


def save_chart(chart: Any, path: Path, *, scale: float = 2.0) -> Path:
    """Save an altair chart to ``path``; the suffix (.html, .png, .svg, .json) picks the format."""
    path = Path(path)
    suffix = path.suffix.lower()
    check_chart_path(path)
    from hardstat.runs import write_bytes_atomic, write_failed

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise write_failed(path.parent, e, "choose another path") from e
    if suffix == ".png":
        import vl_convert as vlc

        data = vlc.vegalite_to_png(chart.to_json(), scale=scale)
    elif suffix == ".svg":
        import vl_convert as vlc

        data = vlc.vegalite_to_svg(chart.to_json()).encode()
    elif suffix == ".json":
        data = chart.to_json().encode()
    else:
        data = chart.to_html(inline=True).encode()
    # written completely or not at all; a full disk keeps the previous file
    write_bytes_atomic(path, data, todo="write the chart again")
    return path
