"""BLIP-2 (OPT or any decoder-only LM) on transformers' `Blip2ForConditionalGeneration`.

Layout (as Blip2Processor builds it): `num_query_tokens` image placeholders, then BOS and the prompt.
The image features are the Q-Former query outputs after `language_projection`.
"""

from __future__ import annotations

from typing import Any

import torch

from mllm_audit.models.base import Adapter, last_mlp
from mllm_audit.models.loading import FamilySpec


class Blip2Adapter(Adapter):
    processor: Any = None

    def preprocess(self, images: list[Any]) -> torch.Tensor:
        pv = self.processor.image_processor(images, return_tensors="pt")["pixel_values"]
        return pv.to(self.device, self.dtype)

    def encode_pixels(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.model.get_image_features(pixel_values=pixel_values, return_dict=True).pooler_output

    def language_model(self) -> torch.nn.Module:
        return self.model.language_model


def default_edit_modules(model: torch.nn.Module) -> dict[str, list[str]]:
    """Without a card: FT-L edits the last decoder layer's MLP, FT-V the Q-Former and projection."""
    return {
        "text_modules": last_mlp("language_model.model.decoder.layers", model.config.text_config.num_hidden_layers,
                                 ("fc1", "fc2")),
        "vision_modules": ["qformer", "query_tokens", "language_projection"],
    }


SPEC = FamilySpec(
    model_class="Blip2ForConditionalGeneration",
    adapter=Blip2Adapter,
    keep_fp32=("qformer", "query_tokens", "language_projection", "lm_head"),
    default_edit=default_edit_modules,
    n_image_tokens=lambda cfg, _proc: cfg.num_query_tokens,
)
load = SPEC.load
