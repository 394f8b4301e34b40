"""Differentiable and all-position quantities over the scoring contract's one layout.

Every score an editor trains on or a locality protocol compares is read from a right-padded batch
built by `contract.right_padded`, so the numbers equal the contract's `score` on the same requests.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import torch

from mllm_audit.scoring.contract import Request

if TYPE_CHECKING:
    from mllm_audit.models.base import Adapter


@torch.no_grad()
def all_position_logprobs(
    adapter: Adapter, requests: Sequence[Request], load: Callable[[str], Any] | None, batch_size: int
) -> list[tuple[torch.Tensor, int]]:
    """Per request, (log-softmax at every position of the sequence the model sees [L - 1, V], the
    number of image positions in front): what EasyEdit's locality compares. One right-padded
    forward per batch, the layout of scoring.logprob_tensor."""
    from mllm_audit.scoring.contract import right_padded, tokenize

    out: list[tuple[torch.Tensor, int]] = []
    dev = adapter.device
    for start in range(0, len(requests), max(1, batch_size)):
        part = list(requests[start : start + max(1, batch_size)])
        toks = [tokenize(adapter, r) for r in part]
        ids, mask, _, pos = right_padded(toks, adapter.pad_id)
        keys = sorted({r.image for r in part if r.image is not None})
        feats = dict(zip(keys, adapter.encode_images([load(k) for k in keys]), strict=True)) if keys else {}  # type: ignore[misc]
        emb = adapter.embed(ids.to(dev), [feats[r.image] if r.image is not None else None for r in part])
        logits, _ = adapter.lm(emb, mask.to(dev), pos.to(dev))
        for b, (prefix, cont) in enumerate(toks):
            n = len(prefix) + len(cont)
            n_img = sum(1 for t in prefix if t == adapter.image_token_id) if part[b].image is not None else 0
            out.append((torch.log_softmax(logits[b, : n - 1].float(), dim=-1).cpu(), n_img))
    return out
