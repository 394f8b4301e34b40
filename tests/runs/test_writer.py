"""RunWriter takes the caller's lock, not a process-wide record of held folders: before, any RunWriter in a
process that held a folder's lock skipped the folder check and the lock, and truncated the holder's samples."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mllm_audit.errors import AuditError
from mllm_audit.runs.writer import RunWriter
from mllm_audit.util.folders import RunLock


def test_a_second_writer_in_the_same_process_is_refused(tmp_path: Path) -> None:
    run = tmp_path / "run"
    with RunWriter(run, "first") as first:
        first.append([{"item_id": "a"}])
        with pytest.raises(AuditError, match="already holds a run|is being written by another run"):
            RunWriter(run, "second")
        first.append([{"item_id": "b"}])
    lines = [json.loads(x) for x in (run / "samples.jsonl").read_text().splitlines()]
    assert [x["item_id"] for x in lines] == ["a", "b"]  # the first writer's samples, whole


def test_the_callers_own_lock_lets_its_writer_in(tmp_path: Path) -> None:
    """Control: a command that locked (and checked) its folder passes its lock; a lock on another folder,
    or one already released, is a programming error."""
    run = tmp_path / "run"
    lock = RunLock(run, "fix").acquire()
    try:
        with RunWriter(run, "mine", lock=lock) as w:
            w.append([{"item_id": "a"}])
        with pytest.raises(ValueError, match="not held on this folder"):
            RunWriter(tmp_path / "other", "x", lock=lock)
    finally:
        lock.release()
    with pytest.raises(ValueError, match="not held on this folder"):
        RunWriter(run, "late", lock=lock)
    assert (run / "samples.jsonl").read_text().count("\n") == 1


def test_a_second_writer_of_an_empty_held_folder_meets_the_lock(tmp_path: Path) -> None:
    """Before the first writer has written anything, the folder check passes: the lock refuses the second."""
    run = tmp_path / "run"
    lock = RunLock(run, "gen-scan").acquire()
    try:
        with pytest.raises(AuditError, match="is being written by another run"):
            RunWriter(run, "second")
    finally:
        lock.release()
