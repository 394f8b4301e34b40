"""MiniGPT-4 assembled from transformers parts (the converter from its release files is models/convert/minigpt4.py).

MiniGPT-4 = EVA ViT-g (a `Blip2VisionModel`: same block layout, q/v biases, no final norm) ->
`ln_vision` (LayerNorm) -> BLIP-2 Q-Former with learned queries (`Blip2QFormerModel`, query branch
only) -> `llama_proj` (Linear) -> Vicuna (`LlamaForCausalLM`). Its prompt wraps the image as
`###Human: <Img><ImageHere></Img> {prompt} ###Assistant:`: the text before `<ImageHere>` is tokenized
with BOS, the rest without, and the projected queries take the place of `<ImageHere>`.

No hub id holds these weights in transformers' layout, so `mllm-audit convert minigpt4` maps the
original files (EVA `eva_vit_g.pth`, LAVIS `blip2_pretrained_flant5xxl.pth`,
`pretrained_minigpt4*.pth`, a Vicuna HF folder) into one safetensors folder with
`model_type: minigpt4`; `--model <folder>` then loads it like any other model (quantization and
device maps included). Original files are read with `torch.load(weights_only=True)` only.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import (
    Blip2QFormerConfig,
    Blip2QFormerModel,
    Blip2VisionConfig,
    Blip2VisionModel,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedConfig,
    PreTrainedModel,
)

from mllm_audit.errors import AuditError
from mllm_audit.models.base import Adapter, LoadOptions, last_mlp
from mllm_audit.models.cards import Card
from mllm_audit.models.loading import from_pretrained_checked, quantization_config

PROMPT = "###Human: <Img><ImageHere></Img> {prompt} ###Assistant:"
IMAGE_SLOT = "<ImageHere>"
IMAGE_WRAP = "<Img><ImageHere></Img>"


def _sub(cfg: Any, cls: type[PreTrainedConfig]) -> PreTrainedConfig:
    return cfg if isinstance(cfg, PreTrainedConfig) else cls(**(cfg or {}))


class MiniGPT4Config(PreTrainedConfig):
    """Vision (EVA ViT-g as Blip2VisionConfig), Q-Former, Llama text config, query count."""

    model_type = "minigpt4"
    sub_configs = {
        "vision_config": Blip2VisionConfig,
        "qformer_config": Blip2QFormerConfig,
        "text_config": LlamaConfig,
    }

    def __init__(
        self,
        vision_config: Any = None,
        qformer_config: Any = None,
        text_config: Any = None,
        num_query_tokens: int = 32,
        image_token_id: int | None = None,
        ln_vision_eps: float = 1e-5,
        **kwargs: Any,
    ) -> None:
        self.vision_config = _sub(vision_config, Blip2VisionConfig)
        self.qformer_config = _sub(qformer_config, Blip2QFormerConfig)
        self.text_config = _sub(text_config, LlamaConfig)
        self.num_query_tokens = num_query_tokens
        # A placeholder id one past the vocabulary: it can never be a real token; `embed` masks it.
        self.image_token_id = self.text_config.vocab_size if image_token_id is None else image_token_id
        self.ln_vision_eps = ln_vision_eps
        super().__init__(**kwargs)


class MiniGPT4ForConditionalGeneration(PreTrainedModel):
    """The assembled model; parameter names follow the original's (ln_vision, llama_proj)."""

    config_class = MiniGPT4Config
    config: MiniGPT4Config
    base_model_prefix = "minigpt4"
    main_input_name = "pixel_values"
    _no_split_modules = ["Blip2EncoderLayer", "Blip2QFormerLayer", "LlamaDecoderLayer"]
    _supports_sdpa = True
    _supports_attention_backend = True

    def __init__(self, config: MiniGPT4Config) -> None:
        super().__init__(config)
        v, q, t = config.vision_config, config.qformer_config, config.text_config
        self.vision_model = Blip2VisionModel._from_config(v)
        # EVA ViT-g as MiniGPT-4 uses it ends at its last block; the norm after it is ln_vision.
        self.vision_model.post_layernorm = nn.Identity()
        self.ln_vision = nn.LayerNorm(v.hidden_size, eps=config.ln_vision_eps)
        self.query_tokens = nn.Parameter(torch.zeros(1, config.num_query_tokens, q.hidden_size))
        self.qformer = Blip2QFormerModel._from_config(q)
        self.llama_proj = nn.Linear(q.hidden_size, t.hidden_size)
        self.language_model = LlamaForCausalLM._from_config(t)
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.language_model.get_input_embeddings()

    def get_output_embeddings(self) -> nn.Module:
        return self.language_model.get_output_embeddings()

    def get_image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Projected query outputs [N, num_query_tokens, LM hidden]."""
        x = self.vision_model(pixel_values=pixel_values, return_dict=True).last_hidden_state
        x = self.ln_vision(x)
        dtype = self.qformer.layernorm.weight.dtype  # the bridge may be kept in fp32 under --quantize
        query = self.query_tokens.expand(x.shape[0], -1, -1).to(dtype)
        out = self.qformer(
            query_embeds=query,
            encoder_hidden_states=x.to(dtype),
            encoder_attention_mask=torch.ones(x.shape[:-1], dtype=torch.long, device=x.device),
            return_dict=True,
        )
        return self.llama_proj(out.last_hidden_state.to(self.llama_proj.weight.dtype))

    def forward(self, **kwargs: Any) -> Any:
        """Text side only (inputs_embeds with the image already spliced): the Llama forward."""
        return self.language_model(**kwargs)


class MiniGPT4Adapter(Adapter):
    image_processor: Any = None

    def prompt_ids(self, prompt: str, task: str | None, with_image: bool) -> list[int]:
        """As MiniGPT-4 builds it: text before the slot with BOS, placeholders, the rest without."""
        text = self.format_prompt(prompt, task)
        if not with_image:
            text = text.replace(IMAGE_WRAP + " ", "").replace(IMAGE_WRAP, "").replace(IMAGE_SLOT, "")
            return list(self.tokenizer(text).input_ids)
        before, after = text.split(IMAGE_SLOT, 1) if IMAGE_SLOT in text else ("", text)
        head = list(self.tokenizer(before).input_ids)
        tail = list(self.tokenizer(after, add_special_tokens=False).input_ids)
        return head + [self.image_token_id] * self.n_image_tokens + tail

    def prompt_text(self, prompt: str, task: str | None, with_image: bool) -> str:
        """The text tokenized last in `prompt_ids`: after `<ImageHere>`, or all of it without an image."""
        text = self.format_prompt(prompt, task)
        if not with_image:
            return text.replace(IMAGE_WRAP + " ", "").replace(IMAGE_WRAP, "").replace(IMAGE_SLOT, "")
        return text.split(IMAGE_SLOT, 1)[1] if IMAGE_SLOT in text else text

    def preprocess(self, images: list[Any]) -> torch.Tensor:
        pv = self.image_processor(images, return_tensors="pt")["pixel_values"]
        return pv.to(self.device, self.dtype)

    def encode_pixels(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.model.get_image_features(pixel_values)

    def embed(self, ids: torch.Tensor, features: list[torch.Tensor | None]) -> torch.Tensor:
        """The placeholder id lies outside the vocabulary: embed id 0 there, then splice the image."""
        mask = ids == self.image_token_id
        emb = self.input_embeddings()(ids.masked_fill(mask, 0))
        rows = [b for b, f in enumerate(features) if f is not None and bool(mask[b].any())]
        if not rows:
            return emb
        row_mask = torch.zeros_like(mask)
        row_mask[rows] = mask[rows]
        feats = torch.cat([features[b].reshape(-1, emb.shape[-1]) for b in rows])  # type: ignore[union-attr]
        return emb.masked_scatter(row_mask.unsqueeze(-1), feats.to(emb.device, emb.dtype))

    def language_model(self) -> torch.nn.Module:
        return self.model.language_model


def load(card: Card, options: LoadOptions) -> MiniGPT4Adapter:
    from transformers import AutoTokenizer, BlipImageProcessorPil

    # The card is not changed: family defaults fill a copy. Items without a task still need the image
    # slot (MiniGPT-4 has no layout without it), hence the default template.
    card = dataclasses.replace(card, keep_fp32=list(card.keep_fp32 or KEEP_FP32),
                               templates={"default": PROMPT, **card.templates})
    if card.weights.startswith("/") and not Path(card.weights).is_dir():
        raise AuditError(
            f"MiniGPT-4 folder {card.weights} does not exist: build it once with `mllm-audit convert minigpt4 "
            "--vit ... --qformer ... --proj ... --llama ... --output` (see `mllm-audit ls models`)"
        )
    model = from_pretrained_checked(
        MiniGPT4ForConditionalGeneration, card, options, quantization_config(card, options)
    )
    tokenizer = from_pretrained_checked(AutoTokenizer, card, options, None)
    image_processor = from_pretrained_checked(BlipImageProcessorPil, card, options, None)
    cfg = model.config
    card = dataclasses.replace(card, edit=dict(card.edit or {
        "text_modules": last_mlp("language_model.model.layers", cfg.text_config.num_hidden_layers),
        "vision_modules": ["qformer", "query_tokens", "llama_proj"],
    }))
    adapter = MiniGPT4Adapter(
        card=card,
        model=model,
        tokenizer=tokenizer,
        options=options,
        image_token_id=int(cfg.image_token_id),
        n_image_tokens=int(cfg.num_query_tokens),
    )
    adapter.image_processor = image_processor
    return adapter


# Everything but the Llama decoder stays unquantized: MiniGPT-4's own low-resource mode.
KEEP_FP32 = ("vision_model", "ln_vision", "qformer", "query_tokens", "llama_proj", "lm_head")
