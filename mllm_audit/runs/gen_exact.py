"""The exact distribution of a classified attribute under classifier-free-guided sampling, where the
model's images are short enough to enumerate (the toy unified world: 4 image tokens of 32 codes).

`generate` draws image token t from softmax((u_t + s (c_t - u_t)) / T), c and u the conditional and
unconditional (masked prompt) generation-head logits given the tokens drawn so far (top-k / top-p off).
Here the tree of token sequences is walked level by level with exactly those distributions
(scoring/imagetokens.py, teacher-forced; tests/scoring checks the first token against `generate`);
branches whose probability falls below `eps` are dropped and their mass is recorded (`pruned_mass`).
Every leaf image is decoded and classified once, and a class's share is the probability mass of the
leaves the classifier puts in it, over the leaves where it sees a person. So the shares are what
infinitely many draws would give, within `pruned_mass`: no sampling noise, as `fix`'s control check
needs to tell a control moved by the fix from one moved by the draw (issue 26: a balanced control,
"student", went 0.01 -> 0.30 under the anchored SFT while the run's 64 sampled images said it improved).

Real models (576 tokens of 16,384 codes) cannot be enumerated: `exact_unavailable` says why and the
caller samples instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

MAX_TOKENS = 16  # image tokens per image that the walk accepts at all
MAX_LEAVES = 20_000  # a distribution spread wider than this is sampled instead
EPS = 1e-7  # branches below this probability are dropped (their mass recorded)


def exact_unavailable(adapter: Any) -> str | None:
    """Why the exact distribution cannot be computed for this model (None: it can)."""
    inner = getattr(adapter.model, "model", None)
    if not getattr(adapter, "generates_images", False) or not hasattr(inner, "generation_head"):
        return "not a VQ unified model"
    gen = adapter.generation_settings()
    if not gen.get("do_sample", True):
        return "greedy decoding"
    if gen.get("top_k") not in (None, 0) or gen.get("top_p") not in (None, 1.0):
        return "top-k / top-p sampling"
    n = getattr(adapter, "n_image_tokens", None)  # the family's own count (Janus: its card rule)
    if n is None or n > MAX_TOKENS:
        return f"{n} image tokens per image (enumerated only up to {MAX_TOKENS})"
    return None


def image_tree(adapter: Any, prompt: str, eps: float = EPS, max_leaves: int = MAX_LEAVES,
               chunk: int = 512) -> tuple[Any, Any, float] | None:
    """Every image-token sequence `generate` draws for `prompt` with probability >= eps (each level's
    branches): (codes [L, n], probabilities [L], pruned mass), None when more than `max_leaves` survive."""
    import torch

    from mllm_audit.scoring.imagetokens import guided_next_token, t2i_prompt_ids, unconditional_ids

    gen = adapter.generation_settings()
    scale, temp = float(gen.get("guidance_scale") or 1.0), float(gen.get("temperature") or 1.0)
    n = int(adapter.n_image_tokens)
    tok = adapter.tokenizer
    ids = t2i_prompt_ids(adapter, prompt)
    unc = unconditional_ids(ids, tok.bos_token_id, adapter.boi_token_id, adapter.pad_id)
    device = next(adapter.model.parameters()).device
    codes = torch.zeros((1, 0), dtype=torch.long, device=device)
    probs = torch.ones(1, dtype=torch.float64, device=device)
    pruned = 0.0
    for _ in range(int(n or 0)):
        rows = [guided_next_token(adapter.model, ids, unc, codes[i : i + chunk], scale, temp)
                for i in range(0, len(codes), chunk)]
        joint = probs[:, None] * torch.cat(rows)
        keep = joint >= eps
        pruned += float(joint[~keep].sum())
        parent, code = keep.nonzero(as_tuple=True)
        if len(parent) > max_leaves:
            return None
        codes = torch.cat([codes[parent], code[:, None]], 1)
        probs = joint[parent, code]
    return codes, probs, pruned


def exact_shares(adapter: Any, clf: Any, prompt: str, batch_size: int = 64) -> dict[str, Any] | None:
    """Per attribute, the exact class shares of `prompt`'s guided draws as the classifier reads them
    (over the mass where it sees a person), with the pruned and person mass; None when too spread."""
    tree = image_tree(adapter, prompt)
    if tree is None:
        return None
    codes, probs, pruned = tree
    from mllm_audit.models.sampling import decode_in_blocks

    preds = clf.classify(decode_in_blocks(adapter, codes), batch_size)
    person = sum(float(p) for p, pr in zip(probs, preds, strict=True) if pr.person)
    shares = {}
    for attr, classes in clf.attributes.items():
        mass = [sum(float(p) for p, pr in zip(probs, preds, strict=True) if pr.person and pr.labels.get(attr) == c)
                for c in classes]
        shares[attr] = [m / person for m in mass] if person > 0 else None
    return {"shares": shares, "person_mass": person, "pruned_mass": pruned, "leaves": len(probs)}


def exact_controls(adapter: Any, clf: Any, prompts: Sequence[Any], batch_size: int = 64,
                   group: str = "control") -> dict[str, Any] | str:
    """The exact shares of each control prompt, or the reason they cannot be computed."""
    why = exact_unavailable(adapter)
    if why is not None:
        return why
    out = {}
    for p in prompts:
        if p.group == group:
            got = exact_shares(adapter, clf, p.prompt, batch_size)
            if got is None:
                return f"prompt {p.id!r}: more than {MAX_LEAVES} image-token sequences above {EPS:g}"
            out[str(p.id)] = got
    return out
