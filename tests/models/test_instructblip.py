"""InstructBLIP conformance: the Q-Former reads the prompt, the vision tower still runs once per image."""

from __future__ import annotations

import pytest
import torch
from family_checks import check_against_stock, check_invariance, images, labels_for, requests

from mllm_audit.models import load_model
from mllm_audit.scoring.contract import Request, score, tokenize
from mllm_audit.scoring.differentiable import logprob_tensor
from mllm_audit.testing.tiny import save_tiny_instructblip


@pytest.fixture(scope="module")
def adapter(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201 - an Adapter
    return load_model(str(save_tiny_instructblip(tmp_path_factory.mktemp("m") / "tiny-instructblip")))


def stock(adapter, req: Request, imgs) -> float:  # noqa: ANN001
    """InstructBlipForConditionalGeneration's own forward with labels, Q-Former fed the instruction."""
    prefix, cont = tokenize(adapter, req)
    ids, labels = labels_for(prefix, cont)
    with torch.no_grad():
        if req.image is None:
            out = adapter.model.language_model(input_ids=ids, labels=labels)
        else:
            inputs = adapter.processor(
                images=imgs[req.image], text=adapter.format_prompt(req.prompt, req.task), return_tensors="pt"
            )
            assert inputs["input_ids"][0].tolist() == prefix
            out = adapter.model(
                pixel_values=inputs["pixel_values"],
                qformer_input_ids=inputs["qformer_input_ids"],
                qformer_attention_mask=inputs["qformer_attention_mask"],
                input_ids=ids,
                labels=labels,
            )
    return -out.loss.item() * len(cont)


def test_scores_equal_stock_forward(adapter) -> None:  # noqa: ANN001
    assert adapter.card.family == "instructblip"
    check_against_stock(adapter, stock)


def test_invariant_to_batch_padding_and_order(adapter) -> None:  # noqa: ANN001
    check_invariance(adapter)


def test_image_features_depend_on_the_prompt(adapter) -> None:  # noqa: ANN001
    imgs = images(1)
    a, b = (Request(prompt=p, continuation="doctor", image="img0") for p in ("a photo of", "Question:"))
    feats = adapter.encode_images([imgs["img0"]])
    fa = adapter.bridge(feats, [a.prompt])
    fb = adapter.bridge(feats, [b.prompt])
    assert not torch.allclose(fa, fb)
    before = adapter.counters.images_encoded
    score(adapter, [a, b], imgs.__getitem__)
    assert adapter.counters.images_encoded - before == 1


def test_differentiable_path_matches(adapter) -> None:  # noqa: ANN001
    """logprob_tensor (full sequences, right-padded) finds each row's instruction too."""
    imgs = images(2)
    reqs = [r for r in requests(8, imgs, seed=2) if r.image is not None]
    feats = {k: adapter.encode_images([v])[0] for k, v in imgs.items()}
    lp, _ = logprob_tensor(adapter, reqs, feats)
    ref = [s.logp for s in score(adapter, reqs, imgs.__getitem__)]
    torch.testing.assert_close(lp, torch.tensor(ref), atol=1e-4, rtol=0)
