"""`fix --save`: write the model that the recorded `saved_model` metrics measured, under a new card name.

In sequential mode that is the run's own final model (the accumulated edits the rows measured, passed
in as `applied`); in single and batch mode the rows measure one model per edit or batch, so the saved
model applies every edit at once and is measured itself. Either way the folder's card is renamed to the
base name plus the edit (`toy+ft-l-sequential-3`), so later scans, `compare` and the gate summary tell
the edited model from its base.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mllm_audit.errors import AuditError
from mllm_audit.metrics.edits import aggregate, edit_record
from mllm_audit.models.cards import write_folder_card
from mllm_audit.runs.probes import Probe, evaluate
from mllm_audit.util.files import atomic_write_json
from mllm_audit.util.folders import OutputFolder

if TYPE_CHECKING:
    from mllm_audit.editors.base import Editor
    from mllm_audit.models.base import Adapter
    from mllm_audit.runs.record import RunRecord
    from mllm_audit.suites.items import Item

HOW = {
    "sequential": "the sequential run's final model: every edit applied one after another, as the rows measured",
    "batch": "every edit applied at once (one batch of all items); the rows measured batches of the run's size",
    "single": "every edit applied at once (one batch of all items); the rows measured one edit at a time",
}


def edited_name(base: str, editor: str, mode: str, n_edits: int) -> str:
    """The saved model's card name: the base name plus the edit."""
    return f"{base}+{editor}-{mode}-{n_edits}"


def save_edited(
    adapter: Adapter, editor: Editor, requests: Sequence[Any], ctx: Any, out: Path, record: RunRecord,
    items: Sequence[Item], probes: Sequence[Probe], pre: Sequence[dict[str, Any]], load: Callable[[str], Any],
    batch_size: int, row_metrics: dict[str, float | None], applied: Any = None,
) -> dict[str, Any]:
    """Measure the edited model (`applied`, or every edit applied now), save it with its manifest; restore
    what this function applied. The folder is built under a temporary name and renamed into place only
    when weights, processor, card and manifest are all written: a killed save leaves nothing loadable."""
    mode = str(record.payload.get("mode", "single"))
    edited: Any = applied if applied is not None else editor.apply(adapter, list(requests), ctx)
    folder = OutputFolder(out, "--save", "fix")
    try:
        if not edited.touched:
            raise AuditError(f"editor {editor.name!r} changes no weights; there is nothing to --save")
        post = evaluate(adapter, list(probes), load, edited.transform, batch_size, edited.score)
        rows = [edit_record(it, p, q, len(edited.touched)) for it, p, q in zip(items, pre, post, strict=True)]
        metrics = aggregate(rows, intervals=True)  # the same keys as the run's `metrics`
        # Effect sizes belong to each edit call (one edit's norm vs the batch's), not to the model: not compared.
        differs = [k for k in metrics if not _close(metrics[k], row_metrics.get(k))
                   and k.removesuffix("_ci_low").removesuffix("_ci_high") not in _EFFECT_KEYS]
        name = edited_name(adapter.card.name, editor.name, mode, len(requests))
        tmp = folder.open()
        adapter.model.save_pretrained(tmp)
        proc = getattr(adapter, "processor", None)
        (proc or adapter.tokenizer).save_pretrained(tmp)
        # The card (templates included) travels with the weights: `scan --model OUT` is prompted as before.
        write_folder_card(dataclasses.replace(adapter.card, name=name), tmp,
                          f"{adapter.card.name} edited by mllm-audit fix --editor {editor.name} --mode {mode}")
        delta = edited.delta()
        saved = {
            "path": str(out),
            "name": name,
            "n_edits": len(requests),
            "how": HOW.get(mode, HOW["single"]),
            "metrics": metrics,
            "differs_from_rows": differs,
        }
        atomic_write_json(
            tmp / "mllm-audit-edit.json",
            {
                "schema": "mllm-audit/edited-model/v2",
                "run_id": record.header.run_id,
                "name": name,
                "how": saved["how"],
                "base_model": record.identity.as_dict()["model"],
                "suite": record.identity.as_dict()["suite"],
                "editor": record.payload["editor"],
                "mode": mode,
                "items": [r.item_id for r in requests],
                "metrics": metrics,
                "changed": {n: {"shape": list(d.shape), "l2": float(d.float().norm())} for n, d in delta.items()},
            },
        )
        folder.commit()
        return saved
    finally:
        if not folder.committed:
            folder.abandon()
        if applied is None:
            edited.restore()


_EFFECT_KEYS = ("weight_delta_norm", "steps", "opposite_targets")


def _close(a: float | None, b: float | None) -> bool:
    return (a is None and b is None) or (a is not None and b is not None and abs(a - b) <= 1e-9)
