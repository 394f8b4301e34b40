"""THE likelihood contract. Read this file end to end; every number the tool reports starts here.

For a request (image, prompt, answer) the score is the summed log-probability of the answer tokens
given the image and the prompt, with the count of those tokens:

    continuation = " " + answer          (unless the answer already starts with whitespace)
    tokens       = prompt_ids(prompt)    (as the model's processor builds them: special tokens,
                                          image placeholders)
                 + continuation_ids      (tokenized with add_special_tokens=False)

The boundary: some tokenizers (LLaMA/Vicuna's legacy sentencepiece, which prepends "▁" to any text)
tokenize a continuation alone differently from the same text after the prompt (" yes" alone ->
["▁", "▁yes"], after "Answer:" -> ["▁yes"]): the stray "▁" would be scored. Where
tokens(prompt_text + continuation) starts with tokens(prompt_text) and the rest differs from
tokens(continuation), the rest is used (the joint tokenisation split at the prompt boundary) and
`counters.joint_tokenization` counts it, so the run records that it happened.
    logp         = sum over continuation positions t of log softmax(logits[t-1])[token t]

Only continuation positions count; image and prompt positions are context. The result equals the
stock forward's `loss * n_tokens` with labels masking everything but the continuation.

How it is computed, and why it stays exact:
- Each distinct image is encoded (vision tower + bridge) once per call and reused by all of its
  requests. Images are taken in chunks so that memory stays bounded on large suites.
- Requests that share (image, prompt) share one *prefix* forward, and the prompts of one image share
  its placeholders and the text they all begin with: that shared part runs once, and each prompt's own
  suffix and each continuation see it through a tree attention mask in the same forward (or, families
  without one, continue from copies of its cache rows) (scoring/prefix.py; `counters.prefix_forwards_saved`
  and `prefix_tokens_saved` record what it spared).
  Position ids are explicit (0..n-1 over real tokens), so padding never shifts positions, and
  results do not depend on batch size, padding or order (tests check 1e-5 in fp32).
- The LM head runs only where a logit is read: each prompt's last position and the continuation
  positions (at a 50k-100k vocabulary the head over every prefix position was most of the work).
- Batches go longest first (an out-of-memory shows at once) and results come back in input order.
- Logits are cast to fp32 before log-softmax whatever the model dtype.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from mllm_audit.errors import AuditError

if TYPE_CHECKING:
    from mllm_audit.models.base import Adapter

ImageLoader = Callable[[str], Any]
IMAGE_CHUNK = 64  # distinct images whose features are held at once
# Decoded pixels held at once while encoding, whatever --batch-size says: an encode call takes images
# until the next would pass this (each image is already at most --max-pixels: suites.items.load_image).
ENCODE_PIXELS = 32_000_000


@dataclass(frozen=True)
class Request:
    """One continuation to score. `image` is a key for the image loader; None = text only."""

    prompt: str
    continuation: str
    image: str | None = None
    task: str | None = None


@dataclass(frozen=True)
class Score:
    logp: float
    n_tokens: int


def continuation_text(answer: str) -> str:
    return answer if answer[:1].isspace() else " " + answer


def tokenize(adapter: Adapter, req: Request) -> tuple[list[int], list[int]]:
    """(prefix ids, continuation ids) for a request, per the contract above."""
    prefix, cont, joint = _tokenize(adapter, req)
    adapter.counters.joint_tokenization += int(joint)
    return prefix, cont


def tokenize_all(adapter: Adapter, requests: Sequence[Request]) -> list[tuple[list[int], list[int]]]:
    """`tokenize` for each request, the tokenizer run once per distinct (prompt, answer, task, with image):
    a suite asks the same prompts and answers of every image, and tokenising each copy again was a fixed
    share of a scan's time (issue 29). `joint_tokenization` still counts every request; the lists of equal
    requests are the same objects (read them, do not change them)."""
    seen: dict[tuple[str, str, str | None, bool], tuple[list[int], list[int], bool]] = {}
    out = []
    for r in requests:
        key = (r.prompt, r.continuation, r.task, r.image is not None)
        if key not in seen:
            seen[key] = _tokenize(adapter, r)
        prefix, cont, joint = seen[key]
        adapter.counters.joint_tokenization += int(joint)
        out.append((prefix, cont))
    return out


def _tokenize(adapter: Adapter, req: Request) -> tuple[list[int], list[int], bool]:
    """`tokenize`'s checks and ids, and whether the joint split was used (counted by the callers)."""
    from mllm_audit.util.files import MAX_TEXT_CHARS

    for text in (req.prompt, req.continuation):  # in characters, before any tokenizer sees it
        if len(text) > MAX_TEXT_CHARS:
            raise AuditError(f"text of {len(text)} characters, over the {MAX_TEXT_CHARS} limit: {text[:60]!r}")
    prefix = adapter.prompt_ids(req.prompt, req.task, with_image=req.image is not None)
    cont, joint = _continuation_ids(adapter, req)
    if not cont:
        raise AuditError(f"answer {req.continuation!r} tokenizes to nothing")
    want = adapter.n_image_tokens if req.image is not None else 0
    if prefix.count(adapter.image_token_id) != want or adapter.image_token_id in cont:
        raise AuditError(
            f"the model's image placeholder token is typed inside the text {req.prompt[:60]!r} / "
            f"{req.continuation[:60]!r}; remove it (the image is inserted by the tool)"
        )
    limit = adapter.max_positions
    if limit is not None and len(prefix) + len(cont) > limit:
        raise AuditError(
            f"prompt + answer take {len(prefix) + len(cont)} tokens, over the model's {limit} positions: "
            f"{req.prompt[:60]!r}"
        )
    return prefix, cont, joint


