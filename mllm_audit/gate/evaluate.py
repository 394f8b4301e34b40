"""The release gate: check a run against a YAML policy and exit 0 (pass), 1 (a check fails), 2 (bad input).

A policy is a list of checks, each a bound on one number of one summary row (or a fix metric), or
a bound on the paired change against a saved baseline run. The gate only reads run folders, so
what it judges is exactly what was reported, and it refuses a run that says `complete: false`.
For CI it writes JUnit XML, appends a markdown table to `$GITHUB_STEP_SUMMARY` and emits
`::error::` annotations for failing checks.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mllm_audit.errors import AuditError
from mllm_audit.metrics.bias import ALL, FIX_METRICS, summarize_group
from mllm_audit.metrics.catalog import PERCENT_METRICS, SUMMARY_METRICS
from mllm_audit.metrics.stats import PAIRED_METRICS, PairedDiff, paired_runs
from mllm_audit.runs.record import READABLE_SCHEMAS, RunRecord
from mllm_audit.util.text import clipped, shown, xml_safe

# Bounds on these are written in percent (and `max_increase` in percentage points), as every table
# shows them; results.json stores fractions. A bound between 0 and 1 is refused as a likely fraction.
METRICS = SUMMARY_METRICS + FIX_METRICS
_TOP_KEYS = ("suite", "description", "checks", "accept_subset", "suite_hash")
_CHECK_KEYS = ("name", "bias_type", "metric", "max", "min", "baseline", "max_increase", "alpha")


@dataclass(frozen=True)
class Check:
    """One policy line: a bound on a metric of one row, or on its paired change vs a baseline."""

    name: str
    metric: str
    bias_type: str | None = None
    max: float | None = None
    min: float | None = None
    baseline: Path | None = None
    max_increase: float | None = None
    alpha: float | None = None

    @property
    def row(self) -> str:
        return self.bias_type or ALL

    @property
    def scale(self) -> float:
        """Factor from the stored value to the policy's unit (percent for PERCENT_METRICS)."""
        return 100.0 if self.metric in PERCENT_METRICS else 1.0

    @property
    def unit(self) -> str:
        return " %" if self.metric in PERCENT_METRICS else ""

    def bound_text(self) -> str:
        u = " pp" if self.metric in PERCENT_METRICS else ""
        if self.baseline is not None:
            text = f"increase <= {self.max_increase:g}{u}"
            return text + (f" (if p < {self.alpha:g})" if self.alpha is not None else "")
        if self.max is not None and self.min is not None:
            return f"{self.min:g} <= x <= {self.max:g}{self.unit}"
        return f"<= {self.max:g}{self.unit}" if self.max is not None else f">= {self.min:g}{self.unit}"


@dataclass(frozen=True)
class Policy:
    path: Path
    checks: list[Check]
    suite: str | None = None
    description: str = ""
    accept_subset: bool = False  # a run scored on part of the suite (--limit, --split) may be gated
    suite_hash: str | None = None  # pinned content hash of the suite's items


def _number(where: str, key: str, value: Any) -> float:
    try:  # a YAML integer can be too large for a float (OverflowError)
        ok = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(float(value))
    except OverflowError:
        ok = False
    if not ok:
        shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:40] + "..."
        raise AuditError(f"{where}: {key!r} must be a finite number, got {shown}")
    return float(value)


