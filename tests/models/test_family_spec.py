"""Family load recipes are declared (models/loading.FamilySpec) and never change the card they load."""

from __future__ import annotations

import copy
from pathlib import Path

from mllm_audit.models.base import LoadOptions
from mllm_audit.models.cards import Card
from mllm_audit.models.families import llava
from mllm_audit.testing.tiny import save_tiny_llava


def test_loading_fills_a_copy_of_the_card(tmp_path: Path) -> None:
    folder = save_tiny_llava(tmp_path / "m")
    card = Card(name="tiny-llava", family="llava", weights=str(folder))
    before = copy.deepcopy(card)
    adapter = llava.load(card, LoadOptions())
    assert card == before  # the caller's card is untouched
    assert adapter.card.edit["vision_modules"] == ["model.multi_modal_projector"]
    assert adapter.card.keep_fp32 == list(llava.SPEC.keep_fp32)
    # A card that names its modules keeps them (the default is only a default).
    named = Card(name="tiny-llava", family="llava", weights=str(folder), edit={"text_modules": ["lm_head"]})
    assert llava.load(named, LoadOptions()).card.edit == {"text_modules": ["lm_head"]}
