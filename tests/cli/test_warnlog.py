"""Third-party warnings go to the log file, not the console (issue 25: `fix --editor bpo` printed a
kernels warning, a FutureWarning and a UserWarning between its own lines)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

CODE = """
import logging, sys, warnings
from mllm_audit.cli.warnlog import count, route_warnings_to_log
if sys.argv[1] == "routed":
    route_warnings_to_log()
warnings.warn("deprecated thing", FutureWarning)
logging.getLogger("bitsandbytes.backends.cpu.ops").warning("Failed to load CPU gemm_4bit_forward")
print(count())
"""


@pytest.mark.parametrize("mode", ["routed", "plain"])
def test_library_warnings_reach_the_log_not_the_console(tmp_path: Path, mode: str) -> None:
    log = tmp_path / "w.log"
    env = {"MLLM_AUDIT_LOG": str(log), "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    out = subprocess.run([sys.executable, "-c", CODE, mode], capture_output=True, text=True, env=env, check=True)
    if mode == "routed":
        assert out.stderr == "" and out.stdout.strip() == "2"
        text = log.read_text()
        assert "FutureWarning: deprecated thing" in text and "gemm_4bit_forward" in text
    else:  # negative control: Python's defaults print both on the console
        assert "deprecated thing" in out.stderr and "gemm_4bit_forward" in out.stderr and not log.exists()
