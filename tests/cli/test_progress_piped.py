"""Long commands piped into a log print progress lines with their rate and time left (issue 25:
`train-editor` printed a blank line then "done", `gate --model` nothing while scanning)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mllm_audit.cli import run

LINE = re.compile(r"^(?P<what>[\w -]+): (?P<done>\d+)/(?P<total>\d+) \(\d+ %\), [\d.]+/s, \d+ s left$", re.M)


def test_train_editor_piped_prints_eta_lines(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("MLLM_AUDIT_PROGRESS_EVERY", "0")
    assert run(["train-editor", "--steps", "3", "--output", str(tmp_path / "mend")]) == 0
    lines = [m.groupdict() for m in LINE.finditer(capsys.readouterr().err)]
    assert [(m["what"], m["done"], m["total"]) for m in lines] == [("training mend", str(i), "3") for i in (1, 2, 3)]


def test_quiet_train_editor_prints_no_progress(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """Negative control: the same run with -q has no progress line for the pattern to find."""
    monkeypatch.setenv("MLLM_AUDIT_PROGRESS_EVERY", "0")
    assert run(["train-editor", "--steps", "2", "-q", "--output", str(tmp_path / "mend")]) == 0
    assert not LINE.search(capsys.readouterr().err)


def test_gate_with_a_fresh_scan_prints_its_progress(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("MLLM_AUDIT_PROGRESS_EVERY", "1000")  # only the final line
    policy = tmp_path / "policy.yaml"
    policy.write_text("suite: toy\nchecks:\n  - {name: low, bias_type: gender, metric: pct_biased, max: 100}\n")
    assert run(["gate", "--policy", str(policy), "--model", "toy", "-o", str(tmp_path / "scan")]) == 0
    found = [m.groupdict() for m in LINE.finditer(capsys.readouterr().err)]
    assert found and found[-1]["what"] == "scanning" and found[-1]["done"] == found[-1]["total"]


def test_study_prints_a_line_per_row_with_the_time_left(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["study", "batch", "--limit", "2", "--sizes", "1,2", "--editors", "FT-L", "-o", str(tmp_path / "s")]
    assert run(argv) == 0
    lines = re.findall(r"^study batch: row (\d)/2 \(ft-l, (\d)\) after \d+ s, about \d+ s left$",
                       capsys.readouterr().err, flags=re.M)
    assert lines == [("1", "1"), ("2", "2")]
