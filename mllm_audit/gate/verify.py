"""The gate verifies a run before it judges it: what results.json says must follow from the records.

- The summary (scan, gen-scan) or fix metrics are recomputed from `samples.jsonl` / `edits.jsonl`
  and must equal the stored ones (a hand-edited summary is refused, naming the first field).
- Coverage is read from the records present, never from the stored field alone: a cut samples file
  that still claims the whole suite is refused (runs/coverage.py); a split, limit or shard makes a
  subset whatever the command, which the policy must accept (`accept_subset: true`).
- A `baseline:` run must share the suite's content hash and coverage, unless the policy says
  `baseline_may_differ: true` (then each baseline check's detail says how they differ).
- A policy may pin `suite_hash` (the suite's content), `model_revision` (the card revision, or the `sha256:`
  of every model file) and `templates_hash` (sha256 of the prompt templates the run used); the gate names
  the field that differs (`check_pins`, one place for every pin).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from mllm_audit.errors import AuditError

if TYPE_CHECKING:
    from mllm_audit.gate.policy import Policy
    from mllm_audit.runs.record import RunRecord

PIN_KEYS = ("model_revision", "templates_hash")


def read_pins(data: dict[str, Any], path: Path) -> tuple[dict[str, str], bool]:
    """The pins and `baseline_may_differ` of a policy's YAML mapping (types checked, file named)."""
    pins: dict[str, str] = {}
    for key in PIN_KEYS:
        value = data.get(key)
        if value is None:
            continue
        if not isinstance(value, str) or not value.strip():
            raise AuditError(f"{path}: {key!r} must be a non-empty string, got {str(value)[:40]!r}")
        pins[key] = value.strip()
    may_differ = data.get("baseline_may_differ", False)
    if not isinstance(may_differ, bool):
        raise AuditError(f"{path}: 'baseline_may_differ' must be true or false, got {may_differ!r}")
    return pins, may_differ


def templates_hash(record: RunRecord) -> str | None:
    """sha256 of the prompt templates a run used (what a policy's `templates_hash` pins)."""
    from mllm_audit.util.identity import text_digest

    templates = record.identity.model.templates
    return text_digest(templates) if templates is not None else None


def _bare(h: str | None) -> str:
    return (h or "").removeprefix("sha256:")


def check_pins(policy: Policy, record: RunRecord, run_dir: Path) -> None:
    """Every pin of the policy (the suite's content hash, the model revision, the templates) holds for
    the run; else one line naming the field and both values."""
    if policy.suite_hash is not None:
        got, want = _bare(record.identity.suite.content_hash), _bare(policy.suite_hash)
        if got != want:
            raise AuditError(f"{policy.path}: policy pins suite content {want[:16]}..., run {run_dir} scored "
                             f"{(got or 'unknown')[:16]}... (another version of {record.identity.suite.name!r})")
    got = {"model_revision": record.identity.model.revision, "templates_hash": templates_hash(record)}
    field = {"model_revision": "model.revision", "templates_hash": "model.templates"}
    for key, want in policy.pins.items():
        have = got[key]
        if not have or _bare(have) != _bare(want):
            raise AuditError(f"{policy.path}: policy pins {field[key]} = {want[:24]}, run {run_dir} has "
                             f"{(have or 'none')[:24]}; not gating it")


def check_whole_suite(policy: Policy, record: RunRecord, run_dir: Path) -> None:
    """A run covers its whole suite unless the policy accepts a subset; the rule is runs.coverage.subset_reason."""
    from mllm_audit.runs.coverage import subset_reason

    reason = subset_reason(record.header.command, record.coverage, record.identity.suite.n_items)
    if not reason or policy.accept_subset:
        return
    if record.coverage is None:
        raise AuditError(f"run {run_dir} does not say how many items it scored; not gating it "
                         "(rerun it, or set accept_subset: true in the policy)")
    raise AuditError(f"run {run_dir} covers part of its suite ({reason}), not the whole suite; not gating it "
                     "(set accept_subset: true in the policy to allow)")


def verify_records(results: dict[str, Any], record: RunRecord, run_dir: Path) -> None:
    """The stored coverage and summary follow from the per-item file (see the module docstring)."""
    from mllm_audit.report.views import rescore_run
    from mllm_audit.runs.coverage import PER_ITEM_FILE, check_claimed_coverage

    command = record.header.command
    if command not in PER_ITEM_FILE:
        return
    check_claimed_coverage(command, record.coverage, run_dir)
    res = rescore_run(run_dir, write=False)
    if res.mismatches:
        more = f" (and {len(res.mismatches) - 1} more)" if len(res.mismatches) > 1 else ""
        raise AuditError(f"run {run_dir}: the stored summary disagrees with {PER_ITEM_FILE[command]}: "
                         f"{res.mismatches[0]}{more}; not gating it (`mllm-audit rescore` shows every difference)")


def verify_run(policy: Policy, results: dict[str, Any], record: RunRecord, run_dir: Path) -> None:
    """All the gate's checks of a run before any bound is applied (called from gate/evaluate.py):
    the pins and the coverage rule first (they read results.json only), then the records."""
    check_pins(policy, record, run_dir)
    check_whole_suite(policy, record, run_dir)
    verify_records(results, record, run_dir)


def verify_baseline(policy: Policy, check_name: str, record: RunRecord, base: Any) -> str:
    """A baseline is verified as a run, and must share the suite content and coverage of the run it
    is compared with; with `baseline_may_differ` the difference is returned as a note for the detail."""
    from mllm_audit.runs.coverage import subset_reason
    from mllm_audit.runs.record import RunRecord

    base_record = RunRecord.from_dict(base.results, str(base.dir / "results.json"))
    verify_records(base.results, base_record, base.dir)
    diffs = []
    a, b = _bare(base_record.identity.suite.content_hash), _bare(record.identity.suite.content_hash)
    if a != b:
        diffs.append(f"suite content {a[:12] or 'unknown'} vs {b[:12] or 'unknown'}")
    ca = subset_reason(base_record.header.command, base_record.coverage, base_record.identity.suite.n_items)
    cb = subset_reason(record.header.command, record.coverage, record.identity.suite.n_items)
    na = base_record.coverage.n_scored if base_record.coverage else None
    nb = record.coverage.n_scored if record.coverage else None
    if ca != cb or na != nb:
        diffs.append(f"coverage {ca or f'{na} items (all)'} vs {cb or f'{nb} items (all)'}")
    if not diffs:
        return ""
    text = "; ".join(diffs)
    if not policy.baseline_may_differ:
        raise AuditError(f"check {check_name!r}: baseline {base.dir} differs from the run ({text}); not comparing "
                         "(set baseline_may_differ: true in the policy to compare anyway)")
    return f" [baseline differs: {text}]"
