#!/usr/bin/env python3
"""Screenshot an mllm-audit HTML report with headless Chromium, to eyeball the layout in review.

Usage: python scripts/screenshot_report.py REPORT.html OUT.png [--width 1200] [--height 3000]

Needs a `chromium` (Debian package) or `google-chrome` binary on PATH; nothing is downloaded.
The report is self-contained, so Chromium needs no network.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome")


def find_browser() -> str:
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    raise SystemExit(f"no headless browser found (tried {', '.join(BROWSERS)}); apt-get install chromium")


def screenshot(html: Path, out: Path, width: int = 1200, height: int = 3000, timeout: float = 60.0) -> Path:
    """Render `html` to `out` (PNG); a throwaway profile keeps runs independent."""
    if not html.is_file():
        raise SystemExit(f"not found: {html}")
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as profile:
        cmd = [
            find_browser(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
            f"--user-data-dir={profile}", f"--window-size={width},{height}",
            f"--screenshot={out.resolve()}", html.resolve().as_uri(),
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0 or not out.is_file():
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise SystemExit(f"chromium failed (exit {proc.returncode}): {' | '.join(tail)}")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("html", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--width", type=int, default=1200)
    ap.add_argument("--height", type=int, default=3000)
    args = ap.parse_args(argv)
    print(screenshot(args.html, args.out, args.width, args.height))
    return 0


if __name__ == "__main__":
    sys.exit(main())
