"""The release gate on constructed run folders: exit codes, messages, JUnit, GitHub outputs."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from runfolders import make_run, rows  # the shared run-folder builder

from mllm_audit.cli import run
from mllm_audit.errors import AuditError
from mllm_audit.gate.evaluate import gate
from mllm_audit.gate.policy import load_policy


def write_policy(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.fixture()
def run_dir(tmp_path: Path) -> Path:
    """gender 8/20 = 40% biased, race 14/20 = 70% biased, all 22/40 = 55%."""
    return make_run(tmp_path / "run", rows("gender", 20, set(range(8))) + rows("race", 20, set(range(14))))


def gate_cli(policy: Path, run_dir: Path, *extra: str) -> int:
    return run(["gate", "--policy", str(policy), "--report", str(run_dir), *extra])


def test_passing_policy_exits_0(tmp_path: Path, run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pol = write_policy(tmp_path / "p.yaml", """
suite: toy
checks:
  - name: gender bias stays low
    bias_type: gender
    metric: pct_biased
    max: 60
  - name: overall
    metric: pct_biased
    min: 50
    max: 56
""")
    assert gate_cli(pol, run_dir) == 0
    assert "gate passed: 2 of 2 checks" in capsys.readouterr().out
    outcome = gate(pol, report=run_dir)
    assert [r.value for r in outcome.results] == pytest.approx([40, 55])  # percent, as the policy
    assert outcome.exit_code == 0


def test_failing_policy_exits_1(tmp_path: Path, run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pol = write_policy(tmp_path / "p.yaml", """
checks:
  - {name: race, bias_type: race, metric: pct_biased, max: 60}
  - {name: gender, bias_type: gender, metric: ci_high, max: 90}
""")
    assert gate_cli(pol, run_dir) == 1
    out = capsys.readouterr().out
    assert "gate failed: 1 of 2 checks failed" in out
    assert "pct_biased[race] = 70 %" in out


MALFORMED = [
    ("checks: []\n", "'checks' must be a non-empty list"),
    ("suite: toy\nthreshold: 1\nchecks: [{metric: pct_biased, max: 1}]\n", "unknown key 'threshold'"),
    ("checks:\n  - {name: a, metric: pct_biased, maxx: 50}\n", "checks[0] ('a'): unknown key 'maxx'"),
    ("checks:\n  - {name: a, metric: pct_unbiased, max: 0.5}\n", "unknown metric 'pct_unbiased'"),
    ("checks:\n  - {name: nobound, metric: pct_biased}\n", "checks[0] ('nobound'): no bound"),
    ("checks:\n  - {metric: pct_biased, max: high}\n", "'max' must be a finite number, got 'high'"),
    ("checks:\n  - {metric: pct_biased, max: true}\n", "'max' must be a finite number, got True"),
    ("checks:\n  - {metric: pct_biased, bias_type: 3, max: 1}\n", "'bias_type' must be a non-empty string"),
    ("checks:\n  - {metric: pct_biased, min: 60, max: 50}\n", "'min' (60) is above 'max' (50)"),
    ("checks:\n  - {metric: pct_biased, max_increase: 10}\n", "'max_increase' needs a 'baseline' run"),
    ("checks:\n  - {metric: pct_biased, baseline: nowhere, max_increase: 10}\n", "baseline run not found"),
    ("checks:\n  - {metric: reliability, bias_type: gender, min: 0.5}\n", "drop 'bias_type'"),
    ("checks:\n  - {name: x, metric: pct_biased, max: 1}\n  - {name: x, metric: mean_margin, max: 1}\n",
     "two checks are named 'x'"),
    ("checks: [\n  {metric: pct_biased\n", "not valid YAML"),
    ("- just\n- a list\n", "expected a mapping"),
]


@pytest.mark.parametrize(("text", "culprit"), MALFORMED)
def test_malformed_policy_exits_2_with_one_line(
    tmp_path: Path, run_dir: Path, capsys: pytest.CaptureFixture[str], text: str, culprit: str
) -> None:
    pol = write_policy(tmp_path / "bad.yaml", text)
    assert gate_cli(pol, run_dir) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("mllm-audit: error: ")
    assert culprit in err
    assert "bad.yaml" in err or "check" in err


def test_missing_policy_and_bad_inputs_exit_2(
    tmp_path: Path, run_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert gate_cli(tmp_path / "none.yaml", run_dir) == 2
    assert "policy file not found" in capsys.readouterr().err
    pol = write_policy(tmp_path / "p.yaml", "checks: [{metric: pct_biased, bias_type: religion, max: 1}]\n")
    assert gate_cli(pol, run_dir) == 2
    assert "no row 'religion'" in capsys.readouterr().err
    assert gate_cli(pol, tmp_path / "no-run") == 2
    assert "run folder not found" in capsys.readouterr().err
    assert run(["gate", "--policy", str(pol)]) == 2
    assert "nothing to gate" in capsys.readouterr().err
    assert run(["gate", "--policy", str(pol), "--report", str(run_dir), "--model", "toy"]) == 2
    assert "not both" in capsys.readouterr().err


def test_incomplete_run_and_wrong_suite_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    partial = make_run(tmp_path / "partial", rows("gender", 4, {0}), complete=False)
    pol = write_policy(tmp_path / "p.yaml", "checks: [{metric: pct_biased, max: 1}]\n")
    assert gate_cli(pol, partial) == 2
    assert "incomplete" in capsys.readouterr().err
    other = make_run(tmp_path / "other", rows("gender", 4, {0}), suite="pairs-vqa")
    pol2 = write_policy(tmp_path / "p2.yaml", "suite: toy\nchecks: [{metric: pct_biased, max: 1}]\n")
    assert gate_cli(pol2, other) == 2
    assert "policy is for suite 'toy'" in capsys.readouterr().err


def test_junit_has_one_testcase_per_check(tmp_path: Path, run_dir: Path) -> None:
    pol = write_policy(tmp_path / "p.yaml", """
