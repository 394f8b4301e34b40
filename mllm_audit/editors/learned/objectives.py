"""The edit objective (editors/objectives.py) for learned weight editors (MEND, KE).

A learned editor is trained under one objective, recorded in its state's hparams (`objective`, flip
when absent); `fix` refuses to use it under another, since the network learned to map that
objective's gradient to a weight change. Partners are train-split images: at training time the
train items themselves (`partner_pool`), at fix time the suite's train split.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from mllm_audit.editors.base import EditRequest
from mllm_audit.editors.objectives import expand, objective_of
from mllm_audit.errors import AuditError
from mllm_audit.scoring.contract import Request


def check_state_objective(editor: Any, options: Mapping[str, Any]) -> str:
    """Refuse an objective other than the one the state was trained under; return that one."""
    trained = objective_of(editor.hp)
    asked = options.get("objective")
    if asked is not None and objective_of(options) != trained:
        raise AuditError(f"editor {editor.name!r}: this state was trained under objective {trained!r}, not {asked!r}; "
                         f"train one with train-editor --objective {asked}")
    return trained


def objective_requests(editor: Any, requests: Sequence[EditRequest], items: Mapping[str, Any],
                       pool: Sequence[Any] | None = None) -> list[EditRequest]:
    """The edit requests plus their partner requests under the editor's objective."""
    return expand(requests, objective_of(editor.hp), getattr(editor, "partner_pool", ()) if pool is None else pool,
                  items)


def request_pair(r: EditRequest) -> tuple[Request, Request]:
    """(avoid, target) as a (y_more, y_less) pair: margin < 0 when the request's target wins."""
    return Request(r.prompt, r.avoid, r.image, r.task), Request(r.prompt, r.target, r.image, r.task)
