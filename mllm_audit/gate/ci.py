"""The gate's outputs for CI: JUnit XML, a markdown table appended to `$GITHUB_STEP_SUMMARY`,
`::error::` annotations for failing checks, and the console table."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from mllm_audit.errors import AuditError
from mllm_audit.gate.policy import _fmt
from mllm_audit.metrics.bias import FIX_METRICS
from mllm_audit.util.text import shown, xml_safe

if TYPE_CHECKING:
    from mllm_audit.gate.evaluate import GateOutcome


JUNIT_KIND = "gate-junit"


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
    from mllm_audit.util import outputs

    doc = ('<?xml version="1.0" encoding="utf-8"?>\n' + outputs.marker_line(JUNIT_KIND, "<!--") + "\n"
           + ET.tostring(root, encoding="unicode") + "\n")
    try:
        outputs.write_text(path, doc, JUNIT_KIND)
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
    from mllm_audit.util import outputs

    outputs.check_append(path, "$GITHUB_STEP_SUMMARY")
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
