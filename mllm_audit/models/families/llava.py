"""LLaVA-1.5 (and any `LlavaForConditionalGeneration` checkpoint) through transformers' own classes.

Layout (as LlavaProcessor builds it): the processor's chat template wraps the card-formatted prompt
(`USER: <image>\\n{prompt} ASSISTANT:` for llava-1.5-hf), and the one `<image>` token is expanded to
`image_seq_length` placeholders. Image features are the projector outputs of the selected CLIP layer.
"""

from __future__ import annotations

from typing import Any

import torch

from mllm_audit.models.base import Adapter, ChatTemplateMixin, last_mlp
from mllm_audit.models.loading import FamilySpec


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


def image_seq_length(cfg: Any) -> int:
    """Placeholders per image: (image / patch)^2, plus the CLS token when the strategy keeps it."""
    v = cfg.vision_config
    n = (v.image_size // v.patch_size) ** 2
    return n + (1 if cfg.vision_feature_select_strategy == "full" else 0)


def _edit_modules(model: Any) -> dict[str, list[str]]:
    return {
        "text_modules": last_mlp("model.language_model.layers", model.config.text_config.num_hidden_layers),
        "vision_modules": ["model.multi_modal_projector"],
    }


SPEC = FamilySpec(
    model_class="LlavaForConditionalGeneration",
    adapter=LlavaAdapter,
    keep_fp32=("vision_tower", "multi_modal_projector", "lm_head"),
    default_edit=_edit_modules,
    n_image_tokens=lambda cfg, proc: int(getattr(proc, "num_image_tokens", 0) or 0) or image_seq_length(cfg),
)
load = SPEC.load
