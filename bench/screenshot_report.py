"""Screenshot of a ``hardstat report`` in headless Chromium (run on demand, to look at it).

Builds the report of the given runs (unless ``--html`` names an existing one), then renders it
offline in headless Chromium (``apt-get install -y chromium``) and saves a PNG. Prints the
report's size, how long building and rendering took, and the paths written.

    python bench/screenshot_report.py /tmp/real-sweep --out /tmp/report.png
    python bench/screenshot_report.py --html report.html --out report.png --height 6000

Chromium runs with networking off (``--host-resolver-rules`` maps every host to nothing), so a
report that tried to load a network resource would show it broken.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome")


def find_browser() -> str:
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    sys.exit("no Chromium found; install it with `apt-get install -y chromium`")


def screenshot(html: Path, png: Path, width: int, height: int) -> float:
    """Render ``html`` to ``png`` in headless Chromium; returns seconds taken."""
    cmd = [
        find_browser(),
        "--headless",
        "--disable-gpu",
        "--no-sandbox",
        "--hide-scrollbars",
        "--host-resolver-rules=MAP * ~NOTFOUND",
        f"--screenshot={png}",
        f"--window-size={width},{height}",
        html.resolve().as_uri(),
    ]
    start = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="*", help="runs or sweeps to report on")
    parser.add_argument("--html", type=Path, help="an existing report to render instead")
    parser.add_argument("--out", type=Path, default=Path("report.png"), help="PNG to write")
    parser.add_argument("--width", type=int, default=1400)
    parser.add_argument("--height", type=int, default=4000)
    args = parser.parse_args()
    if args.html is None and not args.runs:
        parser.error("give runs to report on, or --html REPORT")

    html = args.html
    if html is None:
        from hardstat.report import build_report

        html = Path(tempfile.mkdtemp(prefix="hardstat-report-")) / "report.html"
        start = time.perf_counter()
        build_report(args.runs, out=html, progress=lambda m: print(m, file=sys.stderr))
        print(f"build_report: {time.perf_counter() - start:.1f} s -> {html}")
    size = html.stat().st_size
    print(f"report size: {size / 1e6:.2f} MB")
    seconds = screenshot(html, args.out, args.width, args.height)
    print(f"chromium screenshot: {seconds:.1f} s -> {args.out} ({args.width}x{args.height})")


if __name__ == "__main__":
    main()
