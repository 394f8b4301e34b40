"""Prefix trees: how scoring.contract runs the requests of one batch with no token forwarded twice.

A tree is an image's *shared* prefix (its placeholders and the text all of its prompts begin with),
then each prompt's own *suffix*, then each answer's continuation. Three passes per batch:

1. shared parts, one row per tree, padded (left by default), KV cache on, the head at the last
   position only (it is read only where a prompt has no suffix of its own);
2. suffixes, one row per prompt, on copies of their tree's cache rows, left-padded inside the block
   so that every prompt's last token is the block's last position (head there only); skipped when
   no prompt has a suffix (every tree a single prompt);
3. continuations, one row per answer of two tokens or more (a one-token answer is read from its
   prompt's last position), on copies of their prompt's cache rows, the head on continuation
   positions only.

Padding anywhere is inert: the attention mask hides it and position ids count real tokens only, so
each row sees exactly its own sequence, as the stock forward does (tests check 1e-5 in fp32).
Sharing needs image features that do not depend on the prompt (`Adapter.shares_image_prefix`); a
prompt keeps at least its last token as its suffix, and an image's placeholder block is never cut.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from mllm_audit.models.base import Adapter

GroupKey = tuple[str | None, tuple[int, ...]]
MIN_TEXT_SHARED = 4  # text-only prompts share a prefix only from this many tokens (a pass costs time too)


@dataclass
class Tree:
    """Prompts (group keys) continuing from one shared token prefix of one image."""

    image: str | None
    shared: tuple[int, ...]
    keys: list[GroupKey]

    def n_candidates(self, groups: dict[GroupKey, list[int]]) -> int:
        return sum(len(groups[k]) for k in self.keys)

    def n_rows(self, groups: dict[GroupKey, list[int]], toks: Sequence[tuple[list[int], list[int]]]) -> int:
        """Rows of this tree's widest pass: its prompts (suffix pass) or its answers of two tokens or
        more (continuation pass). What `batch_size` bounds, since memory grows with rows."""
        return max(len(self.keys), sum(1 for k in self.keys for i in groups[k] if len(toks[i][1]) > 1))

    def length(self, toks: Sequence[tuple[list[int], list[int]]], groups: dict[GroupKey, list[int]]) -> int:
        return max(len(k[1]) + max(len(toks[i][1]) for i in groups[k]) for k in self.keys)


def shared_length(adapter: Adapter, prefixes: list[tuple[int, ...]]) -> int:
    """Tokens all `prefixes` begin with, less at least one token each, never cutting the image block."""
    n = min(len(p) for p in prefixes) - 1
    first = prefixes[0]
    for p in prefixes[1:]:
        k = 0
        while k < n and p[k] == first[k]:
            k += 1
        n = k
    img = adapter.image_token_id
    if img in first[:n] and img in first[n:]:
        n = first.index(img)
    return max(n, 0)


def plan_trees(
    adapter: Adapter,
    keys: list[GroupKey],
    groups: dict[GroupKey, list[int]],
    toks: Sequence[tuple[list[int], list[int]]],
    batch_size: int,
) -> list[Tree]:
    """The chunk's prefix groups as trees, longest first; a tree takes at most `batch_size` rows in any
    pass (a larger one is split, each part re-running the shared prefix) unless one prompt alone has more."""
    by_image: dict[str | None, list[GroupKey]] = {}
    for k in keys:
        by_image.setdefault(k[0], []).append(k)
    trees: list[Tree] = []
    for image, ks in by_image.items():
        n = shared_length(adapter, [k[1] for k in ks]) if len(ks) > 1 and adapter.shares_image_prefix else 0
        if n == 0 or (image is None and n < MIN_TEXT_SHARED):
            trees.extend(Tree(image, k[1], [k]) for k in ks)
            continue
        ks = sorted(ks, key=lambda k: -(len(k[1]) + max(len(toks[i][1]) for i in groups[k])))
        part: list[GroupKey] = []
        for k in ks + [None]:  # type: ignore[list-item]
            if k is not None and (not part or Tree(image, (), [*part, k]).n_rows(groups, toks) <= batch_size):
                part.append(k)
                continue
            trees.append(Tree(image, ks[0][1][:n], part))
            if k is not None:
                part = [k]
    trees.sort(key=lambda t: -t.length(toks, groups))
    return trees


def _pad(seqs: Sequence[Sequence[int]], pad_id: int, left: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(ids, mask, index of each row's last real token), padded on the left or the right."""
    n = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), n), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), n), dtype=torch.long)
    last = torch.zeros(len(seqs), dtype=torch.long)
    for b, s in enumerate(seqs):
        start = n - len(s) if left else 0
        if s:
            ids[b, start : start + len(s)] = torch.tensor(list(s))
            mask[b, start : start + len(s)] = 1
        last[b] = start + len(s) - 1
    return ids, mask, last


