"""Prefix trees: how scoring.contract runs the requests of one batch with no token forwarded twice.

A tree is an image's *shared* prefix (its placeholders and the text all of its prompts begin with),
then each prompt's own *suffix*, then each answer's continuation. Per batch, one forward: one row per
tree holding its shared part, every prompt's suffix and every answer of two tokens or more (a
one-token answer is read from its prompt's last position), under a tree attention mask: each token
sees its own segment up to itself, a suffix or answer the shared part too, an answer its prompt's
whole suffix. Tokens whose logits are read go last in the row and the head runs on those columns
only. One pass, not a shared pass then a cached one: twice the rows per matmul, half the operations,
no cache copies (issue 29 item 3: fewer, larger operations).

Families whose language model does not take a 4-D mask (`Adapter.tree_attention` False) run up to
three forwards on copied cache rows instead: 1. the shared parts, KV cache on, the head at the last
position only, and only where some prompt has no suffix of its own (else none reads it); 2. the
suffixes (left-padded inside their block, so each prompt's last token is the block's last position);
3. the continuations.

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
        the tree mask (a tree is one row of its one pass), else its prompts (suffix pass) or its answers
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
    prompts = [(b, k) for b, t in enumerate(trees) for k in t.keys]
    suffixes = [k[1][len(trees[b].shared) :] for b, k in prompts]
    rows = [(p, i) for p, (_, k) in enumerate(prompts) for i in groups[k]]
    conts = [toks[i][1] for _, i in rows]
    if uses_tree_mask(adapter):
        table, at = _tree_pass(adapter, trees, feats, prompts, suffixes, rows, conts, left)
    else:
        first, cache, mask = _shared_pass(adapter, trees, feats, left)
        first = first[torch.tensor([b for b, _ in prompts], device=dev)]
        rest = _suffix_then_continuation(adapter, prompts, suffixes, rows, conts, cache, mask, first)
        parts, at, n = [first], [], len(prompts)
        for r, (p, _) in enumerate(rows):
            extra = rest[r] if r in rest else first[:0]
            parts.append(extra)
            at.append([p, *range(n, n + len(extra))])
            n += len(extra)
        table = torch.cat(parts)
    return [(i, res) for (_, i), res in zip(rows, read_rows(table, at, conts, keep_distributions), strict=True)]


def read_rows(
    table: torch.Tensor, at: list[list[int]], conts: list[list[int]], keep_distributions: bool
) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
    """Per request r: (the log-probabilities of its tokens `conts[r]`, read from the rows `at[r]` of the
    next-token log-softmax `table` [N, V], and those rows when asked). One indexing op for the whole
    batch: per request a few small ops, under scoring's fixed cost per chunk (issue 29), were not free."""
    flat = torch.tensor([j for a in at for j in a], dtype=torch.long, device=table.device)
    tgt = torch.tensor([t for c in conts for t in c], dtype=torch.long, device=table.device)
    lens = [len(c) for c in conts]
    if [len(a) for a in at] != lens:  # equal totals could still pair each request with another's rows
        raise AssertionError(f"scoring read {[len(a) for a in at]} rows for continuations of {lens} tokens")
    lps = table[flat, tgt].cpu().split(lens)
    # Each request's rows in a tensor of its own: a caller keeping a few (locality probes) must not pin the batch.
    dists = [d.clone() for d in table[flat].cpu().split(lens)] if keep_distributions else [None] * len(conts)
    return list(zip(lps, dists, strict=True))


def _shared_pass(
    adapter: Adapter, trees: list[Tree], feats: dict[str, torch.Tensor], left: bool,
) -> tuple[torch.Tensor, Any, torch.Tensor]:
    """Pass 1 on copied cache rows: the shared parts, one row per tree, KV cache on. Padded, each row's
    last position holds its last token: the head runs there only, and only when read. Returns (the
    next-token log-softmax per tree, NaN where unread; the cache; the attention mask)."""
    dev = adapter.device
    ids, mask, last = _pad([t.shared for t in trees], adapter.pad_id, left)
    ids, mask = ids.to(dev), mask.to(dev)
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    emb = adapter.embed(ids, [feats[t.image] if t.image is not None else None for t in trees])
    if reads_shared_head(trees):
        keep = torch.unique(last).to(dev)
        logits, cache = adapter.lm(emb, mask, pos, use_cache=True, logits_to_keep=1 if left else keep)
        at = torch.zeros_like(last) if left else torch.searchsorted(keep.cpu(), last)
        return torch.log_softmax(logits[torch.arange(len(trees)), at.to(dev)], dim=-1), cache, mask
    # every prompt has a suffix, whose pass fills `first`: no head here (it reads the whole weight)
    none = torch.zeros(0, dtype=torch.long, device=dev)
    logits, cache = adapter.lm(emb, mask, pos, use_cache=True, logits_to_keep=none)
    return torch.full((len(trees), logits.shape[-1]), float("nan"), device=dev), cache, mask


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


