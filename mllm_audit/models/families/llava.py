"""LLaVA-1.5 (and any `LlavaForConditionalGeneration` checkpoint) through transformers' own classes.

Layout (as LlavaProcessor builds it): the processor's chat template wraps the card-formatted prompt
(`USER: <image>\\n{prompt} ASSISTANT:` for llava-1.5-hf), and the one `<image>` token is expanded to
`image_seq_length` placeholders. Image features are the projector outputs of the selected CLIP layer.
"""

from __future__ import annotations

from typing import Any

import torch

from mllm_audit.models.base import Adapter, ChatTemplateMixin, LoadOptions, last_mlp
from mllm_audit.models.cards import Card
from mllm_audit.models.loading import load_with_processor


class LlavaAdapter(ChatTemplateMixin, Adapter):
    processor: Any = None

    def prompt_ids(self, prompt: str, task: str | None, with_image: bool) -> list[int]:
        text = self.chat_text(self.format_prompt(prompt, task), with_image)  # type: ignore[attr-defined]
        return self.expand_image_tokens(list(self.tokenizer(text).input_ids))

    def preprocess(self, images: list[Any]) -> torch.Tensor:
        pv = self.processor.image_processor(images, return_tensors="pt")["pixel_values"]
        return pv.to(self.device, self.dtype)

    def encode_pixels(self, pixel_values: torch.Tensor) -> torch.Tensor:
        cfg = self.model.config
        out = self.model.get_image_features(
            pixel_values=pixel_values,
            vision_feature_layer=cfg.vision_feature_layer,
            vision_feature_select_strategy=cfg.vision_feature_select_strategy,
            return_dict=True,
        )
        feats = out.pooler_output
        return torch.stack(list(feats)) if isinstance(feats, (list, tuple)) else feats

    def language_model(self) -> torch.nn.Module:
        # The whole model: given inputs_embeds and no pixels it is the language model plus its head.
        return self.model


def load(card: Card, options: LoadOptions) -> LlavaAdapter:
    from transformers import LlavaForConditionalGeneration

    keep = ["vision_tower", "multi_modal_projector", "lm_head"]
    model, processor = load_with_processor(LlavaForConditionalGeneration, card, options, keep)
    cfg = model.config
    n_tokens = int(getattr(processor, "num_image_tokens", 0) or 0) or image_seq_length(cfg)
    if not card.edit:
        card.edit = {
            "text_modules": last_mlp("model.language_model.layers", cfg.text_config.num_hidden_layers),
            "vision_modules": ["model.multi_modal_projector"],
        }
    adapter = LlavaAdapter(
        card=card,
        model=model,
        tokenizer=processor.tokenizer,
        options=options,
        image_token_id=int(cfg.image_token_id),
        n_image_tokens=n_tokens,
    )
    adapter.processor = processor
    return adapter


def image_seq_length(cfg: Any) -> int:
    """Placeholders per image: (image / patch)^2, plus the CLS token when the strategy keeps it."""
    v = cfg.vision_config
    n = (v.image_size // v.patch_size) ** 2
    return n + (1 if cfg.vision_feature_select_strategy == "full" else 0)
