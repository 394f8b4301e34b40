"""Exactness as promised: margins agree across batch sizes and across a resume within the tolerance
the run record states (`margin_tolerance`, README "Scoring contract"); not bit for bit, and the
record says so rather than the README promising identity."""

from __future__ import annotations

import json
from pathlib import Path

from mllm_audit.runs.record import MARGIN_TOLERANCE
from mllm_audit.runs.scan import run_scan
from mllm_audit.suites.items import sample_margin


def _margins(out: Path) -> dict[str, float]:
    return {s["item_id"]: sample_margin(s) for s in map(json.loads, (out / "samples.jsonl").read_text().splitlines())}


def test_margins_agree_across_batch_sizes_and_resume_within_the_recorded_tolerance(
    tiny_adapter, tiny_suite: Path, tmp_path: Path  # noqa: ANN001
) -> None:
    runs = {b: run_scan(suite=str(tiny_suite), output=tmp_path / f"b{b}", adapter=tiny_adapter, batch_size=b)
            for b in (1, 2, 6)}
    tolerance = runs[1].results["margin_tolerance"]
    assert tolerance == MARGIN_TOLERANCE == 1e-5  # the record states what the README promises
    ref = _margins(tmp_path / "b1")
    for b in (2, 6):
        got = _margins(tmp_path / f"b{b}")
        assert got.keys() == ref.keys()
        assert max(abs(got[k] - ref[k]) for k in ref) <= tolerance
    # A resumed run: a batch-2 run cut after 4 items (as if killed there), resumed at batch 6.
    part = tmp_path / "part"
    run_scan(suite=str(tiny_suite), output=part, adapter=tiny_adapter, batch_size=2)
    lines = (part / "samples.jsonl").read_text().splitlines(keepends=True)
    (part / "samples.jsonl").write_text("".join(lines[:4]))
    res = json.loads((part / "results.json").read_text())
    res["complete"] = False
    (part / "results.json").write_text(json.dumps(res))
    resumed = run_scan(suite=str(tiny_suite), output=part, adapter=tiny_adapter, batch_size=6, resume=True)
    assert resumed.results["resumed"] == {"reused_samples": 4}
    got = _margins(part)
    assert max(abs(got[k] - ref[k]) for k in ref) <= resumed.results["margin_tolerance"]


def test_the_tolerance_check_can_fail(tiny_adapter, tiny_suite: Path, tmp_path: Path) -> None:  # noqa: ANN001
    """Negative control: a margin moved by twice the tolerance is outside it."""
    run_scan(suite=str(tiny_suite), output=tmp_path / "a", adapter=tiny_adapter, batch_size=2)
    ref = _margins(tmp_path / "a")
    moved = {k: v + 2 * MARGIN_TOLERANCE for k, v in ref.items()}
    assert max(abs(moved[k] - ref[k]) for k in ref) > MARGIN_TOLERANCE