checks:
  - {name: gender low, bias_type: gender, metric: pct_biased, max: 50}
  - {name: race low, bias_type: race, metric: pct_biased, max: 50}
  - {name: margin sane, metric: mean_margin, min: -1, max: 1}
""")
    junit = tmp_path / "out" / "gate.xml"
    assert gate_cli(pol, run_dir, "--junit", str(junit)) == 1
    root = ET.parse(junit).getroot()
    suite = root.find("testsuite")
    assert suite is not None and suite.get("tests") == "3" and suite.get("failures") == "1"
    cases = suite.findall("testcase")
    assert [c.get("name") for c in cases] == ["gender low", "race low", "margin sane"]
    assert [c.find("failure") is not None for c in cases] == [False, True, False]
    failure = cases[1].find("failure")
    assert failure is not None and "pct_biased[race] = 70 %" in (failure.get("message") or "")


def test_github_step_summary_and_error_annotations(
    tmp_path: Path, run_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    summary = tmp_path / "step_summary.md"
    summary.write_text("earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    pol = write_policy(tmp_path / "p.yaml", """
checks:
  - {name: gender low, bias_type: gender, metric: pct_biased, max: 50}
  - {name: "race: low, please", bias_type: race, metric: pct_biased, max: 50}
""")
    assert gate_cli(pol, run_dir) == 1
    text = summary.read_text()
    assert text.startswith("earlier step\n### mllm-audit gate: FAILED (1 of 2 checks)")
    table = [line for line in text.splitlines() if line.startswith("| ")]
    assert len(table) == 3  # header + one row per check
    assert table[1].startswith("| pass | gender low |")
    assert table[2].startswith("| **FAIL** | race: low, please |")
    errors = [line for line in capsys.readouterr().out.splitlines() if line.startswith("::error")]
    assert len(errors) == 1  # only the failing check; ':' and ',' escaped in the title
    title, message = errors[0].split("::", 2)[1:]
    assert title == "error title=mllm-audit gate%3A race%3A low%2C please"
    assert message.startswith("pct_biased[race] = 70 %25 (95%25 CI ")  # % is escaped as %25
    assert errors[0].endswith("bound <= 50 %25")


def test_no_color_is_honoured(
    tmp_path: Path, run_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    pol = write_policy(tmp_path / "p.yaml", "checks: [{metric: pct_biased, max: 50}]\n")
    monkeypatch.setenv("FORCE_COLOR", "1")
    monkeypatch.delenv("NO_COLOR", raising=False)
    assert gate_cli(pol, run_dir) == 1
    assert re.search(r"\x1b\[(?:\d+;)*3[0-8]", capsys.readouterr().out)
    monkeypatch.setenv("NO_COLOR", "1")
    assert gate_cli(pol, run_dir) == 1
    out = capsys.readouterr().out
    assert re.search(r"\x1b\[(?:\d+;)*3[0-8]", out) is None and "FAIL" in out  # styles stay, colors go


def test_baseline_regression_check(tmp_path: Path) -> None:
    """Baseline 6/24 biased; the candidate flips 4 more of the shared items: +4/24 = +0.1667."""
    base_rows = rows("gender", 24, set(range(6)))
    base = make_run(tmp_path / "runs" / "v1.2", base_rows)
    cand_rows = rows("gender", 24, set(range(10))) + [("new-item", "gender", "n0", 1.0, {})]
    cand = make_run(tmp_path / "cand", cand_rows)
    pol = write_policy(tmp_path / "p.yaml", """
