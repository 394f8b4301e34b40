"""Emu3 conformance: a tiny random Emu3ForConditionalGeneration saved and loaded by path.

Understanding follows the scoring contract like every family: the image enters as VQ codes mapped
to visual-token ids and embedded by the text table, exactly as the stock forward does it.
"""

from __future__ import annotations

import pytest
import torch
from family_checks import check_against_stock, check_invariance, labels_for

from mllm_audit.models import load_model
from mllm_audit.models.emu3 import save_tiny_emu3
from mllm_audit.scoring import Request, tokenize


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

    from mllm_audit.scoring import score

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


def test_generation_commands_refuse_emu3_in_one_line(adapter, tmp_path) -> None:  # noqa: ANN001
    """Image generation is not wired for Emu3: gen-scan and fix --editor sft say so (no traceback)."""
    from mllm_audit.errors import AuditError
    from mllm_audit.generation import run_gen_scan
    from mllm_audit.unified_fix import run_unified_fix

    with pytest.raises(AuditError, match="does not generate images"):
        run_gen_scan(adapter=adapter, output=tmp_path / "g")
    with pytest.raises(AuditError, match="needs a VQ unified model"):
        run_unified_fix(adapter=adapter, editor="sft", output=tmp_path / "f")
