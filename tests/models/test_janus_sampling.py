"""Janus image generation samples as deepseek-ai/Janus does: classifier-free guidance at the card's
weight, the card's temperature, and the full softmax (no top-k, no top-p warper), read off the
logits processors `generate` actually builds."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from transformers import ClassifierFreeGuidanceLogitsProcessor, TopKLogitsWarper, TopPLogitsWarper

from mllm_audit.models import load_model, resolve_card
from mllm_audit.testing.tiny import save_tiny_janus


@pytest.fixture(scope="module")
def adapter(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201 - an Adapter
    return load_model(str(save_tiny_janus(tmp_path_factory.mktemp("m") / "tiny-janus")))


def processors_used(adapter: Any, generation: dict[str, Any]) -> list[Any]:
    """The logits processors of one real `generate_tokens` call under the given card settings."""
    seen: list[Any] = []
    model = adapter.model
    original = model._get_logits_processor

    def spy(*args: Any, **kwargs: Any) -> Any:
        out = original(*args, **kwargs)
        seen.extend(out)
        return out

    adapter.card.generation = dict(generation)
    model._get_logits_processor = spy
    try:
        tokens = adapter.generate_tokens(["a photo of a doctor"], seed=0)
    finally:
        del model._get_logits_processor
        adapter.card.generation = {}
    assert tokens.shape == (1, adapter.n_image_tokens)
    return seen


@pytest.mark.parametrize("name", ["janus-1.3b", "janus-pro-1b", "janus-pro-7b"])
def test_card_settings_sample_from_the_full_guided_softmax(adapter, name: str) -> None:  # noqa: ANN001
    card = resolve_card(name)
    assert card.generation["guidance_scale"] == 5.0 and card.generation["temperature"] == 1.0
    used = processors_used(adapter, card.generation)
    kinds = [type(p) for p in used]
    assert TopKLogitsWarper not in kinds and TopPLogitsWarper not in kinds, kinds
    (cfg,) = [p for p in used if isinstance(p, ClassifierFreeGuidanceLogitsProcessor)]
    assert cfg.guidance_scale == 5.0
    assert kinds == [ClassifierFreeGuidanceLogitsProcessor]  # temperature 1: no temperature warper either


def test_an_unset_top_k_would_be_filled_with_50(adapter) -> None:  # noqa: ANN001
    """The negative control: the same check sees transformers' top-k 50 when the card asks for it,
    and transformers' own defaults would add it to a config that leaves top_k unset."""
    used = processors_used(adapter, {"guidance_scale": 5.0, "temperature": 1.0, "top_k": 50})
    (topk,) = [p for p in used if isinstance(p, TopKLogitsWarper)]
    assert topk.top_k == 50
    from transformers import GenerationConfig

    assert GenerationConfig._get_default_generation_params()["top_k"] == 50


def test_guided_distribution_is_the_upstream_formula(adapter) -> None:  # noqa: ANN001
    """uncond + w * (cond - uncond), then softmax(logits / T): what generation_inference.py computes."""
    used = processors_used(adapter, resolve_card("janus-pro-7b").generation)
    torch.manual_seed(0)
    cond, uncond = torch.randn(2, 16), torch.randn(2, 16)
    scores = torch.cat([cond, uncond])
    for p in used:
        scores = p(torch.zeros(2, 1, dtype=torch.long), scores)
    assert torch.allclose(torch.softmax(scores, -1), torch.softmax(uncond + 5.0 * (cond - uncond), -1), atol=1e-6)
