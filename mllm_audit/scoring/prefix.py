"""Prefix trees: how scoring.contract runs the requests of one batch with no token forwarded twice.

A tree is an image's *shared* prefix (its placeholders and the text all of its prompts begin with),
then each prompt's own *suffix*, then each answer's continuation. Per batch:

1. shared parts, one row per tree, padded (left by default), KV cache on, the head at the last
   position only, and only where some prompt of the batch has no suffix of its own (else none reads it);
2. one row per tree holding every prompt's suffix and every answer of two tokens or more (a
   one-token answer is read from its prompt's last position), under a tree attention mask: each
   token sees the shared part, its own segment up to itself and, an answer, its prompt's suffix.
   Tokens whose logits are read go last in the row and the head runs on those columns only.

Families whose language model does not take a 4-D mask (`Adapter.tree_attention` False) run step
2 as two forwards on copied cache rows instead: suffixes (left-padded inside their block, so each
prompt's last token is the block's last position), then continuations.

Padding anywhere is inert: the attention mask hides it and position ids count real tokens only, so
each row sees exactly its own sequence, as the stock forward does (tests check 1e-5 in fp32).
Sharing needs image features that do not depend on the prompt (`Adapter.shares_image_prefix`); a
prompt keeps at least its last token as its suffix, and an image's placeholder block is never cut.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

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

    def n_rows(self, groups: dict[GroupKey, list[int]], toks: Sequence[tuple[list[int], list[int]]],
               folded: bool = False) -> int:
        """Rows of this tree's widest pass, what `batch_size` bounds (memory grows with rows): one under
        the tree mask (a tree is one row in both passes), else its prompts (suffix pass) or its answers
        of two tokens or more (continuation pass), whichever is more."""
        if folded:
            return 1
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
    folded: bool = False,
) -> list[Tree]:
    """The chunk's prefix groups as trees, longest first; a tree takes at most `batch_size` rows in any
    pass (a larger one is split, each part re-running the shared prefix) unless one prompt alone has more.
    Under the tree mask (`folded`) a tree is one row whatever its prompts, so it is never split: a small
    `--batch-size` then means fewer trees per pass, not each image's shared prefix run again per part."""
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
            if k is not None and (not part or Tree(image, (), [*part, k]).n_rows(groups, toks, folded) <= batch_size):
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
    distributions when asked)). The passes of the module docstring."""
    dev = adapter.device
    left = padding_side == "left"
    c = adapter.counters
    for t in trees:
        c.prefix_forwards_saved += len(t.keys) - 1
        c.prefix_tokens_saved += (len(t.keys) - 1) * len(t.shared)
    # 1) Shared parts. Left-padded, every row ends at the last position: the head runs there only, when read.
    ids, mask, last = _pad([t.shared for t in trees], adapter.pad_id, left)
    ids, mask = ids.to(dev), mask.to(dev)
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    emb = adapter.embed(ids, [feats[t.image] if t.image is not None else None for t in trees])
    prompts = [(b, k) for b, t in enumerate(trees) for k in t.keys]
    if reads_shared_head(trees):
        keep = torch.unique(last).to(dev)
        logits, cache = adapter.lm(emb, mask, pos, use_cache=True, logits_to_keep=1 if left else keep)
        at = torch.zeros_like(last) if left else torch.searchsorted(keep.cpu(), last)
        first = torch.log_softmax(logits[torch.arange(len(trees)), at.to(dev)], dim=-1)
    else:  # every prompt has a suffix, whose pass fills `first`: no head here (it reads the whole weight)
        none = torch.zeros(0, dtype=torch.long, device=dev)
        logits, cache = adapter.lm(emb, mask, pos, use_cache=True, logits_to_keep=none)
        first = torch.full((len(trees), logits.shape[-1]), float("nan"), device=dev)
    suffixes = [k[1][len(trees[b].shared) :] for b, k in prompts]
    rows = [(p, i) for p, (_, k) in enumerate(prompts) for i in groups[k]]
    conts = [toks[i][1] for _, i in rows]
    first = first[torch.tensor([b for b, _ in prompts], device=dev)]
    if uses_tree_mask(adapter):
        rest = _folded_pass(adapter, trees, prompts, suffixes, rows, conts, cache, mask, first)
    else:
        rest = _suffix_then_continuation(adapter, prompts, suffixes, rows, conts, cache, mask, first)
    out = []
    for r, (p, i) in enumerate(rows):
        ct = torch.tensor(conts[r], device=dev)
        dist = first[p].unsqueeze(0)
        if r in rest:
            dist = torch.cat([dist, rest[r]], dim=0)
        lps = dist.gather(-1, ct.unsqueeze(-1)).squeeze(-1)
        out.append((i, (lps.cpu(), dist.cpu() if keep_distributions else None)))
    return out


def reads_shared_head(trees: list[Tree]) -> bool:
    """Whether some prompt of the batch ends with its tree's shared part (no suffix of its own): its
    next-token logits come from the shared pass, the only reader of that pass's head."""
    return any(len(k[1]) == len(t.shared) for t in trees for k in t.keys)


