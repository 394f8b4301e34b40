"""The generic family on every architecture of the table (docs/real-models.md): a tiny random model per
architecture, scored through the tool vs the stock forward with labels over the chat-templated prompt
(fp32, 1e-5), with and without images, images of two sizes in one mixed-length batch, and the same
numbers whatever the batch size, padding side or order."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from mllm_audit.models import load_model
from mllm_audit.models.cards import GENERIC_ARCHITECTURES
from mllm_audit.scoring.contract import Request, continuation_text, score, tokenize
from mllm_audit.scoring.differentiable import logprob_tensor
from mllm_audit.testing.tiny_generic import save_tiny_generic

WORDS = ["doctor", "nurse", "pilot", "kitchen", "red", "a b c"]
PROMPTS = ["Is this person a doctor or a nurse?", "a photo of", "Question:"]


def _images() -> dict[str, Image.Image]:
    rng = np.random.default_rng(1)
    sizes = [(48, 40), (48, 40), (30, 70)]  # two sizes: tiling / pixel-budget processors give two token counts
    return {f"img{k}": Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
            for k, (h, w) in enumerate(sizes)}


def _requests(n: int, seed: int = 0) -> list[Request]:
    rnd = random.Random(seed)
    keys = [*_images(), None]
    return [Request(rnd.choice(PROMPTS), rnd.choice(WORDS), rnd.choice(keys), "vqa") for _ in range(n)]


def load_generic(arch: str, root: Path):  # noqa: ANN201 - a GenericAdapter
    """The tiny `arch` folder through a card naming the generic family (LLaVA's folder would else load
    through its own family)."""
    folder = save_tiny_generic(arch, root / arch)
    card = root / f"{arch}.yaml"
    card.write_text(yaml.safe_dump({"name": f"tiny-{arch}", "family": "generic", "weights": str(folder)}))
    return load_model(str(card))


def stock(adapter, req: Request, imgs: dict[str, Image.Image]) -> float:  # noqa: ANN001
    """The model's own forward with labels over the processor's output for the chat text + continuation."""
    prefix, cont = tokenize(adapter, req)
    text = adapter.prompt_of(prefix)[1]
    image = [imgs[req.image]] if req.image else None
    kwargs = {"add_special_tokens": False} if text.startswith(adapter.tokenizer.bos_token or "\0") else {}
    if adapter.model.config.model_type == "paligemma" and image:
        # PaliGemma's processor takes the answer as `suffix` (token types 1: causal), then appends EOS.
        full = adapter.processor(text=[text], images=image, suffix=[continuation_text(req.continuation)],
                                 return_tensors="pt")
        full = {k: v[:, :-1] if k in ("input_ids", "attention_mask", "token_type_ids") else v
                for k, v in full.items() if k != "labels"}
    elif adapter.model.config.model_type == "paligemma":
        # No image: the tokenizer over the same text; answer token types 1, as the processor marks a suffix.
        full = dict(adapter.tokenizer([text + "\n" + continuation_text(req.continuation)], return_tensors="pt"))
        full["token_type_ids"] = torch.zeros_like(full["input_ids"])
        full["token_type_ids"][:, -len(cont):] = 1
    else:
        full = adapter.processor(text=[text + continuation_text(req.continuation)], images=image,
                                 return_tensors="pt", **kwargs)
    ids = full["input_ids"][0].tolist()
    assert ids[len(ids) - len(cont):] == cont  # the processor tokenizes the continuation as the tool does
    labels = full["input_ids"].clone()
    labels[:, : len(ids) - len(cont)] = -100
    with torch.no_grad():
        out = adapter.model(**dict(full), labels=labels)
    return -out.loss.item() * len(cont)


ARCHS = sorted(GENERIC_ARCHITECTURES)


@pytest.mark.parametrize("arch", ARCHS)
def test_generic_equals_stock_forward_and_is_invariant(arch: str, tmp_path: Path) -> None:
    adapter = load_generic(arch, tmp_path)
    imgs = _images()
    reqs = _requests(10)
    assert {r.image is None for r in reqs} == {True, False}
    base = score(adapter, reqs, imgs.__getitem__, batch_size=10)
    worst = max(abs(s.logp - stock(adapter, r, imgs)) for r, s in zip(reqs, base, strict=True))
    assert worst < 1e-5, (arch, worst)
    logps = [s.logp for s in base]
    assert len(set(np.round(logps, 3))) > 4  # the requests really differ
    for side, bs in (("left", 1), ("right", 3)):
        got = score(adapter, reqs, imgs.__getitem__, batch_size=bs, padding_side=side)
        np.testing.assert_allclose([s.logp for s in got], logps, atol=1e-5, rtol=0)
    order = list(range(len(reqs)))
    random.Random(0).shuffle(order)
    got = score(adapter, [reqs[i] for i in order], imgs.__getitem__, batch_size=4)
    np.testing.assert_allclose([s.logp for s in got], [logps[i] for i in order], atol=1e-5, rtol=0)
    # The differentiable path editors train through reads the same numbers.
    keys = sorted({r.image for r in reqs if r.image})
    lp, _ = logprob_tensor(adapter, reqs, dict(zip(keys, adapter.encode_images([imgs[k] for k in keys]), strict=True)))
    np.testing.assert_allclose(lp.detach().numpy(), logps, atol=1e-4, rtol=0)
    counts = {k: adapter.image_token_count(Request("Question:", "x", k), imgs[k]) for k in imgs}
    assert min(counts.values()) >= 1


def test_negative_control_continuation_must_see_the_image_in_mllama(tmp_path: Path) -> None:
    """The per-token extension matters: Mllama's new tokens must keep seeing the image (cross-attention
    mask); dropping it moves the score far past the tolerance."""
    adapter = load_generic("mllama", tmp_path)
    imgs = _images()
    req = Request("Question:", "doctor nurse", "img0", "vqa")
    good = score(adapter, [req], imgs.__getitem__)[0].logp
    original = adapter.cross_mask

    def blind(mask, k):  # noqa: ANN001, ANN202
        out = original(mask, k)
        out[:, -k:] = 0
        return out

    adapter.cross_mask = blind
    bad = score(adapter, [req], imgs.__getitem__)[0].logp
    reference = stock(adapter, req, imgs)
    assert abs(good - reference) < 1e-5 and abs(bad - reference) > 1e-5


def test_architecture_outside_the_table_is_refused_in_one_line(tmp_path: Path) -> None:
    from mllm_audit.errors import AuditError
    from mllm_audit.models import resolve_card

    folder = tmp_path / "aya"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "aya_vision"}')
    with pytest.raises(AuditError, match=r"not in the table of checked architectures \(docs/real-models.md\)"):
        resolve_card(str(folder))
    assert resolve_card(str(folder), trust_generic=True).family == "generic"
    (folder / "config.json").write_text('{"model_type": "qwen2_vl"}')  # in the table: no flag needed
    assert resolve_card(str(folder)).family == "generic"


def test_prefix_is_prefilled_once_per_prompt_and_equals_the_whole_sequence_path(tmp_path: Path,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """As generate: one prefill per (image, prompt), its continuations on copies of the cache (two forwards
    for any number of answers); the same numbers as running every sequence whole."""
    from mllm_audit.models.families import generic

    adapter = load_generic("qwen2_vl", tmp_path)
    imgs = _images()
    reqs = [Request("Question:", w, "img0", "vqa") for w in ("doctor", "nurse", "a b c", "pilot")]
    before = adapter.counters.forward_passes
    cached = [s.logp for s in score(adapter, reqs, imgs.__getitem__, batch_size=8)]
    assert adapter.counters.forward_passes - before == 2  # one prefill, one pass over the four answers
    monkeypatch.setattr(generic, "PREFIX_CACHE", set())
    before = adapter.counters.forward_passes
    whole = [s.logp for s in score(adapter, reqs, imgs.__getitem__, batch_size=8)]
    assert adapter.counters.forward_passes - before == 1
    np.testing.assert_allclose(cached, whole, atol=1e-5, rtol=0)


def test_text_prompt_after_a_batched_image_forward_keeps_its_positions(tmp_path: Path) -> None:
    """M-RoPE deltas stored by an earlier forward (two image rows, with gradients) do not leak into a later
    text-only prefill: its answer still equals the stock forward."""
    adapter = load_generic("qwen2_vl", tmp_path)
    imgs = _images()
    two = [Request("Question:", "doctor", "img0", "vqa"), Request("a photo of", "nurse", "img2", "vqa")]
    keys = ["img0", "img2"]
    logprob_tensor(adapter, two, dict(zip(keys, adapter.encode_images([imgs[k] for k in keys]), strict=True)))
    req = Request("Question:", "doctor nurse", None, "vqa")
    with torch.no_grad():
        got = score(adapter, [req, Request("Question:", "pilot", None, "vqa")], imgs.__getitem__)[0].logp
    assert abs(got - stock(adapter, req, imgs)) < 1e-5
