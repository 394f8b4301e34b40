"""What an edit aims at: `flip` (the paper's), `paired`, or `neutral`.

A single-item weight edit that makes the model prefer y_less on one group's image also moves the
same prompt on the other group's image: on the toy world, FT-L, FT-V, MEND and KE carried 45-86 %
of the edited margin change onto the mirror item (mirror_amplified 0.99-1.00). The objectives:

- `flip`: prefer y_less over y_more on the edited (image, prompt) — today's edit, the paper's.
- `paired`: the same, and on an image of the *other* group drawn from the suite's train split
  (same task and scenario, other group), prefer what that group's stereotype avoids (the edited
  item's y_more). The two pulls share the answer-prior direction with opposite signs, so it cancels:
  what is left is the group-dependent part, and both groups move toward balance.
- `neutral`: drive the answer log-odds to 0 on the edited image and on that partner image (squared
  margin): indifference, not reversal.

The partner comes from the train split only, so the eval split's mirror items (the images the
debias metrics measure) are never seen by any objective. Editors read the objective from their
options (`objective`); learned editors are trained under the objective they are used with.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from mllm_audit.errors import AuditError

if TYPE_CHECKING:  # torch stays unimported: the CLI validates --objective with this module before loading it
    import torch

    from mllm_audit.editors.base import EditRequest
    from mllm_audit.suites.items import Item

OBJECTIVES = ("flip", "paired", "neutral")
DEFAULT = "flip"
PAIR_SUFFIX = "#partner"
# Editors that take an objective (weight edits; IKE and SERAC route or prompt instead).
WITH_OBJECTIVE = ("ft-l", "ft-v", "mend", "ke")


def check_objective(objective: str | None, editor: str) -> None:
    """--objective: a known name, for an editor that takes one (no torch needed)."""
    if objective is None:
        return
    if objective not in OBJECTIVES:
        raise AuditError(f"--objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}")
    if editor not in WITH_OBJECTIVE:
        raise AuditError(f"--objective applies to {', '.join(WITH_OBJECTIVE)}, not --editor {editor}")


def objective_of(options: Mapping[str, Any]) -> str:
    """The objective named in an editor's options (default flip); an unknown name is one line."""
    name = options.get("objective") or DEFAULT
    if name not in OBJECTIVES:
        raise AuditError(f"objective must be one of {', '.join(OBJECTIVES)}, got {name!r}")
    return str(name)


def _same(a: Any, b: Any) -> bool:
    return a is None or b is None or a == b


def partner(item: Item | None, request: EditRequest, pool: Sequence[Item]) -> Item | None:
    """A train-split item showing the other group for the same task (and scenario, where the suite
    says): by meta.group where both items carry it, else the item whose answers are swapped (its
    stereotype points the other way, as a mirror's does). Deterministic in the edited item's id."""
    meta = item.meta if item is not None else {}
    mirror_images = {m.get("image") for m in meta.get("mirrors") or [] if isinstance(m, dict)}
    cands = []
    for c in pool:
        if c.split not in (None, "train") or c.task != request.task or c.image in mirror_images:
            continue
        if c.image == request.image or (item is not None and c.bias_type != item.bias_type):
            continue
        g, cg = meta.get("group"), c.meta.get("group")
        if g is not None and cg is not None:
            if g != cg and _same(meta.get("scenario"), c.meta.get("scenario")):
                cands.append(c)
        elif (c.y_more, c.y_less) == (request.target, request.avoid):
            cands.append(c)
    if not cands:
        return None
    cands.sort(key=lambda c: c.id)
    return cands[zlib.crc32(request.item_id.encode()) % len(cands)]


def expand(requests: Sequence[EditRequest], objective: str, pool: Sequence[Item],
           items: Mapping[str, Item] | None = None) -> list[EditRequest]:
    """The requests an edit optimises: the edits themselves, then (paired, neutral) one partner request
    per edit on its partner image, asking the edited prompt with the answers reversed (paired: prefer
    the edited item's y_more there) or as they are (neutral: only |margin| matters)."""
    from mllm_audit.editors.base import EditRequest

    reqs = list(requests)
    if objective == "flip":
        return reqs
    items = items or {}
    out = list(reqs)
    for r in reqs:
        p = partner(items.get(r.item_id), r, pool)
        if p is None:
            raise AuditError(f"objective {objective!r}: no train-split image of the other group for {r.item_id!r} "
                             "(the suite needs train items of the same task, with meta.group or swapped answers)")
        target, avoid = (r.avoid, r.target) if objective == "paired" else (r.target, r.avoid)
        out.append(EditRequest(r.item_id + PAIR_SUFFIX, r.prompt, target, avoid, p.image, r.task, None))
    return out


def edit_loss(objective: str, lp_target: torch.Tensor, n_target: torch.Tensor,
              lp_avoid: torch.Tensor | None) -> torch.Tensor:
    """Per request: the target's mean token NLL (flip, paired), or the squared answer log-odds
    (neutral: 0 at indifference, rising on either side, so an edit is not pushed past balance)."""
    if objective == "neutral":
        if lp_avoid is None:
            raise ValueError("the neutral objective needs the avoided answer's log-prob")
        return (lp_target - lp_avoid).pow(2)
    return -lp_target / n_target
