"""What a run folder covers, read from the records it holds rather than from what results.json says.

A stored `coverage` block is a claim; the per-item file (`samples.jsonl`, `edits.jsonl`) is the
evidence. Readers that judge a run (the gate) or rewrite it (`rescore --write`) check the one
against the other here, so that a cut samples file cannot pass for the whole suite.
"""

from __future__ import annotations

from pathlib import Path

from mllm_audit.errors import AuditError
from mllm_audit.runs.record import Coverage

# The file whose lines are the run's items, per command; its lines are the evidence of coverage.
PER_ITEM_FILE = {"scan": "samples.jsonl", "gen-scan": "samples.jsonl", "fix": "edits.jsonl"}
# A split the command works on by default is not a subset of what it covers (fix edits eval).
DEFAULT_SPLIT = {"fix": "eval"}


def present_items(run_dir: Path, command: str) -> int | None:
    """Distinct item ids (or prompts) in the run's per-item file; None for a run type without one."""
    from mllm_audit.util.files import jsonl_objects

    name = PER_ITEM_FILE.get(command)
    if name is None:
        return None
    path = Path(run_dir) / name
    if not path.is_file():
        raise AuditError(f"{run_dir}: no {name}; a {command} run's coverage is read from it")
    ids: set[str] = set()
    n = 0
    for where, obj in jsonl_objects(path):
        if not isinstance(obj, dict):
            raise AuditError(f"{where}: a record must be a JSON object")
        n += 1
        key = obj.get("item_id", obj.get("prompt_id", obj.get("prompt")))
        ids.add(str(key) if key is not None else f"#{n}")
    return n if command == "gen-scan" else len(ids)


def check_claimed_coverage(command: str, cov: Coverage | None, run_dir: Path) -> int | None:
    """Refuse a record whose coverage claims more (or other) than its per-item file holds.

    scan and gen-scan: `n_scored` must equal the records present; fix: the edits present cannot
    exceed the items it says it examined. Returns the count present (None: nothing to check)."""
    present = present_items(run_dir, command)
    if present is None or cov is None:
        return present
    claimed = cov.n_scored
    name = PER_ITEM_FILE[command]
    if command == "fix":
        if present > claimed:
            raise AuditError(f"{run_dir}: {name} holds {present} edits but coverage says {claimed} items were "
                             "examined; the record does not match its edits")
    elif present != claimed:
        raise AuditError(f"{run_dir}: coverage says {claimed} of {cov.n_items} items were scored but "
                         f"{name} holds {present}; the record does not match its samples")
    return present


def subset_reason(command: str, cov: Coverage | None, suite_items: int | None = None) -> str:
    """How a run covers less than its suite ('' when it covers all of it): fewer scored than the suite
    holds, or a split, limit or shard that narrowed it, whatever the command (its default split excepted)."""
    if cov is None:
        return "no coverage recorded"
    why = []
    if cov.n_scored < cov.n_items:
        why.append(f"{cov.n_scored} of {cov.n_items} items")
    if cov.split and cov.split != DEFAULT_SPLIT.get(command):
        why.append(f"--split {cov.split}")
    if cov.limit is not None and (cov.limit < cov.n_items or (suite_items is not None and cov.limit < suite_items)):
        why.append(f"--limit {cov.limit}")
    if cov.shard:
        why.append(f"shard {cov.shard}")
    return ", ".join(why)
