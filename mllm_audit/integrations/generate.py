"""Greedy text generation through the adapter protocol (models/base.py), for any family.

Harnesses ask for free-form answers too (`generate_until`). The adapter exposes what the contract
needs (prompt ids, image features, embeddings, the language model with its KV cache), and that is
enough to decode greedily: the same prompt ids, image features and positions the scores use, so a
generated answer is the argmax path of the very distribution the likelihoods come from.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from mllm_audit.models.base import Adapter


@torch.no_grad()
def greedy_ids(adapter: Adapter, prompt: str, task: str | None, image: Any | None, max_new_tokens: int,
               until: Sequence[str] = ()) -> list[int]:
    """Token ids of the greedy continuation: stops at EOS, after `max_new_tokens`, or once the decoded
    text contains one of `until` (the text is cut there by `greedy_text`)."""
    dev = adapter.device
    ids = adapter.prompt_ids(prompt, task, with_image=image is not None)
    feats = adapter.encode_images([image])[0] if image is not None else None
    x = torch.tensor([ids], device=dev)
    mask = torch.ones_like(x)
    emb = adapter.embed(x, [feats])
    logits, cache = adapter.lm(emb, mask, torch.arange(len(ids), device=dev).unsqueeze(0), use_cache=True)
    eos = adapter.tokenizer.eos_token_id
    out: list[int] = []
    for _ in range(max_new_tokens):
        nxt = int(logits[0, -1].argmax())
        if nxt == eos:
            break
        out.append(nxt)
        if until and any(u in adapter.tokenizer.decode(out, skip_special_tokens=True) for u in until):
            break
        step = torch.tensor([[nxt]], device=dev)
        mask = torch.cat([mask, torch.ones_like(step)], dim=-1)
        pos = torch.tensor([[mask.shape[1] - 1]], device=dev)
        logits, cache = adapter.lm(adapter.embed(step, [None]), mask, pos, past_key_values=cache, use_cache=True)
    return out


def greedy_text(adapter: Adapter, prompt: str, task: str | None, image: Any | None, max_new_tokens: int = 32,
                until: Sequence[str] = ()) -> str:
    """The greedy continuation as text, cut before the first stop string."""
    text = str(adapter.tokenizer.decode(greedy_ids(adapter, prompt, task, image, max_new_tokens, until),
                                        skip_special_tokens=True))
    for u in until:
        if u and u in text:
            text = text[: text.index(u)]
    return text
