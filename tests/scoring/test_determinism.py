"""Same command, same seed, on CPU: the same samples.jsonl byte for byte, apart from run_id."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from mllm_audit.cli import run


def _without_run_id(path: Path) -> list[str]:
    lines = []
    for line in path.read_text(encoding="utf-8").splitlines():
        rec = json.loads(line)
        assert rec.pop("run_id")
        lines.append(json.dumps(rec))
    return lines


def test_same_command_same_seed_same_samples(tiny_blip2_dir: Path, tiny_suite: Path, tmp_path: Path) -> None:
    args = ["scan", "--model", str(tiny_blip2_dir), "--suite", str(tiny_suite), "--seed", "7", "--batch-size", "3",
            "-q"]
    assert run([*args, "--output", str(tmp_path / "a")]) == 0
    # The second run is another process with another hash seed: no dict/set order may leak into results.
    env = {**os.environ, "PYTHONHASHSEED": "12345", "HF_HUB_OFFLINE": "1"}
    subprocess.run([sys.executable, "-m", "mllm_audit.cli", *args, "--output", str(tmp_path / "b")], env=env,
                   check=True, capture_output=True, text=True)
    a, b = tmp_path / "a" / "samples.jsonl", tmp_path / "b" / "samples.jsonl"
    assert len(_without_run_id(a)) == 12
    assert _without_run_id(a) == _without_run_id(b)  # exact: every float printed identically
    ra, rb = (json.loads((p / "results.json").read_text()) for p in (tmp_path / "a", tmp_path / "b"))
    assert ra["run_id"] != rb["run_id"] and ra["summary"] == rb["summary"] and ra["seed"] == rb["seed"] == 7