def score_trees(
    adapter: Adapter,
    trees: list[Tree],
    groups: dict[GroupKey, list[int]],
    toks: Sequence[tuple[list[int], list[int]]],
    feats: dict[str, torch.Tensor],
    keep_distributions: bool,
    padding_side: str,
) -> list[tuple[int, tuple[torch.Tensor, torch.Tensor | None]]]:
    """Per request in the batch: (index, (log-probabilities of its continuation tokens, their
    distributions when asked)). The three passes of the module docstring."""
    dev = adapter.device
    left = padding_side == "left"
    c = adapter.counters
    for t in trees:
        c.prefix_forwards_saved += len(t.keys) - 1
        c.prefix_tokens_saved += (len(t.keys) - 1) * len(t.shared)
    # 1) Shared parts. Left-padded, every row ends at the last position: the head runs there only.
    ids, mask, last = _pad([t.shared for t in trees], adapter.pad_id, left)
    ids, mask = ids.to(dev), mask.to(dev)
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    emb = adapter.embed(ids, [feats[t.image] if t.image is not None else None for t in trees])
    keep = torch.unique(last).to(dev)
    logits, cache = adapter.lm(emb, mask, pos, use_cache=True, logits_to_keep=1 if left else keep)
    at = torch.zeros_like(last) if left else torch.searchsorted(keep.cpu(), last)
    first = torch.log_softmax(logits[torch.arange(len(trees)), at.to(dev)], dim=-1)
    # 2) Suffixes, one row per prompt on a copy of its tree's cache row.
    prompts = [(b, k) for b, t in enumerate(trees) for k in t.keys]
    suffixes = [k[1][len(trees[b].shared) :] for b, k in prompts]
    tree_idx = torch.tensor([b for b, _ in prompts], device=dev)
    first = first[tree_idx]
    if any(suffixes):
        sids, smask, _ = _pad(suffixes, adapter.pad_id, True)
        sids, smask = sids.to(dev), smask.to(dev)
        cache.batch_select_indices(tree_idx)
        spos = mask.sum(-1)[tree_idx].unsqueeze(-1) + (smask.cumsum(-1) - 1).clamp(min=0)
        mask = torch.cat([mask[tree_idx], smask], dim=-1)
        slogits, _ = adapter.lm(adapter.embed(sids, [None] * len(prompts)), mask, spos, past_key_values=cache,
                                logits_to_keep=1)
        has = torch.tensor([bool(s) for s in suffixes], device=dev)
        first = torch.where(has.unsqueeze(-1), torch.log_softmax(slogits[:, -1], dim=-1), first)
        row_of_prompt = torch.arange(len(prompts), device=dev)
    else:
        row_of_prompt = tree_idx  # the cache still holds one row per tree
    # 3) Continuations on copies of their prompt's cache rows, for answers of two tokens or more only.
    #    The last continuation token needs no forward (nothing is predicted from it): rows hold 0..n-2.
    rows = [(p, i) for p, (_, k) in enumerate(prompts) for i in groups[k]]
    conts = [toks[i][1] for _, i in rows]
    longer = [r for r, x in enumerate(conts) if len(x) > 1]
    rest: dict[int, torch.Tensor] = {}
    if longer:
        cids, cmask, _ = _pad([conts[r][:-1] for r in longer], adapter.pad_id, False)
        cids, cmask = cids.to(dev), cmask.to(dev)
        at_rows = row_of_prompt[torch.tensor([rows[r][0] for r in longer], device=dev)]
        cache.batch_select_indices(at_rows)
        src = mask[at_rows]
        cpos = src.sum(-1).unsqueeze(-1) + torch.arange(cids.shape[1], device=dev)
        clogits, _ = adapter.lm(adapter.embed(cids, [None] * len(longer)), torch.cat([src, cmask], dim=-1), cpos,
                                past_key_values=cache)
        logp = torch.log_softmax(clogits, dim=-1)
        rest = {r: logp[j, : len(conts[r]) - 1] for j, r in enumerate(longer)}
    out = []
    for r, (p, i) in enumerate(rows):
        ct = torch.tensor(conts[r], device=dev)
        dist = first[p].unsqueeze(0)
        if r in rest:
            dist = torch.cat([dist, rest[r]], dim=0)
        lps = dist.gather(-1, ct.unsqueeze(-1)).squeeze(-1)
        out.append((i, (lps.cpu(), dist.cpu() if keep_distributions else None)))
    return out
