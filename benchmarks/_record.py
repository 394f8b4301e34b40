"""`--record`: a benchmark's figures written to benchmarks/records/NAME.json for benchmarks/doc_tables.py.

A record holds what ran and where: the exact command (with OMP_NUM_THREADS when set), the thread count,
the load averages before and after (the CPU is shared: figures re-measured under another load differ),
the torch version, the date, and the figures as measured. Nothing else writes a record, so no number
in a rendered table was typed by hand.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RECORDS = ROOT / "benchmarks" / "records"


def loadavg() -> list[float]:
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


def add_record_option(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--record", action="store_true", help="write benchmarks/records/<script>.json for doc_tables.py")


class Recorder:
    """Start it before the work (load average then), `write` the figures after."""

    def __init__(self, name: str, threads: int | None) -> None:
        """threads: what the script set (None: the children's OMP_NUM_THREADS, when given)."""
        if threads is None and os.environ.get("OMP_NUM_THREADS", "").isdigit():
            threads = int(os.environ["OMP_NUM_THREADS"])
        self.name, self.threads, self.load_start, self.t0 = name, threads, loadavg(), time.time()

    def command(self) -> str:
        script = Path(sys.argv[0]).resolve()
        rel = script.relative_to(ROOT) if script.is_relative_to(ROOT) else script
        env = f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']} " if "OMP_NUM_THREADS" in os.environ else ""
        return env + shlex.join(["python", str(rel), *sys.argv[1:]])

    def write(self, figures: dict[str, Any]) -> Path:
        import torch

        rec = {"command": self.command(), "threads": self.threads, "load_average": {"start": self.load_start,
               "end": loadavg()}, "cpus": os.cpu_count(), "torch": torch.__version__,
               "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(self.t0)),
               "wall_s": round(time.time() - self.t0, 1), "figures": figures}
        RECORDS.mkdir(parents=True, exist_ok=True)
        path = RECORDS / f"{self.name}.json"
        path.write_text(json.dumps(rec, indent=1) + "\n", encoding="utf-8")
        print(f"recorded -> {path.relative_to(ROOT)}")
        return path
