"""Feedback when output is piped (CI logs): progress lines with count, rate and time left, a line for
each long phase without steps, and the run folder named at the start."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def _cli(args: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[2]), **env}
    return subprocess.run(
        [sys.executable, "-m", "mllm_audit.cli", *args], capture_output=True, text=True, env=full, timeout=300
    )


def test_piped_fix_reports_phases_and_progress(tmp_path: Path) -> None:
    out = tmp_path / "fix"
    p = _cli(["fix", "--model", "toy", "--limit", "3", "-o", str(out)], MLLM_AUDIT_PROGRESS_EVERY="0")
    assert p.returncode == 0, p.stderr
    lines = p.stderr.splitlines()
    assert any(x.startswith("loading toy (blip2) on cpu") for x in lines)
    assert any(x.startswith("scoring the unedited model") for x in lines)
    assert any(x.startswith("fix: 3 edits with ft-l (single) -> ") and str(out) in x for x in lines)
    steps = [x for x in lines if x.startswith("editing (ft-l): ")]
    assert [x.split()[2] for x in steps] == ["1/3", "2/3", "3/3"]
    assert all("/s," in x and "s left" in x for x in steps)


def test_quiet_and_default_interval_print_no_progress_lines(tmp_path: Path) -> None:
    """The negative control: with -q there is no progress line; with the default 10 s interval a
    seconds-long run prints only its last line."""
    p = _cli(["scan", "--limit", "8", "-q", "-o", str(tmp_path / "a")])
    assert p.returncode == 0 and "scoring:" not in p.stderr
    p = _cli(["scan", "--limit", "8", "-o", str(tmp_path / "b")])
    assert p.returncode == 0
    assert [x for x in p.stderr.splitlines() if x.startswith("scoring:")] == [
        x for x in p.stderr.splitlines() if x.startswith("scoring:") and " 16/16 " in x
    ]