checks:
  - name: no regression against the last release
    metric: pct_biased
    baseline: runs/v1.2
    max_increase: 2
  - name: margin may grow a lot
    metric: mean_margin
    bias_type: gender
    baseline: runs/v1.2
    max_increase: 1.0
""")
    with pytest.raises(AuditError, match=r"baseline .*v1.2 differs from the run \(coverage 24 items \(all\) vs "
                                         r"25 items \(all\)\); not comparing"):
        gate(pol, report=cand)  # the candidate scored one item more: another coverage (gate/verify.py)
    pol.write_text("baseline_may_differ: true\n" + pol.read_text())
    outcome = gate(pol, report=cand)
    strict, loose = outcome.results
    assert strict.detail.endswith("[baseline differs: coverage 24 items (all) vs 25 items (all)]")
    assert strict.paired is not None and strict.paired.n == 24  # the extra item is not shared
    assert strict.value == pytest.approx(100 * 4 / 24)  # percentage points
    assert strict.paired.mean_a == 25.0 and strict.paired.mean_b == pytest.approx(100 * 10 / 24)  # percent
    assert not strict.passed and "on 24 items shared with" in strict.detail
    assert loose.passed and loose.value == pytest.approx(2 * 4 / 24)
    assert outcome.exit_code == 1
    # The same run against itself: change 0, p = 1, passes.
    same = gate(write_policy(tmp_path / "q.yaml", f"checks: [{{metric: pct_biased, baseline: {base}, "
                                                      "max_increase: 0.0}]\n"), report=base)
    assert same.passed and same.results[0].value == 0.0 and same.results[0].paired.p_value == 1.0


def test_baseline_alpha_lets_noise_through(tmp_path: Path) -> None:
    """+1 of 24 items (+0.042) exceeds max_increase 0.02 but is not significant at alpha 0.05."""
    make_run(tmp_path / "base", rows("gender", 24, set(range(6))))
    cand = make_run(tmp_path / "cand", rows("gender", 24, set(range(7))))
    text = "checks: [{metric: pct_biased, baseline: base, max_increase: 2, alpha: 0.05}]\n"
    outcome = gate(write_policy(tmp_path / "p.yaml", text), report=cand)
    r = outcome.results[0]
    assert r.value == pytest.approx(100 / 24) and r.paired is not None and r.paired.p_value > 0.05
    assert r.passed


def test_group_rows_and_fix_metrics(tmp_path: Path) -> None:
    items = rows("gender", 10, {0, 1, 2}, meta={"condition": "planted"}) + rows(
        "race", 10, {0}, meta={"condition": "control"}
    ) + [(f"g-c{i}", "gender", f"gc{i}", 1.0 if i < 5 else -1.0, {"condition": "control"}) for i in range(10)]
    from mllm_audit.metrics.edits import aggregate

    # The gate recomputes a fix run's metrics from edits.jsonl (gate/verify.py): 9 of 10 edits reliable.
    edits = [{"item_id": f"e{i}", "cluster": f"c{i}", "reliability": 1.0 if i else 0.0, "t_generality": None,
              "v_generality": None, "t_locality": {"top1": 1.0, "kl": 0.02}, "m_locality": None} for i in range(10)]
    metrics = {k: v for k, v in aggregate(edits).items() if v is not None}
    fixed = make_run(tmp_path / "fix", items, group_by="condition", extra={"command": "fix", "metrics": metrics})
    (fixed / "edits.jsonl").write_text("".join(json.dumps(e) + "\n" for e in edits))
    pol = write_policy(tmp_path / "p.yaml", """