def _continuation_ids(adapter: Adapter, req: Request) -> tuple[list[int], bool]:
    """The continuation's tokens as they fall after the prompt text (see "The boundary" above), and
    whether that is the joint split."""
    text = continuation_text(req.continuation)
    alone = adapter.continuation_ids(text)
    tail = adapter.prompt_text(req.prompt, req.task, with_image=req.image is not None)
    head, joint = adapter.continuation_ids(tail), adapter.continuation_ids(tail + text)
    if joint[: len(head)] != head or joint[len(head) :] == alone or not joint[len(head) :]:
        return alone, False  # the same either way, or a token straddles the boundary: keep the contract's split
    return joint[len(head) :], True


def score(
    adapter: Adapter,
    requests: Sequence[Request],
    load_image: ImageLoader | None = None,
    batch_size: int = 16,
    on_progress: Callable[[int], None] | None = None,
    padding_side: str = "left",
) -> list[Score]:
    """Summed continuation log-probabilities, in input order."""
    out = _run(adapter, requests, load_image, batch_size, False, on_progress, padding_side)
    return [Score(float(lp.sum()), int(lp.numel())) for lp, _ in out]


def next_token_logprobs(
    adapter: Adapter,
    requests: Sequence[Request],
    load_image: ImageLoader | None = None,
    batch_size: int = 16,
) -> list[torch.Tensor]:
    """Per request, the log-softmax over the vocabulary at each continuation position [n, V].

    Locality compares these between the unedited and the edited model (top-1 agreement, KL).
    """
    out = _run(adapter, requests, load_image, batch_size, True, None, "left")
    return [d for _, d in out]


