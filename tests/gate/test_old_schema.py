"""A run written before pct_biased was stored in percent (results schema v1/v2: fractions) gates, rescores and
serves as a baseline exactly as today's run of the same samples: converted on read (runs/record.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from runfolders import make_run, rows

import mllm_audit.metrics.bias as bias
from mllm_audit.gate.evaluate import gate
from mllm_audit.report.compare import rescore
from mllm_audit.runs.record import RESULTS_SCHEMA

POLICY = """checks:
  - {name: low, metric: pct_biased, max: 60}
  - {name: balanced, metric: pct_biased, target: 50, max_deviation: 5}
  - {name: no regression, metric: pct_biased, baseline: old, max_increase: 2}
"""


def _v2_run(folder: Path, biased: set[int], monkeypatch: pytest.MonkeyPatch) -> Path:
    """The run folder as schema v2 wrote it: the same samples, the summary in fractions."""
    with monkeypatch.context() as m:
        m.setattr(bias, "percent", lambda share: share)
        make_run(folder, rows("gender", 24, biased))
    results = json.loads((folder / "results.json").read_text())
    results["schema"] = "mllm-audit/results/v2"
    (folder / "results.json").write_text(json.dumps(results))
    return folder


def test_an_old_run_and_baseline_gate_as_todays(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _v2_run(tmp_path / "old", set(range(12)), monkeypatch)  # 50 %
    assert json.loads((tmp_path / "old" / "results.json").read_text())["summary"]["all"]["pct_biased"] == 0.5
    policy = tmp_path / "p.yaml"
    policy.write_text(POLICY)
    old_cand = _v2_run(tmp_path / "cand-v2", set(range(14)), monkeypatch)  # 58.3 %: +8.3 points
    new_cand = make_run(tmp_path / "cand-v3", rows("gender", 24, set(range(14))))
    got = [gate(policy, report=c) for c in (old_cand, new_cand)]
    for outcome in got:  # the verify step (rescore vs stored summary) passes for both
        low, balanced, regress = outcome.results
        assert low.passed and low.value == pytest.approx(100 * 14 / 24)
        assert balanced.passed is False and "58.33 %" in balanced.detail
        assert regress.passed is False and regress.value == pytest.approx(100 * 2 / 24)
    assert [r.detail for r in got[0].results] == [r.detail for r in got[1].results]
    assert rescore(old_cand).mismatches == []  # converted bit for bit
    assert json.loads((old_cand / "results.json").read_text())["schema"] == "mllm-audit/results/v2"  # not rewritten


def test_an_old_run_read_without_conversion_would_fail_the_bound(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Negative control: the same v2 summary labelled v3 (so not converted) is refused by the verify step,
    its fractions disagreeing with the samples in today's unit."""
    from mllm_audit.errors import AuditError

    run = _v2_run(tmp_path / "run", set(range(14)), monkeypatch)
    results = json.loads((run / "results.json").read_text())
    results["schema"] = RESULTS_SCHEMA
    (run / "results.json").write_text(json.dumps(results))
    policy = tmp_path / "p.yaml"
    policy.write_text("checks:\n  - {name: low, metric: pct_biased, max: 60}\n")
    with pytest.raises(AuditError, match=r"stored summary disagrees with samples.jsonl: .*pct_biased: stored 0.58"):
        gate(policy, report=run)
