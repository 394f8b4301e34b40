"""Differentiable and all-position quantities over the scoring contract's one layout.

Every score an editor trains on or a locality protocol compares is read from a right-padded batch
built by `right_padded` below, so the numbers equal the contract's `score` on the same requests.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import torch

from mllm_audit.scoring.contract import Request, tokenize_all

if TYPE_CHECKING:
    from mllm_audit.models.base import Adapter


@torch.no_grad()
def all_position_logprobs(
    adapter: Adapter, requests: Sequence[Request], load: Callable[[str], Any] | None, batch_size: int
) -> list[tuple[torch.Tensor, int]]:
    """Per request, (log-softmax at every position of the sequence the model sees [L - 1, V], the
    number of image positions in front): what EasyEdit's locality compares. One right-padded
    forward per batch, the layout of scoring.differentiable.logprob_tensor."""
    from mllm_audit.scoring.differentiable import right_padded

    out: list[tuple[torch.Tensor, int]] = []
    dev = adapter.device
    for start in range(0, len(requests), max(1, batch_size)):
        part = list(requests[start : start + max(1, batch_size)])
        toks = tokenize_all(adapter, part)
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


def right_padded(
    toks: Sequence[tuple[list[int], list[int]]], pad_id: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(prefix, continuation) id pairs as full right-padded sequences: ids, attention mask,
    continuation mask and position ids. The layout every differentiable score uses (editors, toy
    training), so what is trained or edited is exactly what `score` reads back."""
    length = max(len(p) + len(c) for p, c in toks)
    ids = torch.full((len(toks), length), pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    tgt = torch.zeros_like(ids, dtype=torch.bool)
    for b, (p, c) in enumerate(toks):
        ids[b, : len(p) + len(c)] = torch.tensor(p + c)
        mask[b, : len(p) + len(c)] = 1
        tgt[b, len(p) : len(p) + len(c)] = True
    return ids, mask, tgt, (mask.cumsum(-1) - 1).clamp(min=0)


def _read_window(toks: Sequence[tuple[list[int], list[int]]]) -> tuple[int, int]:
    """[lo, hi): the positions whose logits any row's continuation reads (position t predicts token t + 1).
    The head runs there only: image and prompt positions are never read."""
    return min(len(p) for p, _ in toks) - 1, max(len(p) + len(c) for p, c in toks) - 1


def logprob_tensor(
    adapter: Adapter,
    requests: Sequence[Request],
    features: dict[str, torch.Tensor],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Differentiable summed continuation log-probabilities [B] and token counts [B].

    One right-padded forward over full sequences, gradients flowing to whatever the caller left
    trainable (editors use this). `features` maps image keys to their encoded features; encode
    them inside the caller's autograd context when the vision side is being edited.
    """
    dev = adapter.device
    toks = tokenize_all(adapter, requests)
    ids, mask, tgt, pos = (t.to(dev) for t in right_padded(toks, adapter.pad_id))
    emb = adapter.embed(ids, [features[r.image] if r.image is not None else None for r in requests])
    lo, hi = _read_window(toks)
    logits, _ = adapter.lm(emb, mask, pos, logits_to_keep=torch.arange(lo, hi, device=dev))
    # Continuation positions only: image placeholders may lie outside the vocabulary (MiniGPT-4), and a
    # softmax over every prefix position would cost memory for nothing.
    sel = tgt[:, lo + 1 : hi + 1]
    logp = torch.log_softmax(logits[sel], dim=-1).gather(-1, ids[:, lo + 1 : hi + 1][sel].unsqueeze(-1)).squeeze(-1)
    total = torch.zeros(len(requests), dtype=logp.dtype, device=dev).index_add(0, sel.nonzero(as_tuple=True)[0], logp)
    return total, sel.sum(-1).to(logp.dtype)


def continuation_distributions(
    adapter: Adapter, requests: Sequence[Request], features: dict[str, torch.Tensor]
) -> list[torch.Tensor]:
    """Differentiable log-softmax [n, V] at each continuation position, from the same right-padded
    forward as `logprob_tensor` (the learned editors' locality loss reads these)."""
    dev = adapter.device
    toks = tokenize_all(adapter, requests)
    ids, mask, _, pos = (t.to(dev) for t in right_padded(toks, adapter.pad_id))
    emb = adapter.embed(ids, [features[r.image] if r.image is not None else None for r in requests])
    lo, hi = _read_window(toks)
    logits, _ = adapter.lm(emb, mask, pos, logits_to_keep=torch.arange(lo, hi, device=dev))
    return [torch.log_softmax(logits[b, len(p) - 1 - lo : len(p) + len(c) - 1 - lo], dim=-1)
            for b, (p, c) in enumerate(toks)]
