"""The real model cards carry their upstream prompts, and say where each template comes from."""

from __future__ import annotations

import pytest

from mllm_audit.models import registered_cards, resolve_card

# The real (hub / release) cards; cards added later should carry the same comments.
REAL = [
    "blip2-opt", "blip2-opt-6.7b", "llava-1.5-7b", "instructblip-vicuna-7b", "minigpt4", "minigpt4-13b",
    "janus-1.3b", "janus-pro-1b", "janus-pro-7b",
    # the generic family's current releases
    "qwen2.5-vl-7b-instruct", "qwen3-vl-8b-instruct", "gemma-3-4b-it", "smolvlm2-2.2b-instruct",
    "idefics3-8b-llama3", "paligemma2-3b-mix-448", "llava-onevision-qwen2-7b-ov", "llava-v1.6-mistral-7b",
    "llama-3.2-11b-vision-instruct", "internvl3-2b", "mistral-small-3.1-24b-instruct", "pixtral-12b",
]  # fmt: skip


def test_real_cards_are_registered() -> None:
    assert set(REAL) <= set(registered_cards())


@pytest.mark.parametrize("name", REAL)
def test_every_template_names_its_source(name: str) -> None:
    card = resolve_card(name)
    text = card.path.read_text(encoding="utf-8")  # type: ignore[union-attr]
    assert card.templates
    for task in card.templates:
        assert any(
            line.lstrip().startswith("#") and task in line.split("source:")[0] and "source:" in line
            for line in text.splitlines()
        ), f"{name}: template {task!r} has no '# {task}: source:' comment"


@pytest.mark.parametrize("name", ["blip2-opt", "blip2-opt-6.7b"])
def test_blip2_opt_captions_as_lavis_pretrain(name: str) -> None:
    card = resolve_card(name)
    # LAVIS' pretrain configs caption with an empty prompt; the old card fed an instruction.
    assert card.template("ic").format(prompt="Write a one-sentence caption for this image.") == ""
    assert card.template("vqa").format(prompt="Is it red?") == "Question: Is it red? Answer:"


def test_llava_vqa_suffix_as_trained() -> None:
    card = resolve_card("llava-1.5-7b")
    assert card.template("vqa").format(prompt="Is it red?") == (
        "Is it red?\nAnswer the question using a single word or phrase."
    )


def test_generic_cards_say_what_they_were_checked_against() -> None:
    """Each generic card names the revision it was checked against (or that none was) and its template source."""
    for name in REAL:
        card = resolve_card(name)
        if card.family != "generic":
            continue
        text = card.path.read_text(encoding="utf-8")  # type: ignore[union-attr]
        assert "Checked against:" in text and "source:" in text, name
