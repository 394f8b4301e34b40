"""Model adapters: a registry of families, resolved lazily from cards (nothing heavy at import)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mllm_audit.errors import AuditError
from mllm_audit.models.cards import Card, registered_cards, resolve_card
from mllm_audit.util.registry import Registry, lazy

if TYPE_CHECKING:
    from mllm_audit.models.base import Adapter, LoadOptions

# family -> its `load(card, options) -> Adapter`
FAMILIES = {
    "blip2": "mllm_audit.models.families.blip2:load",
    "llava": "mllm_audit.models.families.llava:load",
    "instructblip": "mllm_audit.models.families.instructblip:load",
    "minigpt4": "mllm_audit.models.families.minigpt4:load",
    "janus": "mllm_audit.models.families.janus:load",
    "emu3": "mllm_audit.models.families.emu3:load",
    "generic": "mllm_audit.models.families.generic:load",
}
FAMILY_REGISTRY = Registry("model family", lazy(FAMILIES, "mllm_audit.families"))  # plugins too


def load_model(spec: str, options: LoadOptions | None = None) -> Adapter:
    """Load a model by card name, card path or model folder."""
    from mllm_audit.models.base import DTYPES, LoadOptions

    options = options or LoadOptions()
    if options.dtype not in DTYPES:
        raise AuditError(f"--dtype must be one of {', '.join(DTYPES)}, got {options.dtype!r}")
    card = resolve_card(spec, options.card, options.trust_generic)
    if options.revision:
        card.revision = options.revision  # loaded at this commit, and recorded as the run's revision
    known = FAMILY_REGISTRY.names()
    if card.family not in known:
        raise AuditError(f"model {spec!r}: family {card.family!r} is not supported ({', '.join(known)})")
    from mllm_audit.util.console import status

    with status(f"loading {card.name} ({card.family}) on {options.device}"):
        return FAMILY_REGISTRY.get(card.family)(card, options)


__all__ = ["Card", "FAMILIES", "load_model", "registered_cards", "resolve_card"]
