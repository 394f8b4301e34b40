"""The fidelity anchor of balanced SFT / BPO (`anchor`): zero at the base, positive once the adapter
moves, and on the toy unified world v2 it keeps what a held-out occupation draws besides its face."""

from __future__ import annotations

import pytest
import torch

from mllm_audit.editors.balanced import Row
from mllm_audit.editors.bpo import BalancedSettings, add_lora, anchor_kl


@pytest.fixture(scope="module")
def toy():  # noqa: ANN201 - (adapter, rows, held-out prompts)
    from mllm_audit.classifiers.classify import load_classifier
    from mllm_audit.editors.balanced import rows_from_folder
    from mllm_audit.models import load_model
    from mllm_audit.runs.gen_scan import load_gen_suite
    from mllm_audit.runs.locate import labelled_images_of

    suite = load_gen_suite("gen-toy-v2")
    train = [p for p in suite.prompts if p.group == "train"]
    adapter = load_model("toy-janus-v2")
    attrs = load_classifier(suite.classifier).attributes
    rows = rows_from_folder(adapter, labelled_images_of("gen-toy-v2"), train, attrs)
    return adapter, rows, [p for p in suite.prompts if p.group != "train"]  # held out: test and control


def test_anchor_is_zero_at_the_base_and_positive_once_the_adapter_moves(toy) -> None:  # noqa: ANN001
    _, rows, _ = toy
    from mllm_audit.models import load_model

    model = add_lora(load_model("toy-janus-v2").model, BalancedSettings())
    aug = [r for r in rows if not r.neutral][:8]
    assert aug and all(isinstance(r, Row) for r in aug)
    with torch.no_grad():
        assert abs(float(anchor_kl(model, aug, 5.0))) < 1e-6  # LoRA starts at B = 0: adapted == base
        b = next(p for n, p in model.named_parameters() if "lora_B" in n)
        b.add_(0.05 * torch.randn_like(b))
        assert float(anchor_kl(model, aug, 5.0)) > 1e-4  # the control: a moved adapter is seen


def prop_fidelity(model, adapter, prompts) -> float:  # noqa: ANN001
    """Exact mean guided probability of each held-out occupation's prop, given each face code."""
    from mllm_audit.scoring.imagetokens import image_token_logits, t2i_prompt_ids, unconditional_ids
    from mllm_audit.toy.unified import FACE0, PROP0, occupations

    prop = {o.name: o.prop for o in occupations()}
    tk, base = adapter.tokenizer, model.get_base_model()
    vals = []
    with torch.no_grad():
        for p in prompts:
            ids = t2i_prompt_ids(adapter, p.prompt)
            unc = unconditional_ids(ids, tk.bos_token_id, adapter.boi_token_id, adapter.pad_id)
            codes = torch.tensor([[FACE0 + f, PROP0 + prop[p.occupation]] for f in range(8)])
            lg = image_token_logits(base, [ids] * 8 + [unc] * 8, codes.repeat(2, 1))[:, 1]
            g = torch.softmax(lg[8:] + 5.0 * (lg[:8] - lg[8:]), -1)
            vals.append(float(g[:, PROP0 + prop[p.occupation]].mean()))
    return sum(vals) / len(vals)


@pytest.mark.slow
def test_anchor_keeps_held_out_prop_fidelity(toy) -> None:  # noqa: ANN001
    """Tuned SFT (lr 1e-3 + guided term, seed 0) loses held-out prop probability (the control prompt
    "student" comes to draw another prop); the anchor keeps it."""
    from mllm_audit.editors.bpo import train_sft
    from mllm_audit.models import load_model

    adapter, rows, held = toy
    out = {}
    for anchor in (0.0, 0.3):
        s = BalancedSettings(sft_lr=1e-3, sft_guidance=5.0, anchor=anchor, seed=0)
        model = add_lora(load_model("toy-janus-v2").model, s)
        before = prop_fidelity(model, adapter, held)
        train_sft(model, rows, s)
        out[anchor] = (before, prop_fidelity(model, adapter, held))
    print(out)
    (b0, a0), (b1, a1) = out[0.0], out[0.3]
    assert b0 > 0.99 and b1 > 0.99
    assert b1 - a1 < 0.02  # anchored: the prop stays
    assert b0 - a0 > 0.05  # the control: unanchored, the same training visibly loses it


def test_anchor_without_augmented_rows_is_refused() -> None:
    from mllm_audit.editors.bpo import train_sft
    from mllm_audit.errors import AuditError

    rows = [Row([1, 2], [0, 0, 0, 0], {"gender": "male"}, "doctor")]
    with pytest.raises(AuditError, match="augmented=true"):
        train_sft(None, rows, BalancedSettings(anchor=1.0, augmented=False))
