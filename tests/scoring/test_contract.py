"""The likelihood contract against the stock transformers forward, on a tiny random BLIP-2."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from PIL import Image

from mllm_audit.scoring.contract import Request, continuation_text, next_token_logprobs, score, tokenize

WORDS = ["doctor", "nurse", "pilot", "flight attendant", "kitchen", "office", "Paris", "red", "a b c", "two"]
PROMPTS = ["Is this person a doctor or a nurse?", "a photo of", "What colour is the background?", "Question:"]


def _images(n: int) -> dict[str, Image.Image]:
    rng = np.random.default_rng(1)
    return {f"img{k}": Image.fromarray(rng.integers(0, 255, (48, 40, 3), dtype=np.uint8)) for k in range(n)}


def _requests(n: int, images: dict[str, Image.Image], seed: int = 0) -> list[Request]:
    rnd = random.Random(seed)
    keys = list(images) + [None]
    return [
        Request(prompt=rnd.choice(PROMPTS), continuation=rnd.choice(WORDS), image=rnd.choice(keys),
                task=rnd.choice(["vqa", "ic"]))
        for _ in range(n)
    ]


def _stock(adapter, req: Request, images) -> tuple[float, int]:  # noqa: ANN001
    """Reference: the stock forward's loss x n_tokens, labels masking all but the continuation."""
    prefix, cont = tokenize(adapter, req)
    ids = torch.tensor([prefix + cont])
    labels = ids.clone()
    labels[:, : len(prefix)] = -100
    with torch.no_grad():
        if req.image is None:
            out = adapter.model.language_model(input_ids=ids, labels=labels)
        else:
            inputs = adapter.processor(images=images[req.image], text=adapter.format_prompt(req.prompt, req.task),
                                       return_tensors="pt")
            # The processor builds exactly our prefix: image placeholders, BOS, prompt.
            assert inputs["input_ids"][0].tolist() == prefix
            out = adapter.model(pixel_values=inputs["pixel_values"], input_ids=ids, labels=labels)
    return -out.loss.item() * len(cont), len(cont)


def test_continuation_text_adds_one_space() -> None:
    assert continuation_text("nurse") == " nurse"
    assert continuation_text(" nurse") == " nurse"
    assert continuation_text("\nnurse") == "\nnurse"


def test_scores_equal_stock_forward(tiny_adapter) -> None:  # noqa: ANN001
    images = _images(5)
    reqs = _requests(24, images)
    got = score(tiny_adapter, reqs, images.__getitem__, batch_size=5)
    for req, s in zip(reqs, got, strict=True):
        ref, n = _stock(tiny_adapter, req, images)
        assert s.n_tokens == n
        assert s.logp == pytest.approx(ref, abs=1e-5)


@pytest.mark.parametrize("padding_side", ["left", "right"])
def test_invariant_to_batch_size_and_padding(tiny_adapter, padding_side: str) -> None:  # noqa: ANN001
    images = _images(4)
    reqs = _requests(30, images, seed=3)
    base = [s.logp for s in score(tiny_adapter, reqs, images.__getitem__, batch_size=1)]
    assert len(set(np.round(base, 3))) > 10  # the requests really differ
    for bs in (3, 16):
        got = score(tiny_adapter, reqs, images.__getitem__, batch_size=bs, padding_side=padding_side)
        np.testing.assert_allclose([s.logp for s in got], base, atol=1e-5, rtol=0)
    shuffled = list(range(len(reqs)))
    random.Random(0).shuffle(shuffled)
    got = score(tiny_adapter, [reqs[i] for i in shuffled], images.__getitem__, batch_size=7, padding_side=padding_side)
    np.testing.assert_allclose([g.logp for g in got], [base[i] for i in shuffled], atol=1e-5, rtol=0)


def test_each_image_encoded_once(tiny_adapter) -> None:  # noqa: ANN001
    images = _images(6)
    reqs = _requests(40, images, seed=5)
    n_distinct = len({r.image for r in reqs if r.image is not None})
    before = tiny_adapter.counters.images_encoded
    score(tiny_adapter, reqs, images.__getitem__, batch_size=4)
    assert tiny_adapter.counters.images_encoded - before == n_distinct


def test_next_token_logprobs_match_scores(tiny_adapter) -> None:  # noqa: ANN001
    images = _images(3)
    reqs = _requests(10, images, seed=9)
    dists = next_token_logprobs(tiny_adapter, reqs, images.__getitem__, batch_size=4)
    scores = score(tiny_adapter, reqs, images.__getitem__, batch_size=4)
    for req, d, s in zip(reqs, dists, scores, strict=True):
        _, cont = tokenize(tiny_adapter, req)
        assert d.shape == (len(cont), tiny_adapter.model.config.text_config.vocab_size)
        torch.testing.assert_close(d.exp().sum(-1), torch.ones(len(cont)), atol=1e-4, rtol=0)
        assert d.gather(-1, torch.tensor(cont).unsqueeze(-1)).sum().item() == pytest.approx(s.logp, abs=1e-5)
