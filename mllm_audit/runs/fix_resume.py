"""`fix --resume`: continue a killed single or batch fix run where its edits.jsonl stopped.

Edits are appended and flushed as each one (or each batch) is measured, so a killed run keeps them. A
resumed run checks the run identity (model files, suite items and images, editor, mode, batch size,
settings, editor state: runs/record.check_resume names the first field that differs), keeps the
recorded edits of every whole batch in order, and redoes the rest. Batches are the same on both sides
(the items are chosen by the same pre-scan, in the same order), and every batch starts from the restored
model, so the resumed run's rows equal an uninterrupted run's. Sequential edits build on one another
and are not resumed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mllm_audit.errors import AuditError


def check_resume_options(resume: bool, output: Path | None, mode: str) -> None:
    if not resume:
        return
    if output is None:
        raise AuditError("--resume needs --output RUN_DIR (the folder of the fix run to continue)")
    if mode == "sequential":
        raise AuditError("--resume continues single and batch fix runs; sequential edits build on one another: "
                         "rerun with a new --output")


def kept_edits(out_dir: Path, record: Any, item_ids: list[str], k: int) -> tuple[str | None, list[dict[str, Any]],
                                                                               list[str]]:
    """(old run id, the recorded edits kept, touched parameters so far) of the run in `out_dir`.

    Only whole batches of `k` items, in order, are kept: a batch cut by the kill is redone whole."""
    from mllm_audit.runs.record import check_resume, read_record
    from mllm_audit.util.files import read_appended_jsonl

    if not (out_dir / "results.json").is_file():
        return None, [], []
    old = read_record(out_dir)
    cov = record.coverage  # another --split or --limit selects other items: refused by name, like scan's
    check_resume(old, record.identity, out_dir, "fix", verb="edited",
                 selection=(cov.split, cov.limit) if cov is not None else None)
    records, _ = read_appended_jsonl(out_dir / "edits.jsonl")
    by_id = {r.get("item_id"): r for r in records if isinstance(r, dict) and isinstance(r.get("post"), dict)}
    kept: list[dict[str, Any]] = []
    for start in range(0, len(item_ids), k):
        chunk = item_ids[start:start + k]
        if not all(i in by_id for i in chunk):
            break
        kept += [by_id[i] for i in chunk]
    touched = list((old.payload or {}).get("touched_parameters") or [])
    return old.header.run_id, kept, touched
