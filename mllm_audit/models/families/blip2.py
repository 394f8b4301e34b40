"""BLIP-2 (OPT or any decoder-only LM) on transformers' `Blip2ForConditionalGeneration`.

Layout (as Blip2Processor builds it): `num_query_tokens` image placeholders, then BOS and the prompt.
The image features are the Q-Former query outputs after `language_projection`.
"""

from __future__ import annotations

from typing import Any

import torch

from mllm_audit.models.base import Adapter, LoadOptions, last_mlp
from mllm_audit.models.cards import Card
from mllm_audit.models.loading import load_with_processor


class Blip2Adapter(Adapter):
    processor: Any = None

    def preprocess(self, images: list[Any]) -> torch.Tensor:
        pv = self.processor.image_processor(images, return_tensors="pt")["pixel_values"]
        return pv.to(self.device, self.dtype)

    def encode_pixels(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.model.get_image_features(pixel_values=pixel_values, return_dict=True).pooler_output

    def language_model(self) -> torch.nn.Module:
        return self.model.language_model


def load(card: Card, options: LoadOptions) -> Blip2Adapter:
    from transformers import Blip2ForConditionalGeneration

    keep = ["qformer", "query_tokens", "language_projection", "lm_head"]
    model, processor = load_with_processor(Blip2ForConditionalGeneration, card, options, keep)
    cfg = model.config
    if not card.edit:
        card.edit = default_edit_modules(model)
    adapter = Blip2Adapter(
        card=card,
        model=model,
        tokenizer=processor.tokenizer,
        options=options,
        image_token_id=int(cfg.image_token_id),
        n_image_tokens=int(cfg.num_query_tokens),
    )
    adapter.processor = processor
    return adapter


def default_edit_modules(model: torch.nn.Module) -> dict[str, list[str]]:
    """Without a card: FT-L edits the last decoder layer's MLP, FT-V the Q-Former and projection."""
    return {
        "text_modules": last_mlp("language_model.model.decoder.layers", model.config.text_config.num_hidden_layers,
                                 ("fc1", "fc2")),
        "vision_modules": ["qformer", "query_tokens", "language_projection"],
    }
