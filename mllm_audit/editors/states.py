"""Trained editor states a model card ships (`edit: {states: {mend: DIR, ...}}`, relative to the card).

Learned editors (MEND, KE, SERAC) need a state trained for the model. A card may name one per
editor (`NAME` for the text side, `NAME:vision` for the vision side), so that `fix --editor mend`
on that model works as typed; `--editor-state DIR` always wins. Only folders of
state.safetensors + config.json are read (editors/learned.py), never a pickle.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from mllm_audit.errors import AuditError

if TYPE_CHECKING:
    from mllm_audit.models.cards import Card


def shipped_state(card: Card, editor: str, scope: str | None) -> Path | None:
    """The folder the card names for `editor` on `scope` (text by default), or None."""
    states = (card.edit or {}).get("states") or {}
    if not isinstance(states, dict):
        raise AuditError(f"model card {card.path}: edit.states must map editor names to folders")
    key = editor if scope in (None, "text") else f"{editor}:{scope}"
    rel = states.get(key)
    if rel is None:
        return None
    if not isinstance(rel, str):
        raise AuditError(f"model card {card.path}: edit.states.{key} must be a folder path")
    base = card.path.parent if card.path is not None else Path(".")
    folder = (base / rel).resolve()
    # A card copied into a model folder (fix --save) keeps the entry but not the state, which was
    # trained for the unedited weights anyway: no state then, and fix asks for --editor-state.
    return folder if folder.is_dir() else None


def card_state(model: str, editor: str, scope: str | None, card: str | None = None) -> Path | None:
    """`shipped_state` for a model spec, read from its card without loading the model."""
    from mllm_audit.models.cards import resolve_card

    try:
        the_card = resolve_card(model, card)
    except AuditError:
        return None  # the model's own error comes when it is loaded
    return shipped_state(the_card, editor, scope)