def _suffix_then_continuation(
    adapter: Adapter, prompts: list[tuple[int, GroupKey]], suffixes: list[tuple[int, ...]],
    rows: list[tuple[int, int]], conts: list[list[int]], cache: Any, mask: torch.Tensor, first: torch.Tensor,
) -> dict[int, torch.Tensor]:
    """Passes 2 and 3 as two forwards on copied cache rows (families without tree attention).
    Fills `first` for prompts with a suffix; returns each longer answer's continuation log-softmax."""
    # 2) Suffixes, one row per prompt on a copy of its tree's cache row.
    dev = adapter.device
    tree_idx = torch.tensor([b for b, _ in prompts], device=dev)
    if any(suffixes):
        sids, smask, _ = _pad(suffixes, adapter.pad_id, True)
        sids, smask = sids.to(dev), smask.to(dev)
        cache.batch_select_indices(tree_idx)
        spos = mask.sum(-1)[tree_idx].unsqueeze(-1) + (smask.cumsum(-1) - 1).clamp(min=0)
        mask = torch.cat([mask[tree_idx], smask], dim=-1)
        slogits, _ = adapter.lm(adapter.embed(sids, [None] * len(prompts)), mask, spos, past_key_values=cache,
                                logits_to_keep=1)
        has = torch.tensor([bool(s) for s in suffixes], device=dev)
        first[:] = torch.where(has.unsqueeze(-1), torch.log_softmax(slogits[:, -1], dim=-1), first)
        row_of_prompt = torch.arange(len(prompts), device=dev)
    else:
        row_of_prompt = tree_idx  # the cache still holds one row per tree
    # 3) Continuations on copies of their prompt's cache rows, for answers of two tokens or more only.
    #    The last continuation token needs no forward (nothing is predicted from it): rows hold 0..n-2.
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
    return rest


