"""Janus / Janus-Pro (DeepSeek's unified models) on transformers' `JanusForConditionalGeneration`.

Understanding goes through the same scoring contract as every family. Layout (as JanusProcessor
builds it): the processor's chat template wraps the card-formatted prompt, the default system prompt
is prepended when the processor says so, and each `<image_placeholder>` becomes
`<begin_of_image>` + `num_image_tokens` placeholders + `<end_of_image>`. Image features are the
SigLIP tower's last hidden state through the `aligner` MLP.

Generation draws with transformers' own `generate(generation_mode="image")`, which runs the
classifier-free guidance pair (the prompt, and the prompt masked to pads but BOS/BOI) and samples from
the generation head; the card's `generation:` block sets the guidance scale, temperature and
sampling. `generate_images` seeds each batch from (seed, batch index), so the same call gives the same
images; `generate_tokens(..., row_seeds=...)` draws each row from its own generator instead
(models/sampling.py), so rows of any prompts batch together without changing an image. transformers'
image `generate` already runs each CFG pair in one forward over a static KV cache.

A random tiny Janus built from a config lives in testing/tiny.py; the toy unified world v1 in
toy/unified_v1.py.
"""

from __future__ import annotations

import hashlib
from typing import Any, ClassVar

import torch

from mllm_audit.models.base import Adapter, ChatTemplateMixin, last_mlp
from mllm_audit.models.loading import FamilySpec

# Card `generation:` keys that map onto transformers' GenerationConfig.
GENERATION_KEYS = ("guidance_scale", "temperature", "do_sample", "top_k", "top_p")
# deepseek-ai/Janus' generation_inference.py samples each image token from the full guided softmax
# (cfg_weight 5, temperature 1, no top-k / top-p). transformers fills an unset `top_k` with 50, which
# would sample from the 50 likeliest of 16,384 codes: 0 and 1.0 switch both warpers off explicitly.
DEFAULT_GENERATION = {"guidance_scale": 5.0, "temperature": 1.0, "do_sample": True, "top_k": 0, "top_p": 1.0}


def derive_seed(*parts: object) -> int:
    """A 31-bit seed from any parts: stable across runs and machines (unlike `hash`)."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def images_in_batches(adapter: Any, prompts: list[str], n: int, seed: int, batch_size: int) -> list[Any]:
    """`n` images per prompt, prompt-major, `batch_size` rows at a time, batch b drawn with
    `derive_seed(seed, b)`: every image family's `generate_images` (a call reproducible for a batch size)."""
    rows = [p for p in prompts for _ in range(n)]
    out: list[Any] = []
    for b, start in enumerate(range(0, len(rows), max(1, batch_size))):
        part = rows[start : start + max(1, batch_size)]
        out.extend(adapter.decode_images(adapter.generate_tokens(part, derive_seed(seed, b))))
    return out


