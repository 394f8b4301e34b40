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
    assert over.pct_biased.diff == pytest.approx(-0.65) and over.verdict("pct_biased") == "overshoot"
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