def _folded_pass(
    adapter: Adapter, trees: list[Tree], prompts: list[tuple[int, GroupKey]], suffixes: list[tuple[int, ...]],
    rows: list[tuple[int, int]], conts: list[list[int]], cache: Any, mask: torch.Tensor, first: torch.Tensor,
) -> dict[int, torch.Tensor]:
    """Passes 2 and 3 as one forward: per tree one row holding every prompt's suffix and every longer
    answer's tokens, a tree attention mask letting each token see the shared part, its own segment up
    to itself and (an answer) its prompt's whole suffix. Positions are explicit, so the order inside a
    row is free: tokens whose logits are read go last, and the head runs on the last columns only.
    Fills `first` for prompts with a suffix; returns each longer answer's continuation log-softmax."""
    dev = adapter.device
    n_shared = mask.sum(-1).tolist()
    # Per tree: tokens as (id, position, segment, index in segment, parent segment, read key).
    layout: list[list[tuple[int, int, int, int, int, tuple[str, int, int] | None]]] = [[] for _ in trees]
    seg_of_prompt: dict[int, int] = {}
    for p, ((b, _), sfx) in enumerate(zip(prompts, suffixes, strict=True)):
        seg_of_prompt[p] = 2 * p
        for k, tok in enumerate(sfx):
            key = ("first", p, 0) if k == len(sfx) - 1 else None
            layout[b].append((tok, n_shared[b] + k, 2 * p, k, -1, key))
    for r, (p, _) in enumerate(rows):
        b, sfx = prompts[p][0], suffixes[p]
        for j, tok in enumerate(conts[r][:-1]):
            layout[b].append((tok, n_shared[b] + len(sfx) + j, 2 * len(prompts) + r, j, seg_of_prompt[p],
                              ("cont", r, j)))
    if not any(layout):
        return {}
    for tokens in layout:
        tokens.sort(key=lambda t: t[5] is not None)  # stable: read tokens last, segment order kept
    q = max(len(t) for t in layout)
    n_read = max(sum(1 for t in tokens if t[5] is not None) for tokens in layout)
    ids = torch.full((len(trees), q), adapter.pad_id, dtype=torch.long)
    pos = torch.zeros((len(trees), q), dtype=torch.long)
    seg = -torch.arange(1, q + 1).repeat(len(trees), 1) - 10  # pads: a segment of their own
    idx = torch.zeros((len(trees), q), dtype=torch.long)
    parent = torch.full((len(trees), q), -5, dtype=torch.long)
    for b, tokens in enumerate(layout):
        off = q - len(tokens)  # left-padded: every row ends with its read tokens
        for c, (tok, ps, sg, k, par, _) in enumerate(tokens):
            ids[b, off + c], pos[b, off + c], seg[b, off + c], idx[b, off + c], parent[b, off + c] = tok, ps, sg, k, par
    visible = tree_mask(seg, idx, parent)
    emb = adapter.embed(ids.to(dev), [None] * len(trees))
    lo = torch.finfo(emb.dtype).min
    full = torch.full((len(trees), 1, q, mask.shape[1] + q), lo, dtype=emb.dtype, device=dev)
    full[:, 0, :, : mask.shape[1]].masked_fill_(mask.bool().unsqueeze(1), 0.0)
    full[:, 0, :, mask.shape[1] :].masked_fill_(visible.to(dev), 0.0)
    logits, _ = adapter.lm(emb, full, pos.to(dev), past_key_values=cache, logits_to_keep=n_read)
    logp = torch.log_softmax(logits, dim=-1)
    rest_rows: dict[int, list[torch.Tensor]] = {}
    for b, tokens in enumerate(layout):
        off = q - len(tokens) - (q - n_read)
        for c, tok in enumerate(tokens):
            if tok[5] is None:
                continue
            kind, ref, _ = tok[5]
            if kind == "first":
                first[ref] = logp[b, off + c]
            else:
                rest_rows.setdefault(ref, []).append(logp[b, off + c])
    return {r: torch.stack(v) for r, v in rest_rows.items()}


def tree_mask(seg: torch.Tensor, idx: torch.Tensor, parent: torch.Tensor) -> torch.Tensor:
    """[B, Q, Q] True where query q sees key k: the same segment up to itself, or (an answer's token)
    every token of its parent segment (its prompt's suffix)."""
    own = (seg.unsqueeze(-1) == seg.unsqueeze(-2)) & (idx.unsqueeze(-2) <= idx.unsqueeze(-1))
    return own | (parent.unsqueeze(-1) == seg.unsqueeze(-2))


def uses_tree_mask(adapter: Adapter) -> bool:
    """Suffixes and answers in one pass under a tree mask: where the family allows it and the attention
    kernel adds a float mask as given (sdpa, eager; flash and flex kernels take none)."""
    if not adapter.tree_attention:
        return False
    cfg = adapter.language_model().config
    impl = getattr(getattr(cfg, "text_config", None) or cfg, "_attn_implementation", None) or "sdpa"
    return impl in ("sdpa", "eager")
