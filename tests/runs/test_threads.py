"""`scan --threads N`: torch runs N threads for the run, the record says how many, bad N exits 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from mllm_audit.cli import run


@pytest.mark.parametrize("n", [1, 2])
def test_threads_are_used_and_recorded(tiny_blip2_dir: Path, tiny_suite: Path, tmp_path: Path, n: int) -> None:
    before = torch.get_num_threads()
    out = tmp_path / "run"
    assert run(["scan", "--model", str(tiny_blip2_dir), "--suite", str(tiny_suite), "--output", str(out), "-q",
                "--threads", str(n)]) == 0
    assert json.loads((out / "results.json").read_text())["options"]["threads"] == n
    assert torch.get_num_threads() == before  # given back after the run


@pytest.mark.parametrize("bad", ["0", "-3"])
def test_bad_threads_exit_2(tiny_blip2_dir: Path, tiny_suite: Path, tmp_path: Path,
                            capsys: pytest.CaptureFixture[str], bad: str) -> None:
    assert run(["scan", "--model", str(tiny_blip2_dir), "--suite", str(tiny_suite), "--output",
                str(tmp_path / "r"), "-q", "--threads", bad]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--threads" in err
    assert not (tmp_path / "r").exists()
