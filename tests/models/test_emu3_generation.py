"""Emu3 generation: the full guided softmax unless the card declares another setting, and mixed-length
prompt batches left-padded so each prompt's first image token is drawn from its own logits."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from transformers import LogitsProcessor, TopKLogitsWarper, TopPLogitsWarper

from mllm_audit.models import load_model
from mllm_audit.testing.tiny import save_tiny_emu3


@pytest.fixture(scope="module")
def adapter(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201 - an Adapter
    return load_model(str(save_tiny_emu3(tmp_path_factory.mktemp("m") / "tiny-emu3")))


class Record(LogitsProcessor):
    """Keeps the raw next-token scores of the first generation step."""

    def __init__(self) -> None:
        self.first: torch.Tensor | None = None

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if self.first is None:
            self.first = scores.detach().clone()
        return scores


def run(adapter: Any, prompts: list[str], generation: dict[str, Any]) -> tuple[list[Any], torch.Tensor]:
    model, seen, rec = adapter.model, [], Record()
    original = model._get_logits_processor

    def spy(*args: Any, **kwargs: Any) -> Any:
        out = original(*args, **kwargs)
        seen.extend(out)
        out.insert(0, rec)
        return out

    adapter.card.generation = dict(generation)
    model._get_logits_processor = spy
    try:
        adapter.generate_tokens(prompts, seed=0)
    finally:
        del model._get_logits_processor
        adapter.card.generation = {}
    assert rec.first is not None
    return seen, rec.first


def test_unset_top_k_samples_the_full_softmax_and_a_card_setting_is_kept(adapter) -> None:  # noqa: ANN001
    used, _ = run(adapter, ["red"], {"guidance_scale": 3.0, "do_sample": True})
    kinds = [type(p) for p in used]
    assert TopKLogitsWarper not in kinds and TopPLogitsWarper not in kinds, kinds
    used, _ = run(adapter, ["red"], {"guidance_scale": 3.0, "do_sample": True, "top_k": 50})  # the control
    assert [p.top_k for p in used if isinstance(p, TopKLogitsWarper)] == [50]


def test_mixed_length_batch_is_left_padded(adapter) -> None:  # noqa: ANN001
    settings = {"guidance_scale": 1.0, "do_sample": False}
    _, alone = run(adapter, ["red"], settings)
    _, batched = run(adapter, ["red", "a photo of a doctor in a kitchen with a laptop"], settings)
    assert torch.allclose(batched[0], alone[0], atol=1e-5), (batched[0] - alone[0]).abs().max()
    right = adapter.processor(text=["red", "a photo of a doctor"], padding=True, return_tensors="pt",
                              padding_side="right")["attention_mask"]
    assert right[0, -1] == 0  # the control: right padding would put pads after the short prompt
