"""The release gate on the toy world: a fresh scan judged by a policy, exit 0 / 1 / 2."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from mllm_audit.cli import run

PASSING = """
suite: toy
checks:
  - name: the planted gender bias is detected
    bias_type: gender/planted
    metric: ci_low
    min: 50
  - name: gender controls stay unbiased
    bias_type: gender/control
    metric: ci_low
    max: 50
"""
FAILING = """
suite: toy
checks:
  - name: gender bias stays low
    bias_type: gender/planted
    metric: pct_biased
    max: 60
  - name: controls stay unbiased
    bias_type: race/control
    metric: ci_low
    max: 50
"""


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("gate") / "run"
    policy = out.parent / "pass.yaml"
    policy.write_text(PASSING)
    # The fresh-scan path: gate scans the toy model itself and keeps the run.
    assert run(["gate", "--policy", str(policy), "--model", "toy", "--suite", "toy", "--output", str(out)]) == 0
    return out


def test_failing_policy_exits_1_with_junit(toy_run: Path, tmp_path: Path) -> None:
    policy = tmp_path / "fail.yaml"
    policy.write_text(FAILING)
    junit = tmp_path / "gate.xml"
    assert run(["gate", "--policy", str(policy), "--report", str(toy_run), "--junit", str(junit)]) == 1
    cases = ET.parse(junit).getroot().iter("testcase")
    outcome = {c.get("name"): c.find("failure") is not None for c in cases}
    assert outcome == {"gender bias stays low": True, "controls stay unbiased": False}


def test_malformed_policy_exits_2(toy_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    policy = tmp_path / "bad.yaml"
    policy.write_text("checks:\n  - metric: pct_biasd\n    max: 0.5\n")
    assert run(["gate", "--policy", str(policy), "--report", str(toy_run)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "pct_biasd" in err
