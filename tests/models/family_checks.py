"""Shared by the family conformance tests: tiny model folders and the scoring-contract checks.

Every family is checked the same way: scores equal the family's stock forward (`loss * n_tokens`
with labels masking all but the continuation), whatever the batch size, padding side or order, and
each distinct image is encoded by the vision tower once per call.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from PIL import Image

from mllm_audit.scoring.contract import Request, score, tokenize

WORDS = ["doctor", "nurse", "pilot", "flight attendant", "kitchen", "office", "Paris", "red", "a b c", "two"]
PROMPTS = ["Is this person a doctor or a nurse?", "a photo of", "What colour is the background?", "Question:"]



def images(n: int, seed: int = 1) -> dict[str, Image.Image]:
    rng = np.random.default_rng(seed)
    return {f"img{k}": Image.fromarray(rng.integers(0, 255, (48, 40, 3), dtype=np.uint8)) for k in range(n)}


def requests(n: int, imgs: dict[str, Image.Image], seed: int = 0, text_only: bool = True) -> list[Request]:
    rnd = random.Random(seed)
    keys: list[str | None] = list(imgs) + ([None] if text_only else [])
    return [
        Request(
            prompt=rnd.choice(PROMPTS),
            continuation=rnd.choice(WORDS),
            image=rnd.choice(keys),
            task=rnd.choice(["vqa", "ic"]),
        )
        for _ in range(n)
    ]


def labels_for(prefix: list[int], cont: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """input_ids and labels masking everything but the continuation."""
    ids = torch.tensor([prefix + cont])
    labels = ids.clone()
    labels[:, : len(prefix)] = -100
    return ids, labels


Stock = Callable[[Any, Request, dict[str, Image.Image]], float]


def check_against_stock(adapter: Any, stock: Stock, n: int = 20, seed: int = 0) -> float:
    """Max |score - stock| over random requests (asserted below 1e-5); returns it for the report."""
    imgs = images(4)
    reqs = requests(n, imgs, seed=seed)
    got = score(adapter, reqs, imgs.__getitem__, batch_size=5)
    worst = 0.0
    for req, s in zip(reqs, got, strict=True):
        _, cont = tokenize(adapter, req)
        assert s.n_tokens == len(cont)
        worst = max(worst, abs(s.logp - stock(adapter, req, imgs)))
    assert worst < 1e-5, worst
    return worst


def check_invariance(adapter: Any, n: int = 24, seed: int = 3) -> None:
    """Same scores for any batch size, padding side and order; one vision encode per distinct image."""
    imgs = images(4)
    reqs = requests(n, imgs, seed=seed)
    before = adapter.counters.images_encoded
    base = [s.logp for s in score(adapter, reqs, imgs.__getitem__, batch_size=1)]
    assert adapter.counters.images_encoded - before == len({r.image for r in reqs if r.image})
    assert len(set(np.round(base, 3))) > 8  # the requests really differ
    for side in ("left", "right"):
        for bs in (3, 16):
            got = score(adapter, reqs, imgs.__getitem__, batch_size=bs, padding_side=side)
            np.testing.assert_allclose([s.logp for s in got], base, atol=1e-5, rtol=0)
    order = list(range(len(reqs)))
    random.Random(0).shuffle(order)
    got = score(adapter, [reqs[i] for i in order], imgs.__getitem__, batch_size=7, padding_side="right")
    np.testing.assert_allclose([g.logp for g in got], [base[i] for i in order], atol=1e-5, rtol=0)
    # The differentiable path editors train through gives the same numbers (and runs on every family:
    # MiniGPT-4's image placeholder id lies outside the vocabulary).
    import torch

    from mllm_audit.scoring.differentiable import logprob_tensor

    keys = sorted({r.image for r in reqs if r.image})
    with torch.no_grad():
        enc = adapter.encode_images([imgs[k] for k in keys])
        lp, n_tok = logprob_tensor(adapter, reqs, {k: enc[i] for i, k in enumerate(keys)})
    np.testing.assert_allclose(lp.numpy(), base, atol=1e-4, rtol=0)
    assert n_tok.tolist() == [float(s.n_tokens) for s in score(adapter, reqs, imgs.__getitem__, batch_size=8)]








