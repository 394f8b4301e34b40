"""LLaVA-1.5 conformance: a tiny random LlavaForConditionalGeneration saved and loaded by path."""

from __future__ import annotations

import pytest
import torch
from family_checks import check_against_stock, check_invariance, labels_for

from mllm_audit.models import load_model
from mllm_audit.scoring.contract import Request, tokenize
from mllm_audit.testing.tiny import save_tiny_llava


@pytest.fixture(scope="module")
def adapter(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201 - an Adapter
    return load_model(str(save_tiny_llava(tmp_path_factory.mktemp("m") / "tiny-llava")))


def stock(adapter, req: Request, imgs) -> float:  # noqa: ANN001
    """LlavaForConditionalGeneration's own forward with labels; the processor builds our prefix."""
    prefix, cont = tokenize(adapter, req)
    ids, labels = labels_for(prefix, cont)
    kwargs = {}
    if req.image is not None:
        inputs = adapter.processor(
            images=imgs[req.image],
            return_tensors="pt",
            text=adapter.chat_text(adapter.format_prompt(req.prompt, req.task), True),
        )
        assert inputs["input_ids"][0].tolist() == prefix
        kwargs["pixel_values"] = inputs["pixel_values"]
    with torch.no_grad():
        out = adapter.model(input_ids=ids, labels=labels, **kwargs)
    return -out.loss.item() * len(cont)


def test_family_from_config(adapter) -> None:  # noqa: ANN001
    assert adapter.card.family == "llava"
    assert adapter.n_image_tokens == 16


def test_scores_equal_stock_forward(adapter) -> None:  # noqa: ANN001
    check_against_stock(adapter, stock)


def test_invariant_to_batch_padding_and_order(adapter) -> None:  # noqa: ANN001
    check_invariance(adapter)


def test_card_is_registered() -> None:
    from mllm_audit.models import resolve_card

    card = resolve_card("llava-1.5-7b")
    assert card.family == "llava" and card.weights == "llava-hf/llava-1.5-7b-hf"
    assert "lm_head" in card.keep_fp32
