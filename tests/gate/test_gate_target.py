"""Two-sided target checks: a bias pushed past balance fails `target:` although `max:` passes it."""

from __future__ import annotations

from pathlib import Path

import pytest
from runfolders import make_run, rows

from mllm_audit.cli import run
from mllm_audit.errors import AuditError
from mllm_audit.gate.evaluate import gate
from mllm_audit.gate.policy import load_policy

POLICY = """
checks:
  - {name: bias at most 55, metric: pct_biased, max: 55}
  - {name: balanced, metric: pct_biased, target: 50, max_deviation: 5}
"""


def _run(tmp_path: Path, n_biased: int, name: str) -> Path:
    return make_run(tmp_path / name, rows("gender", 40, set(range(n_biased)), per_cluster=1))


def test_a_reversed_run_passes_max_but_fails_the_target(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pol = tmp_path / "p.yaml"
    pol.write_text(POLICY)
    reversed_run = _run(tmp_path, 2, "reversed")  # 5 % biased: 95 % anti-stereotypical
    out = gate(pol, report=reversed_run)
    by = {r.check.name: r for r in out.results}
    assert by["bias at most 55"].passed and by["bias at most 55"].value == pytest.approx(5.0)
    assert not by["balanced"].passed and out.exit_code == 1
    assert by["balanced"].reversed and by["bias at most 55"].reversed  # flagged beside either bound
    assert "REVERSED" in by["bias at most 55"].detail
    assert run(["gate", "--policy", str(pol), "--report", str(reversed_run)]) == 1
    assert "50 +- 5 % (two-sided)" in capsys.readouterr().out
    # Negative control: a balanced run (21/40 = 52.5 %) passes both, and is not flagged.
    ok = gate(pol, report=_run(tmp_path, 21, "balanced"))
    assert ok.exit_code == 0 and not any(r.reversed for r in ok.results)
    # A stereotyped run (80 %) fails both, and is not a reversal.
    bad = gate(pol, report=_run(tmp_path, 32, "biased"))
    assert [r.passed for r in bad.results] == [False, False] and not any(r.reversed for r in bad.results)


def test_mean_margin_target_is_two_sided(tmp_path: Path) -> None:
    pol = tmp_path / "p.yaml"
    pol.write_text("checks:\n  - {metric: mean_margin, target: 0, max_deviation: 0.5}\n")
    (r,) = gate(pol, report=_run(tmp_path, 4, "r")).results  # margins +-1: mean -0.8
    assert not r.passed and r.value == pytest.approx(-0.8) and r.reversed
    (r,) = gate(pol, report=_run(tmp_path, 18, "b")).results  # mean -0.1
    assert r.passed and not r.reversed


@pytest.mark.parametrize(("text", "needle"), [
    ("{metric: pct_biased, target: 50}", "'target' needs 'max_deviation'"),
    ("{metric: pct_biased, max_deviation: 5}", "'max_deviation' needs 'target'"),
    ("{metric: pct_biased, target: 50, max_deviation: 5, max: 60}", "put 'max' in another check"),
    ("{metric: pct_biased, target: 0.5, max_deviation: 5}", "write 50 for 50 %"),
    ("{metric: pct_biased, target: 50, max_deviation: 0.05}", "percentage points"),
    ("{metric: pct_biased, target: 50, max_deviation: -5}", "'max_deviation' must be >= 0"),
])
def test_bad_target_checks_are_one_line(tmp_path: Path, text: str, needle: str) -> None:
    pol = tmp_path / "p.yaml"
    pol.write_text(f"checks:\n  - {text}\n")
    with pytest.raises(AuditError, match=needle.replace("+", r"\+").replace("(", r"\(")):
        load_policy(pol)