@torch.no_grad()
def _run(
    adapter: Adapter,
    requests: Sequence[Request],
    load_image: ImageLoader | None,
    batch_size: int,
    keep_distributions: bool,
    on_progress: Callable[[int], None] | None,
    padding_side: str,
) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
    from mllm_audit.scoring.prefix import plan_trees, score_trees, uses_tree_mask

    if padding_side not in ("left", "right"):
        raise ValueError(f"padding_side must be left or right, got {padding_side!r}")
    toks = tokenize_all(adapter, requests)
    folded = uses_tree_mask(adapter)
    # Prefix groups: requests sharing (image, prefix tokens) share one prefix forward.
    groups: dict[tuple[str | None, tuple[int, ...]], list[int]] = {}
    for i, (r, (prefix, _)) in enumerate(zip(requests, toks, strict=True)):
        groups.setdefault((r.image, tuple(prefix)), []).append(i)
    # Distinct images in first-seen order, taken in chunks; text-only groups form their own chunk.
    images: list[str | None] = list(dict.fromkeys(k[0] for k in groups if k[0] is not None))
    chunks: list[list[str | None]] = [images[i : i + IMAGE_CHUNK] for i in range(0, len(images), IMAGE_CHUNK)]
    if any(k[0] is None for k in groups):
        chunks.append([None])
    results: list[tuple[torch.Tensor, torch.Tensor | None] | None] = [None] * len(requests)
    for chunk in chunks:
        feats = _encode(adapter, [k for k in chunk if k is not None], load_image, batch_size)
        keys = [k for k in groups if k[0] in set(chunk)]
        if not adapter.prefix_cache:  # whole rows (Adapter.prefix_cache; the generic family)
            rows = [(k, i) for k in keys for i in groups[k]]
            for s in range(0, len(rows), max(1, batch_size)):
                for i, res in _score_whole(adapter, rows[s : s + max(1, batch_size)], toks, feats, keep_distributions):
                    results[i] = res
                if on_progress:
                    on_progress(len(rows[s : s + max(1, batch_size)]))
            feats.clear()
            continue
        # Prefix trees (an image's shared prefix, then each prompt's own suffix), longest first.
        trees = plan_trees(adapter, keys, groups, toks, batch_size, folded)
        # Batches: `batch_size` bounds the rows of every pass (trees under the tree mask; else prompts,
        # answers of two tokens or more), so a chunk's prefixes run in as few, as large passes as it allows.
        batch: list = []
        rows = 0
        for t in trees + [None]:  # type: ignore[list-item]
            if t is not None and (not batch or rows + t.n_rows(groups, toks, folded) <= batch_size):
                batch.append(t)
                rows += t.n_rows(groups, toks, folded)
                continue
            if batch:
                for i, res in score_trees(adapter, batch, groups, toks, feats, keep_distributions, padding_side):
                    results[i] = res
                if on_progress:
                    on_progress(sum(b.n_candidates(groups) for b in batch))
            if t is not None:
                batch, rows = [t], t.n_rows(groups, toks, folded)
        feats.clear()
    return [r for r in results if r is not None]


def _encode(
    adapter: Adapter, keys: list[str], load_image: ImageLoader | None, batch_size: int
) -> dict[str, torch.Tensor]:
    """Features for each distinct image key, encoded once."""
    if keys and load_image is None:
        raise ValueError("requests with images need an image loader")
    feats: dict[str, torch.Tensor] = {}
    part: list[str] = []
    images: list[Any] = []
    held = 0

    def flush() -> None:
        feats.update(zip(part, adapter.encode_images(images), strict=True))
        part.clear()
        images.clear()

    for k in keys:
        image = load_image(k)  # type: ignore[misc]
        n = int(getattr(image, "width", 0)) * int(getattr(image, "height", 0))
        if part and (len(part) >= max(1, batch_size) or held + n > ENCODE_PIXELS):
            flush()
            held = 0
        part.append(k)
        images.append(image)
        held += n
    if part:
        flush()
    return feats


def _score_whole(
    adapter: Adapter,
    rows: list[tuple[tuple[str | None, tuple[int, ...]], int]],
    toks: list[tuple[list[int], list[int]]],
    feats: dict[str, Any],
    keep_distributions: bool,
) -> list[tuple[int, tuple[torch.Tensor, torch.Tensor | None]]]:
    """Prompt + continuation in one right-padded forward per batch, for adapters that do not expose a
    prefix cache; the same numbers (position t's logits predict token t + 1)."""
    dev = adapter.device
    pairs = [toks[i] for _, i in rows]
    width = max(len(p) + len(c) for p, c in pairs)
    ids = torch.full((len(pairs), width), adapter.pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for r, (p, c) in enumerate(pairs):
        ids[r, : len(p) + len(c)], mask[r, : len(p) + len(c)] = torch.tensor(p + c), 1
    ids, mask = ids.to(dev), mask.to(dev)
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    emb = adapter.embed(ids, [feats[k[0]] if k[0] is not None else None for k, _ in rows])
    logits, _ = adapter.lm(emb, mask, pos)
    out = []
    for r, ((_, i), (prefix, cont)) in enumerate(zip(rows, pairs, strict=True)):
        dist = torch.log_softmax(logits[r, len(prefix) - 1 : len(prefix) + len(cont) - 1].float(), dim=-1)
        lps = dist.gather(-1, torch.tensor(cont, device=dev).unsqueeze(-1)).squeeze(-1)
        out.append((i, (lps.cpu(), dist.cpu() if keep_distributions else None)))
    return out
