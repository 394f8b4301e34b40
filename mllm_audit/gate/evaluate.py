"""The release gate: check a run against a YAML policy (gate/policy.py) and exit 0 (pass), 1 (a check
fails), 2 (bad input). The gate only reads run folders, so what it judges is exactly what was
reported, and it refuses a run that says `complete: false`. CI outputs are gate/ci.py.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mllm_audit.errors import AuditError
from mllm_audit.gate.ci import append_step_summary, write_junit
from mllm_audit.gate.policy import Check, Policy, _fmt, load_policy
from mllm_audit.gate.verify import verify_baseline, verify_run
from mllm_audit.metrics.bias import FIX_METRICS, summarize_group
from mllm_audit.metrics.stats import PairedDiff, paired_runs
from mllm_audit.runs.record import READABLE_SCHEMAS, RunRecord


@dataclass
class CheckResult:
    check: Check
    passed: bool
    value: float | None
    detail: str
    paired: PairedDiff | None = None
    reversed: bool = False  # the value lies past balance (e.g. pct_biased below 50 %), whatever the bound


@dataclass
class GateOutcome:
    """What the gate decided, per check; `exit_code` is 0 when every check passed, else 1."""

    policy: Policy
    run_dir: Path
    model: str
    suite: str
    results: list[CheckResult] = field(default_factory=list)

    @property
    def failures(self) -> list[CheckResult]:
        return [r for r in self.results if not r.passed]

    @property
    def passed(self) -> bool:
        return not self.failures

    @property
    def exit_code(self) -> int:
        return 0 if self.passed else 1


def _require_complete(results: dict[str, Any], run_dir: Path) -> None:
    schema = results.get("schema")
    if schema not in READABLE_SCHEMAS:
        raise AuditError(f"{run_dir / 'results.json'}: schema {schema!r} is not one of {', '.join(READABLE_SCHEMAS)}")
    if results.get("complete") is not True:
        raise AuditError(f"run {run_dir} is incomplete (results.json says complete: false); not gating it")


def _row_value(run: Any, check: Check) -> tuple[float, dict[str, Any] | None]:
    """The checked number; a row missing from the summary but present as a bias type is recomputed."""
    if check.metric in FIX_METRICS:
        metrics = run.results.get("metrics")
        if not isinstance(metrics, dict) or check.metric not in metrics:
            raise AuditError(f"check {check.name!r}: run {run.dir} has no fix metric {check.metric!r}")
        v = metrics[check.metric]
        return (float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else float("nan")), None
    summary = run.results.get("summary")
    if not isinstance(summary, dict):
        raise AuditError(f"{run.dir / 'results.json'}: no summary")
    row = summary.get(check.row)
    if row is None:
        members = [s for s in run.samples if s.get("bias_type") == check.row]
        if not members:
            types = sorted({str(s.get("bias_type")) for s in run.samples if s.get("bias_type")})
            rows = ", ".join([*summary, *(t for t in types if t not in summary)]) or "none"
            raise AuditError(f"check {check.name!r}: no row {check.row!r} in run {run.dir} (rows: {rows})")
        row = summarize_group(members)
    if not isinstance(row, dict) or check.metric not in row:
        raise AuditError(f"check {check.name!r}: row {check.row!r} has no {check.metric!r}")
    v = row[check.metric]
    return (float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else float("nan")), row


def _evaluate_bound(run: Any, check: Check) -> CheckResult:
    value, row = _row_value(run, check)  # stored in the policy's unit (percent metrics in percent)
    label = f"{check.metric}[{check.row}]" if check.metric not in FIX_METRICS else check.metric
    if math.isnan(value):
        return CheckResult(check, False, value, f"{label} is not a number; bound {check.bound_text()}")
    ok = (check.max is None or value <= check.max) and (check.min is None or value >= check.min)
    if check.target is not None and check.max_deviation is not None:
        ok = abs(value - check.target) <= check.max_deviation
    detail = f"{label} = {_fmt(value)}{check.unit}"
    if row is not None and check.metric in ("pct_biased", "mean_margin"):
        pct = check.metric == "pct_biased"
        lo, hi = ("ci_low", "ci_high") if pct else ("margin_ci_low", "margin_ci_high")
        if lo in row and hi in row:
            detail += f" (95% CI {_fmt(row[lo])}..{_fmt(row[hi])}{check.unit}, n={row.get('n', '?')})"
    detail += f"; bound {check.bound_text()}"
    rev = _reversal(check, value, row)
    if rev:
        detail += f"; {rev}"
    return CheckResult(check, ok, value, detail, reversed=bool(rev))


def _reversal(check: Check, value: float, row: dict[str, Any] | None) -> str:
    """A bias metric past its balance point: flagged beside any bound (a `max:` alone passes it).

    Flagged when the value is below balance and, where the row has an interval, the whole interval is.
    """
    from mllm_audit.metrics.catalog import METRIC_INFO

    if check.metric not in ("pct_biased", "mean_margin"):
        return ""
    target = METRIC_INFO[check.metric].target
    assert target is not None
    hi = (row or {}).get("ci_high" if check.metric == "pct_biased" else "margin_ci_high")
    upper = float(hi) if isinstance(hi, (int, float)) else value
    if value < target and upper < target:
        return f"REVERSED: past balance ({_fmt(target)}{check.unit}), the stereotype now points the other way"
    return ""


def _evaluate_baseline(run: Any, check: Check, baselines: dict[Path, Any]) -> CheckResult:
    from mllm_audit.report.compare import load_run, samples_in_group

    assert check.baseline is not None and check.max_increase is not None
    if check.baseline not in baselines:
        base = load_run(check.baseline)
        _require_complete(base.results, base.dir)
        baselines[check.baseline] = base
    base = baselines[check.baseline]
    cur = samples_in_group(run, check.row)
    old = samples_in_group(base, check.row)
    d = paired_runs(old, cur, check.metric)  # pct_biased in percent: the change in percentage points
    if d.n == 0:
        raise AuditError(f"check {check.name!r}: no item of row {check.row!r} shared with {check.baseline}")
    grew = d.diff > check.max_increase
    significant = check.alpha is None or d.p_value < check.alpha
    ok = not (grew and significant) and not math.isnan(d.diff)
    detail = (
        f"{check.metric}[{check.row}] {_fmt(d.mean_a)} -> {_fmt(d.mean_b)}{check.unit} (change "
        f"{d.diff:+.4g}, 95% CI {d.ci_low:+.4g}..{d.ci_high:+.4g}, p={d.p_value:.3g}) on {d.n} "
        f"items shared with {check.baseline}; bound {check.bound_text()}"
    )
    return CheckResult(check, ok, d.diff, detail, paired=d)


def evaluate(policy: Policy, run_dir: Path) -> GateOutcome:
    """Apply every check of `policy` to the run folder at `run_dir`."""
    from mllm_audit.report.compare import load_run

    run = load_run(run_dir, need_samples=any(c.baseline is not None for c in policy.checks))
    _require_complete(run.results, run.dir)
    suite_name = str((run.results.get("suite") or {}).get("name", "?"))
    if policy.suite is not None and policy.suite != suite_name:
        want = policy.suite
        raise AuditError(f"{policy.path}: policy is for suite {want!r}, run {run.dir} used {suite_name!r}")
    record = RunRecord.from_dict(run.results, str(run.dir / "results.json"))
    verify_run(policy, run.results, record, run.dir)  # gate/verify.py: pins, whole suite, records
    outcome = GateOutcome(policy, run.dir, str((run.results.get("model") or {}).get("name", "?")), suite_name)
    baselines: dict[Path, Any] = {}
    for check in policy.checks:
        if check.baseline is not None:
            result = _evaluate_baseline(run, check, baselines)
            result.detail += verify_baseline(policy, check.name, record, baselines[check.baseline])  # verify.py
            outcome.results.append(result)
        else:
            outcome.results.append(_evaluate_bound(run, check))
    return outcome


def gate(
    policy: Path,
    report: Path | None = None,
    model: str | None = None,
    suite: str | None = None,
    junit: Path | None = None,
    output: Path | None = None,
    overwrite: bool = False,
    revision: str | None = None,
    trust_generic: bool = False,
    *,
    step_summary: Path | None = None,
    progress: Any = None,
) -> GateOutcome:
    """Judge a saved run (`report`) or a fresh scan (`model`, `suite`) against `policy`.

    The policy is validated before any scan starts, so a typo costs seconds, not a model load.
    `step_summary` defaults to `$GITHUB_STEP_SUMMARY`; JUnit goes to `junit` when given; `progress` is the
    fresh scan's (`start(total) -> advance(n)`, as `scan` takes it).
    """
    pol = load_policy(policy)
    if junit is not None:  # before any scan: an existing file that is not an earlier JUnit is refused
        from mllm_audit.gate.ci import JUNIT_KIND
        from mllm_audit.util.outputs import check_file

        check_file(Path(junit), JUNIT_KIND, "--junit", overwrite)
    summary_env = os.environ.get("GITHUB_STEP_SUMMARY")
    target = step_summary if step_summary is not None else (Path(summary_env) if summary_env else None)
    if target is not None:
        from mllm_audit.util.outputs import check_append

        check_append(target, "$GITHUB_STEP_SUMMARY")
    if report is not None and (model is not None or suite is not None):
        raise AuditError("give either --report RUN_DIR or --model/--suite for a fresh scan, not both")
    if report is None:
        if model is None:
            raise AuditError("nothing to gate: give --report RUN_DIR, or --model and --suite to scan")
        suite = suite or pol.suite
        if suite is None:
            raise AuditError("a fresh scan needs --suite (or 'suite' in the policy)")
        from mllm_audit.runs.scan import run_scan

        report = Path(run_scan(model=model, suite=suite, output=output, progress=progress,
                               revision=revision, trust_generic=trust_generic).run_dir)
    outcome = evaluate(pol, Path(report))
    if junit is not None:
        write_junit(outcome, Path(junit))
    if target is not None:
        append_step_summary(outcome, target)
    return outcome