def _text(where: str, key: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise AuditError(f"{where}: {key!r} must be a non-empty string, got {clipped(value)}")
    return value


def _parse_check(obj: Any, where: str, policy_dir: Path) -> Check:
    if not isinstance(obj, dict):
        raise AuditError(f"{where}: a check must be a mapping, got {type(obj).__name__}")
    if "name" in obj:
        where = f"{where} ({_text(where, 'name', obj['name'])!r})"
    unknown = [k for k in obj if k not in _CHECK_KEYS]
    if unknown:
        raise AuditError(f"{where}: unknown key {unknown[0]!r} (allowed: {', '.join(_CHECK_KEYS)})")
    if "metric" not in obj:
        raise AuditError(f"{where}: missing 'metric'")
    metric = _text(where, "metric", obj["metric"])
    if metric not in METRICS:
        raise AuditError(f"{where}: unknown metric {metric!r} (allowed: {', '.join(METRICS)})")
    bias_type = _text(where, "bias_type", obj["bias_type"]) if obj.get("bias_type") is not None else None
    if bias_type is not None and metric in FIX_METRICS:
        raise AuditError(f"{where}: fix metric {metric!r} is run-wide; drop 'bias_type'")
    nums = {k: _number(where, k, obj[k]) for k in ("max", "min", "max_increase", "alpha") if k in obj}
    if metric in PERCENT_METRICS:
        for key in ("max", "min", "max_increase"):
            v = nums.get(key)
            if v is not None and 0 < abs(v) < 1:
                unit = "percentage points" if key == "max_increase" else "percent"
                raise AuditError(
                    f"{where}: {metric} is in {unit}, as the tables show: write {100 * v:g} for {100 * v:g} % "
                    f"(got {key}: {v:g}; fractions are refused)"
                )
            if v is not None and key != "max_increase" and not 0 <= v <= 100:
                raise AuditError(f"{where}: {metric} is a percentage; {key!r} must be within 0..100, got {v:g}")
    baseline = None
    if "baseline" in obj:
        raw = Path(_text(where, "baseline", obj["baseline"])).expanduser()
        baseline = raw if raw.is_absolute() else policy_dir / raw
        if metric not in PAIRED_METRICS:
            allowed = " or ".join(PAIRED_METRICS)
            raise AuditError(f"{where}: a baseline check compares {allowed}, not {metric!r}")
        if "max_increase" not in nums:
            raise AuditError(f"{where}: a baseline check needs 'max_increase'")
        if "max" in nums or "min" in nums:
            raise AuditError(f"{where}: a baseline check bounds the change; put 'max'/'min' in another check")
        if nums["max_increase"] < 0:
            raise AuditError(f"{where}: 'max_increase' must be >= 0")
        if "alpha" in nums and not 0 < nums["alpha"] < 1:
            raise AuditError(f"{where}: 'alpha' must be between 0 and 1")
        if not (baseline / "results.json").is_file():
            rel = "" if raw.is_absolute() else f"; relative paths are resolved from the policy's folder {policy_dir}"
            raise AuditError(f"{where}: baseline run not found: {baseline} (no results.json{rel})")
    else:
        for key in ("max_increase", "alpha"):
            if key in nums:
                raise AuditError(f"{where}: {key!r} needs a 'baseline' run")
        if "max" not in nums and "min" not in nums:
            raise AuditError(f"{where}: no bound; give 'max' and/or 'min'")
        if "max" in nums and "min" in nums and nums["min"] > nums["max"]:
            raise AuditError(f"{where}: 'min' ({nums['min']:g}) is above 'max' ({nums['max']:g})")
    default_name = f"{metric} {bias_type or ALL}" + (" vs baseline" if baseline is not None else "")
    return Check(
        name=str(obj.get("name") or default_name),
        metric=metric,
        bias_type=bias_type,
        max=nums.get("max"),
        min=nums.get("min"),
        baseline=baseline,
        max_increase=nums.get("max_increase"),
        alpha=nums.get("alpha"),
    )


def load_policy(path: Path | str) -> Policy:
    """Read and strictly validate a policy YAML; every problem is one line naming file and check.

    Relative baseline paths resolve against the policy file's folder, so a policy means the same
    thing from whichever directory CI runs it.
    """
    from mllm_audit.util.files import read_yaml

    path = Path(path)
    if not path.exists():
        raise AuditError(f"policy file not found: {path}")
    data = read_yaml(path)
    if not isinstance(data, dict):
        raise AuditError(f"{path}: expected a mapping with 'checks' at the top level")
    unknown = [k for k in data if k not in _TOP_KEYS]
    if unknown:
        raise AuditError(f"{path}: unknown key {unknown[0]!r} (allowed: {', '.join(_TOP_KEYS)})")
    suite = _text(str(path), "suite", data["suite"]) if data.get("suite") is not None else None
    description = _text(str(path), "description", data["description"]) if data.get("description") else ""
    raw = data.get("checks")
    if not isinstance(raw, list) or not raw:
        raise AuditError(f"{path}: 'checks' must be a non-empty list")
    accept_subset = data.get("accept_subset", False)
    if not isinstance(accept_subset, bool):
        raise AuditError(f"{path}: 'accept_subset' must be true or false, got {accept_subset!r}")
    suite_hash = _text(str(path), "suite_hash", data["suite_hash"]) if data.get("suite_hash") is not None else None
    checks = [_parse_check(obj, f"{path}: checks[{i}]", path.parent) for i, obj in enumerate(raw)]
    seen: set[str] = set()
    for c in checks:
        if c.name in seen:
            raise AuditError(f"{path}: two checks are named {c.name!r}; names must be unique")
        seen.add(c.name)
    return Policy(path=path, checks=checks, suite=suite, description=description, accept_subset=accept_subset,
                  suite_hash=suite_hash)


# ------------------------------------------------------------------------------------- evaluation


@dataclass
class CheckResult:
    check: Check
    passed: bool
    value: float | None
    detail: str
    paired: PairedDiff | None = None


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


def _fmt(x: float | None) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "nan"
    return f"{x:.4g}"


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
    value, row = _row_value(run, check)
    value *= check.scale
    label = f"{check.metric}[{check.row}]" if check.metric not in FIX_METRICS else check.metric
    if math.isnan(value):
        return CheckResult(check, False, value, f"{label} is not a number; bound {check.bound_text()}")
    ok = (check.max is None or value <= check.max) and (check.min is None or value >= check.min)
    detail = f"{label} = {_fmt(value)}{check.unit}"
    if row is not None and check.metric in ("pct_biased", "mean_margin"):
        pct = check.metric == "pct_biased"
        lo, hi = ("ci_low", "ci_high") if pct else ("margin_ci_low", "margin_ci_high")
        if lo in row and hi in row:
            s = check.scale
            detail += f" (95% CI {_fmt(s * row[lo])}..{_fmt(s * row[hi])}{check.unit}, n={row.get('n', '?')})"
    detail += f"; bound {check.bound_text()}"
    return CheckResult(check, ok, value, detail)


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
    d = paired_runs(old, cur, check.metric)
    if d.n == 0:
        raise AuditError(f"check {check.name!r}: no item of row {check.row!r} shared with {check.baseline}")
    s = check.scale
    grew = s * d.diff > check.max_increase
    significant = check.alpha is None or d.p_value < check.alpha
    ok = not (grew and significant) and not math.isnan(d.diff)
    detail = (
        f"{check.metric}[{check.row}] {_fmt(s * d.mean_a)} -> {_fmt(s * d.mean_b)}{check.unit} (change "
        f"{s * d.diff:+.4g}, 95% CI {s * d.ci_low:+.4g}..{s * d.ci_high:+.4g}, p={d.p_value:.3g}) on {d.n} "
        f"items shared with {check.baseline}; bound {check.bound_text()}"
    )
    return CheckResult(check, ok, s * d.diff, detail, paired=d)


def check_coverage(policy: Policy, record: RunRecord, run_dir: Path) -> None:
    """A run judged against a policy must cover the policy's suite: all of it (unless the policy
    accepts a subset), and, when the policy pins the suite's content hash, exactly that content."""
    if policy.suite_hash is not None:
        got = record.identity.suite.content_hash or ""
        want = policy.suite_hash.removeprefix("sha256:")
        if got != want:
            raise AuditError(f"{policy.path}: policy pins suite content {want[:16]}..., run {run_dir} scored "
                             f"{(got or 'unknown')[:16]}... (another version of {record.identity.suite.name!r})")
    if policy.accept_subset:
        return
    cov = record.coverage
    if cov is None:
        raise AuditError(f"run {run_dir} does not say how many items it scored; not gating it "
                         "(rerun it, or set accept_subset: true in the policy)")
    if cov.subset:
        raise AuditError(f"run {run_dir} scored {cov.describe()}, not the whole suite "
                         f"({cov.n_items} items); not gating it (set accept_subset: true in the policy to allow)")


def evaluate(policy: Policy, run_dir: Path) -> GateOutcome:
    """Apply every check of `policy` to the run folder at `run_dir`."""
    from mllm_audit.report.compare import load_run

    run = load_run(run_dir, need_samples=any(c.baseline is not None for c in policy.checks))
    _require_complete(run.results, run.dir)
    suite_name = str((run.results.get("suite") or {}).get("name", "?"))
    if policy.suite is not None and policy.suite != suite_name:
        want = policy.suite
        raise AuditError(f"{policy.path}: policy is for suite {want!r}, run {run.dir} used {suite_name!r}")
    check_coverage(policy, RunRecord.from_dict(run.results, str(run.dir / "results.json")), run.dir)
    outcome = GateOutcome(policy, run.dir, str((run.results.get("model") or {}).get("name", "?")), suite_name)
    baselines: dict[Path, Any] = {}
    for check in policy.checks:
        if check.baseline is not None:
            outcome.results.append(_evaluate_baseline(run, check, baselines))
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
    *,
    step_summary: Path | None = None,
) -> GateOutcome:
    """Judge a saved run (`report`) or a fresh scan (`model`, `suite`) against `policy`.

    The policy is validated before any scan starts, so a typo costs seconds, not a model load.
    `step_summary` defaults to `$GITHUB_STEP_SUMMARY`; JUnit goes to `junit` when given.
    """
    pol = load_policy(policy)
    if report is not None and (model is not None or suite is not None):
        raise AuditError("give either --report RUN_DIR or --model/--suite for a fresh scan, not both")
    if report is None:
        if model is None:
            raise AuditError("nothing to gate: give --report RUN_DIR, or --model and --suite to scan")
        suite = suite or pol.suite
        if suite is None:
            raise AuditError("a fresh scan needs --suite (or 'suite' in the policy)")
        from mllm_audit.runs.scan import run_scan

        report = Path(run_scan(model=model, suite=suite, output=output).run_dir)
    outcome = evaluate(pol, Path(report))
    if junit is not None:
        write_junit(outcome, Path(junit))
    summary_env = os.environ.get("GITHUB_STEP_SUMMARY")
    target = step_summary if step_summary is not None else (Path(summary_env) if summary_env else None)
    if target is not None:
        append_step_summary(outcome, target)
    return outcome