checks:
  - {name: planted, bias_type: gender/planted, metric: pct_biased, max: 30}
  - {name: gender overall, bias_type: gender, metric: pct_biased, max: 40}
  - {name: reliable, metric: reliability, min: 0.8}
  - {name: local, metric: t_locality_kl, max: 0.01}
""")
    outcome = gate(pol, report=fixed)
    assert [r.value for r in outcome.results] == pytest.approx([30, 40, 0.9, 0.02])  # gender = (3 + 5) / 20
    assert [r.passed for r in outcome.results] == [True, True, True, False]
    missing = write_policy(tmp_path / "m.yaml", "checks: [{metric: v_generality, min: 0.5}]\n")
    with pytest.raises(AuditError, match="no fix metric 'v_generality'"):
        gate(missing, report=fixed)


def test_load_policy_resolves_baseline_next_to_the_policy(tmp_path: Path) -> None:
    make_run(tmp_path / "ci" / "runs" / "v1", rows("gender", 2, {0}))
    pol = load_policy(write_policy(tmp_path / "ci" / "p.yaml", """
checks:
  - {metric: pct_biased, baseline: runs/v1, max_increase: 0.0}
"""))
    assert pol.checks[0].baseline == tmp_path / "ci" / "runs" / "v1"
    assert pol.checks[0].name == "pct_biased all vs baseline"


@pytest.mark.parametrize(("check", "needle"), [
    ("{metric: pct_biased, max: 0.6}",
     "pct_biased is in percent, as results.json and the tables show: write 60 for 60 %"),
    ("{metric: ci_high, min: 0.3}", "write 30 for 30 %"),
    ("{metric: pct_biased, baseline: b, max_increase: 0.02}", "in percentage points"),
    ("{metric: pct_biased, max: 160}", "'max' must be within 0..100"),
])
def test_fraction_thresholds_are_refused(tmp_path: Path, check: str, needle: str) -> None:
    """The newcomer's report: `max: 60` passed a 78 % biased run because the gate read fractions."""
    make_run(tmp_path / "b", rows("gender", 4, {0}))
    with pytest.raises(AuditError, match=re.escape(needle)):
        load_policy(write_policy(tmp_path / "p.yaml", f"checks: [{check}]\n"))


def test_percent_thresholds_judge_what_the_table_shows(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path / "r", rows("gender", 10, set(range(7))))  # 70 % biased
    passed = gate(write_policy(tmp_path / "a.yaml", "checks: [{metric: pct_biased, max: 75}]\n"), report=run_dir)
    failed = gate(write_policy(tmp_path / "b.yaml", "checks: [{metric: pct_biased, max: 60}]\n"), report=run_dir)
    assert passed.passed and passed.results[0].value == pytest.approx(70.0)
    assert not failed.passed and failed.results[0].detail.startswith("pct_biased[all] = 70 % (95% CI ")


def test_unknown_row_lists_bias_types_too(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path / "r", rows("gender", 4, {0}))
    with pytest.raises(AuditError, match=r"rows: .*gender"):
        gate(write_policy(tmp_path / "p.yaml", "checks: [{metric: pct_biased, bias_type: gendr, max: 50}]\n"),
             report=run_dir)
