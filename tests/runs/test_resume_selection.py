"""Resuming with another --limit or --split is refused for that reason (it said "the suite's content
changed" before: the images of another selection differ)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mllm_audit.errors import AuditError
from mllm_audit.runs.scan import run_scan


def _killed(out: Path) -> None:
    res = json.loads((out / "results.json").read_text())
    res["complete"] = False
    (out / "results.json").write_text(json.dumps(res))


def test_resume_without_the_runs_limit_names_the_limit(tiny_adapter, tiny_suite: Path, tmp_path: Path) -> None:  # noqa: ANN001
    out = tmp_path / "run"
    run_scan(suite=str(tiny_suite), output=out, adapter=tiny_adapter, limit=4)
    _killed(out)
    with pytest.raises(AuditError, match=r"it was scanned with --limit 4, this run gives no --split or --limit; "
                                         r"resume with the same selection"):
        run_scan(suite=str(tiny_suite), output=out, adapter=tiny_adapter, resume=True)
    with pytest.raises(AuditError, match=r"with --limit 4, this run gives --limit 6"):
        run_scan(suite=str(tiny_suite), output=out, adapter=tiny_adapter, resume=True, limit=6)
    # Negative control: the same --limit resumes.
    res = run_scan(suite=str(tiny_suite), output=out, adapter=tiny_adapter, resume=True, limit=4)
    assert res.results["complete"] is True and res.results["resumed"] == {"reused_samples": 4}
