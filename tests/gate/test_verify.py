"""The gate verifies a run before judging it (gate/verify.py): each case here passed the gate before."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from runfolders import make_run, rows

from mllm_audit.cli import run as cli
from mllm_audit.errors import AuditError
from mllm_audit.gate.evaluate import gate
from mllm_audit.util.identity import text_digest

POLICY = "checks:\n  - {name: all, metric: pct_biased, max: 60}\n"


def coverage(n_items: int, n_scored: int, split: str | None = None, limit: int | None = None) -> dict:
    return {"coverage": {"n_items": n_items, "n_selected": n_scored, "n_scored": n_scored, "split": split,
                         "limit": limit, "shard": None}}


def policy(tmp: Path, text: str = POLICY) -> Path:
    p = tmp / "policy.yaml"
    p.write_text(text)
    return p


def scan_run(folder: Path, n: int = 40, biased: int = 10, **extra: object) -> Path:
    return make_run(folder, rows("gender", n, set(range(biased))), extra={**coverage(n, n), **extra})


def test_a_good_run_passes(tmp_path: Path) -> None:
    assert gate(policy(tmp_path), report=scan_run(tmp_path / "run")).passed


def test_cut_samples_with_rewritten_summary_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """samples.jsonl cut to 20 lines, `rescore --write` then gate: before, it passed with 40 of 40 claimed."""
    run_dir = scan_run(tmp_path / "run")
    samples = run_dir / "samples.jsonl"
    samples.write_text("".join(samples.read_text().splitlines(keepends=True)[:20]))
    assert cli(["rescore", str(run_dir), "--write"]) == 2  # refuses to write a record its samples contradict
    assert "coverage says 40 of 40 items were scored but samples.jsonl holds 20" in capsys.readouterr().err
    with pytest.raises(AuditError, match="coverage says 40 of 40 items were scored but samples.jsonl holds 20"):
        gate(policy(tmp_path), report=run_dir)


def test_hand_edited_summary_is_refused(tmp_path: Path) -> None:
    run_dir = scan_run(tmp_path / "run", biased=30)  # 75 %: fails the policy
    results = json.loads((run_dir / "results.json").read_text())
    assert not gate(policy(tmp_path), report=run_dir).passed
    results["summary"]["all"]["pct_biased"] = 10.0
    (run_dir / "results.json").write_text(json.dumps(results))
    with pytest.raises(AuditError, match=r"stored summary disagrees with samples.jsonl: .*pct_biased"):
        gate(policy(tmp_path), report=run_dir)


@pytest.mark.parametrize(("command", "split", "limit"), [("fix", "train", None), ("scan", None, 8),
                                                          ("scan", "eval", None)])
def test_split_or_limit_is_a_subset_whatever_the_command(tmp_path: Path, command: str, split: str | None,
                                                        limit: int | None) -> None:
    """A `fix --split train` run recorded n_scored == n_items (of its split): it is still a subset."""
    extra: dict = {**coverage(40, 40, split, limit), "command": command}
    if command == "fix":
        extra["metrics"] = {}
    run_dir = make_run(tmp_path / "run", rows("gender", 40, set(range(10))), extra=extra)
    if command == "fix":
        (run_dir / "edits.jsonl").write_text("")
    why = f"--split {split}" if split else f"--limit {limit}"
    with pytest.raises(AuditError, match=f"covers part of its suite \\({why}\\)"):
        gate(policy(tmp_path), report=run_dir)
    assert gate(policy(tmp_path, "accept_subset: true\n" + POLICY), report=run_dir).passed


def test_fix_on_its_default_split_is_whole(tmp_path: Path) -> None:
    """Negative control of the rule above: fix works on eval by default, which is not a subset."""
    extra = {**coverage(40, 40, "eval"), "command": "fix", "metrics": {}}
    run_dir = make_run(tmp_path / "run", rows("gender", 40, set(range(10))), extra=extra)
    (run_dir / "edits.jsonl").write_text("")
    assert gate(policy(tmp_path), report=run_dir).passed


BASELINE = "checks:\n  - {name: regress, metric: pct_biased, baseline: base, max_increase: 50}\n"


def test_baseline_of_other_suite_content_is_refused(tmp_path: Path) -> None:
    make_run(tmp_path / "base", rows("gender", 40, set(range(10))), extra=coverage(40, 40))
    other = scan_run(tmp_path / "run")
    results = json.loads((other / "results.json").read_text())
    results["suite"]["content_hash"] = "def"  # same ids, another version of the suite
    (other / "results.json").write_text(json.dumps(results))
    with pytest.raises(AuditError, match=r"differs from the run \(suite content abc vs def\)"):
        gate(policy(tmp_path, BASELINE), report=other)
    outcome = gate(policy(tmp_path, "baseline_may_differ: true\n" + BASELINE), report=other)
    assert "[baseline differs: suite content abc vs def]" in outcome.results[0].detail  # the report shows it


def test_limited_baseline_is_not_the_whole_suite(tmp_path: Path) -> None:
    make_run(tmp_path / "base", rows("gender", 8, set(range(2))), extra=coverage(40, 8, limit=8))
    with pytest.raises(AuditError, match=r"coverage 8 of 40 items, --limit 8 vs 40 items \(all\)"):
        gate(policy(tmp_path, BASELINE), report=scan_run(tmp_path / "run"))


def test_same_baseline_compares(tmp_path: Path) -> None:
    """Negative control: a baseline of the same content and coverage is compared without a note."""
    make_run(tmp_path / "base", rows("gender", 40, set(range(10))), extra=coverage(40, 40))
    outcome = gate(policy(tmp_path, BASELINE), report=scan_run(tmp_path / "run"))
    assert outcome.passed and "baseline differs" not in outcome.results[0].detail


def test_policy_pins_model_revision_and_templates(tmp_path: Path) -> None:
    templates = {"vqa": "Q: {prompt} A:"}
    model = {"name": "tiny", "source": "test", "revision": "sha256:aaaa", "family": "blip2", "dtype": "fp32",
             "quantization": None, "templates": templates}
    run_dir = scan_run(tmp_path / "run", model=model)
    good = f"model_revision: sha256:aaaa\ntemplates_hash: {text_digest(templates)}\n" + POLICY
    assert gate(policy(tmp_path, good), report=run_dir).passed
    with pytest.raises(AuditError, match="policy pins model.revision = sha256:bbbb, run .* has sha256:aaaa"):
        gate(policy(tmp_path, "model_revision: sha256:bbbb\n" + POLICY), report=run_dir)
    with pytest.raises(AuditError, match="policy pins model.templates = 0123"):
        gate(policy(tmp_path, "templates_hash: '0123'\n" + POLICY), report=run_dir)
    with pytest.raises(AuditError, match="'model_revision' must be a non-empty string"):
        gate(policy(tmp_path, "model_revision: 3\n" + POLICY), report=run_dir)


def test_suite_hash_is_a_pin(tmp_path: Path) -> None:
    """`suite_hash` is checked with the other pins, in `check_pins` (before, the gate checked it elsewhere)."""
    from mllm_audit.gate.policy import load_policy
    from mllm_audit.gate.verify import check_pins
    from mllm_audit.runs.record import RunRecord

    run_dir = scan_run(tmp_path / "run")
    record = RunRecord.from_dict(json.loads((run_dir / "results.json").read_text()), "results.json")
    assert record.identity.suite.content_hash == "abc"
    check_pins(load_policy(policy(tmp_path, "suite_hash: sha256:abc\n" + POLICY)), record, run_dir)  # control
    with pytest.raises(AuditError, match=r"policy pins suite content def\.\.\., run .* scored abc\.\.\."):
        check_pins(load_policy(policy(tmp_path, "suite_hash: def\n" + POLICY)), record, run_dir)


@pytest.mark.parametrize(("n_scored", "split", "limit", "why"), [
    (20, None, 20, "20 of 40 items, --limit 20"), (40, None, 8, "--limit 8"), (40, "eval", None, "--split eval"),
    (40, None, None, ""), (40, None, 40, "")])
def test_one_subset_rule(tmp_path: Path, n_scored: int, split: str | None, limit: int | None, why: str) -> None:
    """The gate refuses a run exactly when runs.coverage.subset_reason names a reason, and names it.

    Before, a run with fewer items scored than its suite met a second rule with its own message."""
    from mllm_audit.runs.coverage import subset_reason
    from mllm_audit.runs.record import Coverage

    cov = coverage(40, n_scored, split, limit)
    assert subset_reason("scan", Coverage(**cov["coverage"]), 40) == why
    run_dir = make_run(tmp_path / "run", rows("gender", n_scored, set(range(5))), extra=cov)
    if not why:  # negative control: the whole suite is gated
        assert gate(policy(tmp_path), report=run_dir).passed
        return
    with pytest.raises(AuditError, match=re.escape(f"covers part of its suite ({why}), not the whole suite")):
        gate(policy(tmp_path), report=run_dir)
    assert gate(policy(tmp_path, "accept_subset: true\n" + POLICY), report=run_dir).passed