# ---------------------------------------------------------------------------------------- outputs


def write_junit(outcome: GateOutcome, path: Path) -> None:
    """One <testcase> per check; a failing check carries a <failure> with the measured numbers."""
    import xml.etree.ElementTree as ET

    n, nf = len(outcome.results), len(outcome.failures)
    root = ET.Element("testsuites", name="mllm-audit gate", tests=str(n), failures=str(nf), errors="0")
    suite = ET.SubElement(
        root, "testsuite", name=f"mllm-audit gate: {outcome.policy.path.name}",
        tests=str(n), failures=str(nf), errors="0", skipped="0",
    )
    props = ET.SubElement(suite, "properties")
    for k, v in (("run_dir", str(outcome.run_dir)), ("model", outcome.model), ("suite", outcome.suite),
                 ("policy", str(outcome.policy.path))):
        ET.SubElement(props, "property", name=k, value=v)
    classname = f"mllm_audit.gate.evaluate.{outcome.policy.path.stem}"
    for r in outcome.results:
        case = ET.SubElement(suite, "testcase", name=r.check.name, classname=classname, time="0")
        if r.passed:
            ET.SubElement(case, "system-out").text = r.detail
        else:
            ET.SubElement(case, "failure", message=r.detail, type="BiasGateFailure").text = r.detail
    for el in root.iter():  # user text (check names, paths, details) may hold what XML 1.0 forbids
        el.attrib.update({k: xml_safe(v) for k, v in el.attrib.items()})
        if el.text:
            el.text = xml_safe(el.text)
    ET.indent(root)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)
    except OSError as e:
        raise AuditError(f"cannot write JUnit file {path}: {e.strerror}") from None


