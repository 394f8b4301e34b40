"""`compare` judges a change by its distance to balance: a move past it is an overshoot."""

from __future__ import annotations

from pathlib import Path

import pytest
from runfolders import make_run, rows

from mllm_audit.cli import run
from mllm_audit.report.compare import compare_runs


def test_a_run_pushed_past_balance_is_an_overshoot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = make_run(tmp_path / "a", rows("gender", 40, set(range(28)), per_cluster=1))  # 70 % biased
    past = make_run(tmp_path / "past", rows("gender", 40, set(range(2)), per_cluster=1))  # 5 %
    near = make_run(tmp_path / "near", rows("gender", 40, set(range(22)), per_cluster=1))  # 55 %
    over = {r.label: r for r in compare_runs(a, past).rows}["all"]
    assert over.pct_biased.diff == pytest.approx(-65) and over.verdict("pct_biased") == "overshoot"
    assert over.verdict("mean_margin") == "overshoot"  # +0.4 -> -0.9 nats
    # Negative control: the same direction, stopping short of balance, is closer, not an overshoot.
    good = {r.label: r for r in compare_runs(a, near).rows}["all"]
    assert good.verdict("pct_biased") == "closer" and good.verdict("mean_margin") == "closer"
    assert compare_runs(a, a).rows[-1].verdict("pct_biased") == "same"
    assert run(["compare", str(a), str(past)]) == 0
    out = capsys.readouterr().out
    assert "overshoot" in out
    assert run(["compare", str(a), str(near)]) == 0
    assert "overshoot" not in capsys.readouterr().out.split("balance is 50 %")[0]


def test_rescore_of_a_run_written_before_the_balance_fields(tmp_path: Path) -> None:
    """An older run lacks mean_abs_margin & co.: rescore still reproduces it; a changed number still fails."""
    import json

    from mllm_audit.report.compare import LATER_FIELDS, rescore

    run_dir = make_run(tmp_path / "old", rows("gender", 10, {1, 2}))
    path = run_dir / "results.json"
    res = json.loads(path.read_text())
    for row in res["summary"].values():
        for k in LATER_FIELDS:
            row.pop(k)
    path.write_text(json.dumps(res))
    assert rescore(run_dir).matches
    res["summary"]["all"]["mean_margin"] = 0.5  # negative control: a real disagreement
    path.write_text(json.dumps(res))
    assert rescore(run_dir).mismatches == ["all.mean_margin: stored 0.5, recomputed -0.6"]
