"""Teacher-forced log-probabilities of image tokens in a Janus-style unified model (text -> image).

One place for the differentiable quantity that the toy unified world's training, the balanced SFT /
BPO editors and the tests all need: log p(image tokens | prompt) exactly as `generate` draws them —
prompt ids as the processor builds them for generation (ending with <begin_of_image>), each image
token fed back through the generation embeddings + aligner, scores from the generation head. The
conditional half only (no guidance): guidance is a sampling-time mix of this and the unconditional
prompt, built here the way `generate` builds it (every token but BOS and BOI replaced by pad).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch


def t2i_prompt_ids(adapter: Any, prompt: str) -> list[int]:
    """Token ids of `prompt` as a generation request (chat template + BOI), as `generate_tokens` sends them."""
    text = adapter.generation_text(prompt)
    return adapter.processor(text=[text], generation_mode="image", return_tensors="pt")["input_ids"][0].tolist()


def unconditional_ids(ids: Sequence[int], bos: int, boi: int, pad: int) -> list[int]:
    """The classifier-free-guidance twin of a prompt: same length, every token but BOS / BOI -> pad."""
    return [t if t in (bos, boi) else pad for t in ids]


def image_token_logits(model: Any, prompts: Sequence[Sequence[int]], codes: torch.Tensor) -> torch.Tensor:
    """Generation-head logits [B, T, codebook] predicting `codes` [B, T] after each prompt.

    Prompts of different lengths are left-padded with explicit position ids (0.. over real tokens),
    so a row's numbers do not depend on what else is in the batch.
    """
    device = codes.device
    width = max(len(p) for p in prompts)
    pad = int(getattr(model.config.text_config, "pad_token_id", 0) or 0)
    ids = torch.full((len(prompts), width), pad, dtype=torch.long, device=device)
    mask = torch.zeros((len(prompts), width + codes.shape[1] - 1), dtype=torch.long, device=device)
    for i, p in enumerate(prompts):
        ids[i, width - len(p) :] = torch.tensor(list(p), dtype=torch.long, device=device)
        mask[i, width - len(p) :] = 1
    text = model.get_input_embeddings()(ids)
    parts = [text]
    if codes.shape[1] > 1:
        parts.append(model.prepare_embeddings_for_image_generation(codes[:, :-1]).to(text.dtype))
    embeds = torch.cat(parts, dim=1)
    positions = (mask.cumsum(-1) - 1).clamp_min(0)
    out = model.model.language_model(inputs_embeds=embeds, attention_mask=mask, position_ids=positions, use_cache=False)
    hidden = out.last_hidden_state[:, width - 1 :]
    return model.model.generation_head(hidden).float()


def image_token_logprobs(model: Any, prompts: Sequence[Sequence[int]], codes: torch.Tensor) -> torch.Tensor:
    """log p(code_t | prompt, codes_<t) per position, [B, T]."""
    logits = image_token_logits(model, prompts, codes)
    return torch.log_softmax(logits, dim=-1).gather(-1, codes.unsqueeze(-1)).squeeze(-1)


def guided_mix(cond: torch.Tensor, uncond: torch.Tensor, scale: float, temperature: float = 1.0) -> torch.Tensor:
    """softmax((u + s (c - u)) / T) in float64: how `generate` mixes the conditional and unconditional
    logits under classifier-free guidance (scale <= 1: the conditional alone). One place for the mix."""
    c, u = cond.double(), uncond.double()
    return torch.softmax((u + scale * (c - u) if scale > 1 else c) / temperature, dim=-1)


def guided_next_token(model: Any, prompt: Sequence[int], uncond: Sequence[int], codes: torch.Tensor, scale: float,
                      temperature: float = 1.0) -> torch.Tensor:
    """The distributions [B, codebook] `generate` samples the next image token from, after each row of
    the image tokens `codes` [B, t] drawn so far for `prompt` (teacher-forced, guidance `scale`)."""
    b, t = codes.shape
    feed = torch.cat([codes, torch.zeros((b, 1), dtype=torch.long, device=codes.device)], 1)
    with torch.no_grad():
        logits = image_token_logits(model, [prompt] * b + [uncond] * b, feed.repeat(2, 1))
    return guided_mix(logits[:b, t], logits[b:, t], scale, temperature)


def guided_first_token(model: Any, prompt: Sequence[int], uncond: Sequence[int], scale: float,
                       temperature: float = 1.0) -> torch.Tensor:
    """The distribution `generate` samples the first image token from, with guidance `scale`."""
    empty = torch.zeros((1, 0), dtype=torch.long, device=next(model.parameters()).device)
    return guided_next_token(model, prompt, uncond, empty, scale, temperature)[0]