def _md_cell(text: str) -> str:
    return shown(" ".join(str(text).split()), markup=False).replace("|", "\\|")


def step_summary_markdown(outcome: GateOutcome) -> str:
    nf, n = len(outcome.failures), len(outcome.results)
    head = "passed" if outcome.passed else f"FAILED ({nf} of {n} checks)"
    lines = [
        f"### mllm-audit gate: {head}",
        "",
        f"Run `{_md_cell(str(outcome.run_dir))}`, model `{_md_cell(outcome.model)}`, "
        f"suite `{_md_cell(outcome.suite)}`, policy `{_md_cell(str(outcome.policy.path))}`",
        "",
        "| Result | Check | Row | Metric | Value | Bound | Detail |",
        "|---|---|---|---|---:|---|---|",
    ]
    for r in outcome.results:
        c = r.check
        row = "-" if c.metric in FIX_METRICS else c.row
        metric = f"{c.metric} change" if c.baseline is not None else c.metric
        lines.append(
            f"| {'pass' if r.passed else '**FAIL**'} | {_md_cell(c.name)} | {_md_cell(row)} | {metric} | "
            f"{_fmt(r.value)} | {_md_cell(c.bound_text())} | {_md_cell(r.detail)} |"
        )
    return "\n".join(lines) + "\n\n"