class JanusAdapter(ChatTemplateMixin, Adapter):
    generates_images: ClassVar[bool] = True
    processor: Any = None
    boi_token_id: int = -1
    eoi_token_id: int = -1

    # ---- understanding ------------------------------------------------------------------------
    def prompt_ids(self, prompt: str, task: str | None, with_image: bool) -> list[int]:
        text = self.chat_text(self.format_prompt(prompt, task), with_image)
        if getattr(self.processor, "use_default_system_prompt", False):
            from transformers.models.janus.processing_janus import DEFAULT_SYSTEM_PROMPT

            text = DEFAULT_SYSTEM_PROMPT + text
        out: list[int] = []
        for t in self.tokenizer(text).input_ids:
            if t == self.image_token_id:
                out.extend([self.boi_token_id] + [t] * self.n_image_tokens + [self.eoi_token_id])
            else:
                out.append(t)
        return out

    def preprocess(self, images: list[Any]) -> torch.Tensor:
        pv = self.processor.image_processor(images, return_tensors="pt")["pixel_values"]
        return pv.to(self.device, self.dtype)

    def encode_pixels(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.model.model.get_image_features(pixel_values=pixel_values, return_dict=True).pooler_output

    def language_model(self) -> torch.nn.Module:
        # The whole model: given inputs_embeds and no pixels it is the language model plus lm_head.
        return self.model

    # ---- generation ---------------------------------------------------------------------------
    def generation_settings(self) -> dict[str, Any]:
        """The card's CFG / sampling settings over the defaults (the Janus repos' own: scale 5, T 1)."""
        gen = dict(DEFAULT_GENERATION)
        gen.update({k: v for k, v in self.card.generation.items() if k in GENERATION_KEYS})
        return gen

    def generation_config(self) -> Any:
        from transformers import GenerationConfig

        base = getattr(self.model, "generation_config", None)
        cfg = GenerationConfig(**base.to_dict()) if base is not None else GenerationConfig()
        tok = self.tokenizer
        bos = tok.bos_token_id if tok.bos_token_id is not None else cfg.bos_token_id
        cfg.update(
            bos_token_id=bos,
            pad_token_id=self.pad_id,
            num_beams=1,
            num_return_sequences=1,
            generation_kwargs={**(cfg.generation_kwargs or {}), "boi_token_id": self.boi_token_id},
            **self.generation_settings(),
        )
        return cfg

    def generation_text(self, prompt: str) -> str:
        """The prompt as a user turn in the chat template (the processor then appends BOI)."""
        return self.chat_text(self.format_prompt(prompt, "t2i"), False)

    @torch.no_grad()
    def generate_tokens(self, prompts: list[str], seed: int, row_seeds: list[int] | None = None) -> torch.Tensor:
        """Image tokens [len(prompts), n_tokens] for one batch: the global generator seeded with `seed`
        (upstream's draw), or with `row_seeds` each row from its own (models/sampling.py, per-image)."""
        texts = [self.generation_text(p) for p in prompts]
        inputs = self.processor(text=texts, generation_mode="image", padding=True, return_tensors="pt")
        self.counters.forward_passes += 1
        kw = {"input_ids": inputs["input_ids"].to(self.device),
              "attention_mask": inputs["attention_mask"].to(self.device),
              "generation_config": self.generation_config(), "generation_mode": "image"}
        from mllm_audit.models.sampling import seeded_generate

        return seeded_generate(self.model, kw, seed, row_seeds, self.n_image_tokens)

    @torch.no_grad()
    def decode_images(self, tokens: torch.Tensor) -> list[Any]:
        """VQ-decode image tokens to PIL images (undoing the image processor's normalisation)."""
        import numpy as np
        from PIL import Image

        if tokens.shape[0] == 1:
            # torch's group_norm refuses one sample whose map is 1x1 ("more than 1 value per channel");
            # decoding is per row (GroupNorm normalises each sample alone), so decode two and keep one.
            return self.decode_images(tokens.repeat(2, 1))[:1]
        pixels = self.model.decode_image_tokens(tokens.to(self.device)).float().cpu().numpy()  # [B, H, W, C]
        ip = self.processor.image_processor
        mean = np.asarray(getattr(ip, "image_mean", None) or [0.5, 0.5, 0.5], dtype=np.float32)
        std = np.asarray(getattr(ip, "image_std", None) or [0.5, 0.5, 0.5], dtype=np.float32)
        arr = np.clip(np.rint((pixels * std + mean) * 255.0), 0, 255).astype(np.uint8)
        return [Image.fromarray(a, mode="RGB") for a in arr]

    def generate_images(self, prompts: list[str], n: int, seed: int, batch_size: int = 8) -> list[Any]:
        """`n` images per prompt, prompt-major, with the card's CFG settings.

        Rows (prompt, k) are taken `batch_size` at a time; batch b is seeded with
        `derive_seed(seed, b)`, so a call is reproducible for a given batch size.
        """
        return images_in_batches(self, prompts, n, seed, batch_size)


def _edit_modules(model: Any) -> dict[str, list[str]]:
    return {
        "text_modules": last_mlp("model.language_model.layers", model.config.text_config.num_hidden_layers),
        "vision_modules": ["model.aligner"],
    }


def _finish(adapter: JanusAdapter) -> None:
    tok, processor = adapter.tokenizer, adapter.processor
    adapter.boi_token_id = int(tok.convert_tokens_to_ids(processor.image_start_token))
    adapter.eoi_token_id = int(tok.convert_tokens_to_ids(processor.image_end_token))


SPEC = FamilySpec(
    model_class="JanusForConditionalGeneration",
    adapter=JanusAdapter,
    keep_fp32=("vision_model", "aligner", "vqmodel", "generation_head", "lm_head"),
    default_edit=_edit_modules,
    n_image_tokens=lambda cfg, proc: int(getattr(proc, "num_image_tokens", 0) or cfg.vision_config.num_image_tokens),
    finish=_finish,
)
load = SPEC.load
