"""`fix --resume` (issue 25): a fix run killed with SIGKILL keeps the edits it measured, and the resumed
run equals an uninterrupted one; a resume with other options is refused naming what differs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mllm_audit.cli import run

ARGS = ["fix", "--limit", "5", "-q"]


def _edits(run_dir: Path) -> list[dict]:
    return [{k: v for k, v in json.loads(x).items() if k != "run_id"}
            for x in (run_dir / "edits.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def killed_and_whole(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("fix-resume")
    assert run([*ARGS, "-o", str(base / "whole")]) == 0
    import torch

    # The same thread count as this process: float sums are ordered by it, and the edits compare exactly.
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
           "OMP_NUM_THREADS": str(torch.get_num_threads())}
    proc = subprocess.Popen([sys.executable, "-m", "mllm_audit.cli", *ARGS, "-o", str(base / "killed")], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    edits = base / "killed" / "edits.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if edits.is_file() and len(edits.read_text().splitlines()) >= 2:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.05)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    return base / "killed", base / "whole"


def test_a_killed_fix_keeps_its_edits_and_refuses_a_plain_rerun(killed_and_whole: tuple[Path, Path],
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    killed, _ = killed_and_whole
    kept = len(_edits(killed))
    assert 2 <= kept < 5
    assert json.loads((killed / "results.json").read_text())["complete"] is False
    capsys.readouterr()
    assert run([*ARGS, "-o", str(killed)]) == 2
    assert "pass --resume to continue it" in capsys.readouterr().err


def test_a_resume_with_other_settings_is_refused(killed_and_whole: tuple[Path, Path],
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """Negative control of the identity check: the same folder, one setting changed."""
    killed, _ = killed_and_whole
    before = (killed / "edits.jsonl").read_text()
    capsys.readouterr()
    assert run([*ARGS, "--set", "steps=3", "--resume", "-o", str(killed)]) == 2
    err = capsys.readouterr().err
    assert "cannot resume" in err and "editor" in err
    assert (killed / "edits.jsonl").read_text() == before  # nothing touched
    assert run([*ARGS, "--split", "val", "--resume", "-o", str(killed)]) == 2  # other items: the selection
    assert "--split val" in capsys.readouterr().err
    assert (killed / "edits.jsonl").read_text() == before
    assert run(["fix", "--mode", "sequential", "--resume", "-o", str(killed)]) == 2
    assert "sequential edits build on one another" in capsys.readouterr().err


def test_the_resumed_run_equals_an_uninterrupted_one(killed_and_whole: tuple[Path, Path]) -> None:
    killed, whole = killed_and_whole
    kept = len(_edits(killed))
    assert run([*ARGS, "--resume", "-o", str(killed)]) == 0
    assert _edits(killed) == _edits(whole)
    a, b = (json.loads((d / "results.json").read_text()) for d in (killed, whole))
    assert a["complete"] and a["metrics"] == b["metrics"] and a["touched_parameters"] == b["touched_parameters"]
    assert a["resumed"] == {"kept_edits": kept}
    assert len({json.loads(x)["run_id"] for x in (killed / "edits.jsonl").read_text().splitlines()}) == 1
