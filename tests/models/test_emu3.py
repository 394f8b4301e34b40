"""Emu3 conformance: a tiny random Emu3ForConditionalGeneration saved and loaded by path.

Understanding follows the scoring contract like every family: the image enters as VQ codes mapped
to visual-token ids and embedded by the text table, exactly as the stock forward does it.
"""

from __future__ import annotations

import pytest
import torch
from family_checks import check_against_stock, check_invariance, labels_for

from mllm_audit.models import load_model
from mllm_audit.scoring.contract import Request, tokenize
from mllm_audit.testing.tiny import save_tiny_emu3


@pytest.fixture(scope="module")
def adapter(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201 - an Adapter
    return load_model(str(save_tiny_emu3(tmp_path_factory.mktemp("m") / "tiny-emu3")))


def stock(adapter, req: Request, imgs) -> float:  # noqa: ANN001
    """Emu3ForConditionalGeneration's own forward with labels; the processor builds our prefix."""
    prefix, cont = tokenize(adapter, req)
    ids, labels = labels_for(prefix, cont)
    kwargs = {}
    text = adapter.chat_text(adapter.format_prompt(req.prompt, req.task), req.image is not None)
    if req.image is not None:
        inputs = adapter.processor(images=adapter.resize([imgs[req.image]]), text=[text], return_tensors="pt")
        kwargs = {"pixel_values": inputs["pixel_values"], "image_sizes": inputs["image_sizes"]}
    else:
        inputs = adapter.processor(text=[text], return_tensors="pt")
    assert inputs["input_ids"][0].tolist() == prefix  # the processor's own layout, token for token
    with torch.no_grad():
        out = adapter.model(input_ids=ids, labels=labels, **kwargs)
    return -out.loss.item() * len(cont)


def test_family_from_config(adapter) -> None:  # noqa: ANN001
    assert adapter.card.family == "emu3"
    assert adapter.token_grid == (4, 4) and adapter.n_image_tokens == 4 * 5  # one end-of-line token per row
    ids = adapter.prompt_ids("a photo of", None, with_image=True)
    assert ids[0] == adapter.tokenizer.bos_token_id and ids.count(adapter.image_token_id) == 20
    assert adapter.tokenizer.convert_tokens_to_ids("<|image end|>") in ids


def test_scores_equal_stock_forward(adapter) -> None:  # noqa: ANN001
    worst = check_against_stock(adapter, stock)
    print(f"emu3 max |score - stock| = {worst:.2e}")


def test_image_changes_the_score(adapter) -> None:  # noqa: ANN001
    """The features really reach the model (a control: two images, one prompt, different scores)."""
    from family_checks import images

    from mllm_audit.scoring.contract import score

    imgs = images(2)
    reqs = [Request("a photo of", "doctor", image=k) for k in imgs]
    a, b = score(adapter, reqs, imgs.__getitem__)
    assert abs(a.logp - b.logp) > 1e-4


def test_invariant_to_batch_padding_and_order(adapter) -> None:  # noqa: ANN001
    check_invariance(adapter)


def test_cards_are_registered() -> None:
    from mllm_audit.models import resolve_card

    for name, weights in (("emu3-chat", "Emu3-community/Emu3-Chat-hf"), ("emu3-gen", "BAAI/Emu3-Gen-hf")):
        card = resolve_card(name)
        assert card.family == "emu3" and card.weights == weights and card.extra["image_size"] == 512
    gen = resolve_card("emu3-gen")
    assert gen.template("t2i").format(prompt="a doctor").endswith("best quality.") and gen.extra["negative_prompt"]


def test_fix_and_locate_refuse_emu3_in_one_line(adapter, tmp_path) -> None:  # noqa: ANN001
    """Balanced SFT / BPO and locate read a Janus-style generation head; Emu3 is refused, not crashed."""
    from mllm_audit.errors import AuditError
    from mllm_audit.runs.fix_unified import run_unified_fix
    from mllm_audit.runs.locate import run_locate

    with pytest.raises(AuditError, match="needs a VQ unified model"):
        run_unified_fix(adapter=adapter, editor="sft", output=tmp_path / "f")
    with pytest.raises(AuditError, match="generation head"):
        run_locate(adapter=adapter, output=tmp_path / "l")


def test_generation_layout_seeded_and_decoded(adapter) -> None:  # noqa: ANN001
    """Rows of w visual tokens closed by end-of-line; same seed, same images; another seed, others."""
    import numpy as np

    h, w = adapter.generation_grid()
    vm = adapter.model.model.vocabulary_mapping
    toks = adapter.generate_tokens(["a photo of a doctor", "a photo"], seed=1)
    assert toks.shape == (2, h * (w + 1))
    rows = toks.reshape(2, h, w + 1)
    assert (rows[..., -1] == vm.eol_token_id).all() and set(rows[..., :-1].flatten().tolist()) <= set(vm.image_tokens)
    a = adapter.generate_images(["a photo of a doctor", "a photo"], n=2, seed=7, batch_size=4)
    b = adapter.generate_images(["a photo of a doctor", "a photo"], n=2, seed=7, batch_size=4)
    c = adapter.generate_images(["a photo of a doctor", "a photo"], n=2, seed=8, batch_size=4)
    assert len(a) == 4 and a[0].size == (32, 32) and a[0].mode == "RGB"
    assert all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(a, b, strict=True))
    assert not all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(a, c, strict=True))


def test_first_image_token_is_guided_argmax_of_the_stock_forward(adapter) -> None:  # noqa: ANN001
    """Greedy: the first drawn token = argmax over visual tokens of s (log p_c - log p_u) + log p_u, with
    p_c / p_u the stock forward's next-token distributions after the prompt / the negative prompt."""
    adapter.card.generation = {"do_sample": False, "guidance_scale": 3.0}
    adapter.card.extra["negative_prompt"] = "nurse"
    try:
        first = int(adapter.generate_tokens(["red"], seed=0)[0, 0])
        kw = {"return_for_image_generation": True, "image_area": 32 * 32, "return_tensors": "pt"}
        cond = adapter.processor(text=["red"], **kw)["input_ids"]  # plain text, as transformers' example
        unc = adapter.processor(text=["nurse"], return_tensors="pt")["input_ids"]
        with torch.no_grad():
            lc = torch.log_softmax(adapter.model(input_ids=cond).logits[0, -1], -1)
            lu = torch.log_softmax(adapter.model(input_ids=unc).logits[0, -1], -1)
        visual = torch.tensor(adapter.model.model.vocabulary_mapping.image_tokens)
        guided = (3.0 * (lc - lu) + lu)[visual]
        assert first == int(visual[guided.argmax()])
        assert first != int(visual[lc[visual].argmax()])  # the control: unguided, another token wins
    finally:
        adapter.card.generation = {}
        adapter.card.extra.pop("negative_prompt")


def test_loading_fills_the_full_precision_modules_on_a_copy(adapter) -> None:  # noqa: ANN001
    """The adapter's card names the modules quantization keeps in full precision (so a saved folder card
    does too); the family default fills a copy, as every FamilySpec family does."""
    assert adapter.card.keep_fp32 == ["vqmodel", "lm_head"]
