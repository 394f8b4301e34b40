"""Janus conformance: a tiny random JanusForConditionalGeneration saved and loaded by path.

Understanding follows the scoring contract like every family; generation is seeded and reproducible.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from family_checks import check_against_stock, check_invariance, labels_for

from mllm_audit.models import load_model
from mllm_audit.scoring.contract import Request, tokenize
from mllm_audit.testing.tiny import save_tiny_janus


@pytest.fixture(scope="module")
def adapter(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201 - an Adapter
    return load_model(str(save_tiny_janus(tmp_path_factory.mktemp("m") / "tiny-janus")))


def stock(adapter, req: Request, imgs) -> float:  # noqa: ANN001
    """JanusForConditionalGeneration's own forward with labels; the processor builds our prefix."""
    prefix, cont = tokenize(adapter, req)
    ids, labels = labels_for(prefix, cont)
    kwargs = {}
    if req.image is not None:
        text = adapter.chat_text(adapter.format_prompt(req.prompt, req.task), True)
        inputs = adapter.processor(images=imgs[req.image], text=text, return_tensors="pt")
        assert inputs["input_ids"][0].tolist() == prefix
        kwargs["pixel_values"] = inputs["pixel_values"]
    with torch.no_grad():
        out = adapter.model(input_ids=ids, labels=labels, **kwargs)
    return -out.loss.item() * len(cont)


def test_family_from_config(adapter) -> None:  # noqa: ANN001
    assert adapter.card.family == "janus"
    assert adapter.n_image_tokens == 16
    ids = adapter.prompt_ids("a photo of", None, with_image=True)
    start = ids.index(adapter.boi_token_id)
    assert ids[start + 1 : start + 17] == [adapter.image_token_id] * 16 and ids[start + 17] == adapter.eoi_token_id


def test_scores_equal_stock_forward(adapter) -> None:  # noqa: ANN001
    worst = check_against_stock(adapter, stock)
    print(f"janus max |score - stock| = {worst:.2e}")


def test_invariant_to_batch_padding_and_order(adapter) -> None:  # noqa: ANN001
    check_invariance(adapter)


def test_generation_is_seeded_and_reproducible(adapter) -> None:  # noqa: ANN001
    prompts = ["a photo of a doctor", "a photo"]
    a = adapter.generate_images(prompts, n=3, seed=7, batch_size=4)
    b = adapter.generate_images(prompts, n=3, seed=7, batch_size=4)
    c = adapter.generate_images(prompts, n=3, seed=8, batch_size=4)
    assert len(a) == 6 and a[0].size == (32, 32) and a[0].mode == "RGB"
    arr = [np.asarray(x) for x in a]
    assert all(np.array_equal(x, np.asarray(y)) for x, y in zip(arr, b, strict=True))
    assert not all(np.array_equal(x, np.asarray(y)) for x, y in zip(arr, c, strict=True))


def test_generation_uses_card_cfg(adapter) -> None:  # noqa: ANN001
    adapter.card.generation = {"guidance_scale": 3.0, "temperature": 0.7}
    try:
        cfg = adapter.generation_config()
        assert cfg.guidance_scale == 3.0 and cfg.temperature == 0.7 and cfg.do_sample
        assert cfg.generation_kwargs["boi_token_id"] == adapter.boi_token_id
    finally:
        adapter.card.generation = {}


@pytest.mark.parametrize("name", ["janus-1.3b", "janus-pro-1b", "janus-pro-7b"])
def test_cards_are_registered(name: str) -> None:
    from mllm_audit.models import resolve_card

    card = resolve_card(name)
    assert card.family == "janus" and card.weights.startswith("deepseek-community/")
    assert card.generation["guidance_scale"] > 1 and "temperature" in card.generation
