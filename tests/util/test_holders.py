"""One classifier of existing folders for both guards (util/holders.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mllm_audit.errors import AuditError
from mllm_audit.util.folders import check_run_folder
from mllm_audit.util.holders import folder_kind
from mllm_audit.util.outputs import holder_kind, refuse_inside

CASES = {
    "run-results": (["results.json"], "run"),
    "run-samples-only": (["samples.jsonl"], "run"),  # a run killed before its results: was a 'suite' to one guard
    "state": (["state.safetensors", "config.json"], "editor-state"),
    "checkpoint": (["checkpoint.pt"], "editor-state"),
    "model": (["config.json", "model.safetensors"], "model"),
    "suite": (["items.jsonl", "toy.yaml"], "suite"),
    "files": (["notes.txt"], "files"),
    "lock-only": ([".mllm-audit.lock"], None),
}


def _make(tmp_path: Path, name: str, files: list[str]) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    for f in files:
        (folder / f).write_text("{}")
    return folder


@pytest.mark.parametrize("name", sorted(CASES))
def test_both_guards_read_one_classifier(tmp_path: Path, name: str) -> None:
    files, kind = CASES[name]
    folder = _make(tmp_path, name, files)
    assert folder_kind(folder) == kind
    sealed = kind in ("run", "model", "editor-state")
    assert holder_kind(folder) == (kind.replace("-", " ") if sealed else None)
    inside = folder / "out.html"
    if sealed:
        with pytest.raises(AuditError, match="writes nothing into"):
            refuse_inside(inside, "--html")
    else:
        refuse_inside(inside, "--html")  # a suite or a user's folder may receive a new file
    if kind in ("model", "editor-state", "suite", "files"):
        with pytest.raises(AuditError):
            check_run_folder(folder, "scan", resume=True)
    elif kind is None:
        check_run_folder(folder, "scan", resume=False)


def test_run_killed_before_results_is_a_run_for_the_run_guard(tmp_path: Path) -> None:
    """The run guard names it a run (resume says whose), not a suite; a suite folder stays a suite."""
    run = _make(tmp_path, "killed", ["samples.jsonl"])
    with pytest.raises(AuditError, match="already holds a run"):
        check_run_folder(run, "scan", resume=False)
    suite = _make(tmp_path, "suite", ["items.jsonl"])
    with pytest.raises(AuditError, match="holds a suite"):
        check_run_folder(suite, "scan", resume=False)
