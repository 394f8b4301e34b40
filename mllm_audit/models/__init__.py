"""Model adapters: a registry of families, resolved lazily from cards (nothing heavy at import)."""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

from ..errors import AuditError
from .cards import Card, registered_cards, resolve_card

if TYPE_CHECKING:
    from .base import Adapter, LoadOptions

# family -> module with `load(card, options) -> Adapter`
FAMILIES = {
    "blip2": "mllm_audit.models.blip2",
    "llava": "mllm_audit.models.llava",
    "instructblip": "mllm_audit.models.instructblip",
    "minigpt4": "mllm_audit.models.minigpt4",
    "janus": "mllm_audit.models.janus",
    "emu3": "mllm_audit.models.emu3",
}


def load_model(spec: str, options: LoadOptions | None = None) -> Adapter:
    """Load a model by card name, card path or model folder."""
    from .base import DTYPES, LoadOptions

    options = options or LoadOptions()
    if options.dtype not in DTYPES:
        raise AuditError(f"--dtype must be one of {', '.join(DTYPES)}, got {options.dtype!r}")
    card = resolve_card(spec, options.card)
    if options.revision:
        card.revision = options.revision  # loaded at this commit, and recorded as the run's revision
    module = FAMILIES.get(card.family)
    if module is None:
        raise AuditError(f"model {spec!r}: family {card.family!r} is not supported ({', '.join(FAMILIES)})")
    from ..console import status

    with status(f"loading {card.name} ({card.family}) on {options.device}"):
        return import_module(module).load(card, options)


__all__ = ["Card", "FAMILIES", "load_model", "registered_cards", "resolve_card"]