def append_step_summary(outcome: GateOutcome, path: Path) -> None:
    try:
        with open(path, "a", encoding="utf-8") as f:
            f.write(step_summary_markdown(outcome))
    except OSError as e:
        raise AuditError(f"cannot append to step summary {path}: {e.strerror}") from None


def _escape_data(s: str) -> str:
    lines = [shown(part, markup=False) for part in s.replace("%", "%25").split("\n")]
    return "%0A".join(line.replace("\\x0d", "%0D") for line in lines)


def _escape_prop(s: str) -> str:
    return _escape_data(s).replace(":", "%3A").replace(",", "%2C")


def github_error_lines(outcome: GateOutcome) -> list[str]:
    """GitHub Actions workflow commands that annotate the job with each failing check."""
    return [
        f"::error title={_escape_prop('mllm-audit gate: ' + r.check.name)}::{_escape_data(r.detail)}"
        for r in outcome.failures
    ]


def render_outcome(outcome: GateOutcome, console: Any) -> None:
    """A table of checks, pass in green and fail in red (plain when NO_COLOR is set)."""

    title = f"gate {outcome.policy.path.name} on {outcome.run_dir}"
    from mllm_audit.report.tables import new_table

    table = new_table(title)
    for col in ("result", "check", "row", "metric", "value", "bound"):
        table.add_column(col, justify="right" if col == "value" else "left")
    for r in outcome.results:
        c = r.check
        table.add_row(
            "[green]pass[/]" if r.passed else "[bold red]FAIL[/]",
            shown(c.name),
            "-" if c.metric in FIX_METRICS else shown(c.row),
            f"{c.metric} change" if c.baseline is not None else c.metric,
            _fmt(r.value),
            shown(c.bound_text()),
        )
    console.print(table)
    for r in outcome.failures:
        console.print(f"[red]FAIL[/] {shown(r.check.name)}: {shown(r.detail)}", soft_wrap=True)
    n, nf = len(outcome.results), len(outcome.failures)
    if outcome.passed:
        console.print(f"[green]gate passed[/]: {n} of {n} checks")
    else:
        console.print(f"[bold red]gate failed[/]: {nf} of {n} checks failed")
