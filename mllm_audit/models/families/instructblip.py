"""InstructBLIP (Vicuna or any decoder-only LM) on transformers' `InstructBlipForConditionalGeneration`.

Layout (as InstructBlipProcessor builds it): `num_query_tokens` image placeholders, then BOS and the
prompt. Unlike BLIP-2 the Q-Former also reads the instruction, so the image features depend on the
prompt: the vision tower runs once per image (`encode_images`, counted in `images_encoded`) and the
Q-Former + projection run per (image, prompt) inside `embed`, where the prompt is known.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from mllm_audit.models.base import Adapter, last_mlp
from mllm_audit.models.loading import FamilySpec


class InstructBlipAdapter(Adapter):
    processor: Any = None
    shares_image_prefix: ClassVar[bool] = False  # the Q-Former reads the prompt: no two prompts share image rows
    # prefix ids (from the first placeholder on) -> the instruction the Q-Former reads; set in load()
    _instructions: dict[tuple[int, ...], str]
    _lengths: set[int]

    def prompt_ids(self, prompt: str, task: str | None, with_image: bool) -> list[int]:
        text = self.format_prompt(prompt, task)
        ids = super().prompt_ids(prompt, task, with_image)
        if with_image:
            self._instructions[tuple(ids)] = text
            self._lengths.add(len(ids))
        return ids

    def preprocess(self, images: list[Any]) -> torch.Tensor:
        pv = self.processor.image_processor(images, return_tensors="pt")["pixel_values"]
        return pv.to(self.device, self.dtype)

    def encode_pixels(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """The vision tower only: [N, patches + 1, vision hidden]; the Q-Former waits for the prompt."""
        return self.model.vision_model(pixel_values=pixel_values, return_dict=True).last_hidden_state

    def bridge(self, image_embeds: torch.Tensor, instructions: list[str]) -> torch.Tensor:
        """Q-Former over (image, instruction) pairs + projection: [N, num_query_tokens, LM hidden]."""
        m = self.model
        q = self.processor.qformer_tokenizer(instructions, padding=True, return_tensors="pt").to(
            image_embeds.device
        )
        image_mask = torch.ones(image_embeds.shape[:-1], dtype=torch.long, device=image_embeds.device)
        query = m.query_tokens.expand(image_embeds.shape[0], -1, -1)
        query_mask = torch.ones(query.shape[:-1], dtype=torch.long, device=image_embeds.device)
        out = m.qformer(
            input_ids=q["input_ids"],
            attention_mask=torch.cat([query_mask, q["attention_mask"]], dim=1),
            query_embeds=query,
            encoder_hidden_states=image_embeds,
            encoder_attention_mask=image_mask,
            return_dict=True,
        )
        return m.language_projection(out.last_hidden_state[:, : query.shape[1], :])

    def instruction_of(self, row: list[int]) -> str:
        """The instruction of a row whose prefix went through `prompt_ids` (prefix or full sequence)."""
        start = row.index(self.image_token_id)
        for n in sorted(self._lengths, reverse=True):
            text = self._instructions.get(tuple(row[start : start + n]))
            if text is not None:
                return text
        raise ValueError(
            "InstructBLIP row with image placeholders but no known prompt (use prompt_ids first)"
        )

    def embed(self, ids: torch.Tensor, features: list[torch.Tensor | None]) -> torch.Tensor:
        emb = self.input_embeddings()(ids)
        mask = ids == self.image_token_id
        rows = [b for b, f in enumerate(features) if f is not None and bool(mask[b].any())]
        if not rows:
            return emb
        image_embeds = torch.stack([features[b] for b in rows]).to(self.device)  # type: ignore[misc]
        texts = [self.instruction_of(ids[b].tolist()) for b in rows]
        feats = self.bridge(image_embeds, texts)
        row_mask = torch.zeros_like(mask)
        row_mask[rows] = mask[rows]
        return emb.masked_scatter(row_mask.unsqueeze(-1), feats.reshape(-1, feats.shape[-1]).to(emb.dtype))

    def language_model(self) -> torch.nn.Module:
        return self.model.language_model


def _edit_modules(model: Any) -> dict[str, list[str]]:
    return {
        "text_modules": last_mlp("language_model.model.layers", model.config.text_config.num_hidden_layers),
        "vision_modules": ["qformer", "query_tokens", "language_projection"],
    }


def _finish(adapter: InstructBlipAdapter) -> None:
    adapter._instructions, adapter._lengths = {}, set()


SPEC = FamilySpec(
    model_class="InstructBlipForConditionalGeneration",
    adapter=InstructBlipAdapter,
    keep_fp32=("qformer", "query_tokens", "language_projection", "lm_head"),
    default_edit=_edit_modules,
    n_image_tokens=lambda cfg, _proc: cfg.num_query_tokens,
    finish=_finish,
)
load = SPEC.load