def _tree_pass(
    adapter: Adapter, trees: list[Tree], feats: dict[str, torch.Tensor], prompts: list[tuple[int, GroupKey]],
    suffixes: list[tuple[int, ...]], rows: list[tuple[int, int]], conts: list[list[int]], left: bool,
) -> tuple[torch.Tensor, list[list[int]]]:
    """The module docstring's one pass: per tree one row holding its shared part, every prompt's suffix and
    every longer answer's tokens under a tree mask (each token sees its own segment up to itself, a
    suffix or answer the shared part too, an answer its prompt's whole suffix); no KV cache. Positions
    are explicit, so the order inside a row is free: tokens whose logits are read go last, and the head
    runs on those columns only. Returns (the log-softmax at every head column [rows x columns, V], per
    request the rows its tokens are read from: its prompt's last token, then its answer's tokens but the last)."""
    dev = adapter.device
    # Per tree: tokens as (id, position, segment, index in segment, parent segment, read key). Segment 0
    # is the shared part, 1 + p prompt p's suffix, 1 + len(prompts) + r answer r; all but 0 see 0.
    layout: list[list[tuple[int, int, int, int, int, tuple[str, int, int] | None]]] = [[] for _ in trees]
    reader = {b: p for p, (b, _) in enumerate(prompts) if not suffixes[p]}  # a prompt reading the shared head
    for b, t in enumerate(trees):
        for k, tok in enumerate(t.shared):
            key = ("first", reader[b], 0) if k == len(t.shared) - 1 and b in reader else None
            layout[b].append((tok, k, 0, k, -5, key))
    for p, ((b, _), sfx) in enumerate(zip(prompts, suffixes, strict=True)):
        for k, tok in enumerate(sfx):
            key = ("first", p, 0) if k == len(sfx) - 1 else None
            layout[b].append((tok, len(trees[b].shared) + k, 1 + p, k, -5, key))
    for r, (p, _) in enumerate(rows):
        b, sfx = prompts[p][0], suffixes[p]
        for j, tok in enumerate(conts[r][:-1]):
            layout[b].append((tok, len(trees[b].shared) + len(sfx) + j, 1 + len(prompts) + r, j, 1 + p,
                              ("cont", r, j)))
    for tokens in layout:
        tokens.sort(key=lambda t: t[5] is not None)  # stable: read tokens last, segment order kept
    q = max(len(t) for t in layout)
    ids = torch.full((len(trees), q), adapter.pad_id, dtype=torch.long)
    pos = torch.zeros((len(trees), q), dtype=torch.long)
    seg = -torch.arange(1, q + 1).repeat(len(trees), 1) - 10  # pads: a segment of their own
    idx = torch.zeros((len(trees), q), dtype=torch.long)
    parent = torch.full((len(trees), q), -5, dtype=torch.long)
    offs = [q - len(tokens) if left else 0 for tokens in layout]
    for b, tokens in enumerate(layout):
        cols = slice(offs[b], offs[b] + len(tokens))
        ids[b, cols], pos[b, cols], seg[b, cols], idx[b, cols], parent[b, cols] = (
            torch.tensor([t[i] for t in tokens], dtype=torch.long) for i in range(5))
    root = torch.where(seg > 0, 0, -5)  # suffixes and answers see the shared part
    emb = adapter.embed(ids.to(dev), [feats[t.image] if t.image is not None else None for t in trees])
    full = torch.full((len(trees), 1, q, q), torch.finfo(emb.dtype).min, dtype=emb.dtype, device=dev)
    full[:, 0].masked_fill_(tree_mask(seg, idx, parent, root).to(dev), 0.0)
    lo = min(off + sum(1 for t in tokens if t[5] is None) for off, tokens in zip(offs, layout, strict=True))
    logits, _ = adapter.lm(emb, full, pos.to(dev), logits_to_keep=torch.arange(lo, q, device=dev))
    logp = torch.log_softmax(logits, dim=-1).flatten(0, 1)  # row b * (q - lo) + c - lo: column c of tree b
    first = [-1] * len(prompts)  # every prompt's read position is set below (checked)
    cont_at: dict[int, list[int]] = {}
    for b, tokens in enumerate(layout):
        for c, tok in enumerate(tokens):
            if tok[5] is None:
                continue
            kind, ref, _ = tok[5]
            row = b * (q - lo) + offs[b] + c - lo
            if kind == "first":
                first[ref] = row
            else:
                cont_at.setdefault(ref, []).append(row)  # in answer order: the sort above is stable
    if min(first, default=0) < 0:
        raise AssertionError(f"the tree pass placed no read position for prompt {first.index(-1)}")
    return logp, [[first[p], *cont_at.get(r, [])] for r, (p, _) in enumerate(rows)]


def tree_mask(seg: torch.Tensor, idx: torch.Tensor, parent: torch.Tensor, root: torch.Tensor) -> torch.Tensor:
    """[B, Q, Q] True where query q sees key k: the same segment up to itself, or every token of its
    parent segment (an answer's: its prompt's suffix) or of its root segment (the shared part)."""
    own = (seg.unsqueeze(-1) == seg.unsqueeze(-2)) & (idx.unsqueeze(-2) <= idx.unsqueeze(-1))
    return own | (parent.unsqueeze(-1) == seg.unsqueeze(-2)) | (root.unsqueeze(-1) == seg.unsqueeze(-2))


def uses_tree_mask(adapter: Adapter) -> bool:
    """Suffixes and answers in one pass under a tree mask: where the family allows it and the attention
    kernel adds a float mask as given (sdpa, eager; flash and flex kernels take none)."""
    if not adapter.tree_attention:
        return False
    cfg = adapter.language_model().config
    impl = getattr(getattr(cfg, "text_config", None) or cfg, "_attn_implementation", None) or "sdpa"
    return impl in ("sdpa", "eager")
