"""Balanced preference optimisation: the loss by hand, pairs only within a prompt, LoRA on the LM only."""

from __future__ import annotations

import math
import re

import pytest
import torch

from mllm_audit.editors.balanced import Row, bpo_pairs
from mllm_audit.editors.bpo import bpo_loss, lora_regex, parse_overrides
from mllm_audit.errors import AuditError


def test_bpo_loss_by_hand() -> None:
    lp = torch.tensor([math.log(0.5)])
    assert bpo_loss(lp, lp, 1.0).item() == pytest.approx(0.0)  # indifferent: no loss
    # p_i = 0.8, p_j = 0.2: Δ = logit(0.8) - logit(0.2) = 2 ln 4
    want = math.log1p((1 / (1 + math.exp(-2 * math.log(4))) - 0.5) ** 2)
    got = bpo_loss(torch.tensor([math.log(0.8)]), torch.tensor([math.log(0.2)]), 1.0).item()
    assert got == pytest.approx(want, rel=1e-5)
    assert bpo_loss(torch.tensor([math.log(0.8)]), torch.tensor([math.log(0.2)]), 2.0).item() == pytest.approx(2 * want)


def _row(key: str, g: str, r: str, neutral: bool = True) -> Row:
    return Row([1, 2], [0, 0, 0, 0], {"gender": g, "race": r}, key, neutral)


def test_pairs_stay_within_a_prompt_and_differ_in_one_attribute() -> None:
    rows = [_row("doctor", "male", "black"), _row("doctor", "female", "black"), _row("doctor", "female", "asian"),
            _row("nurse", "male", "black"), _row("doctor/male", "male", "black", neutral=False)]
    pairs = bpo_pairs(rows, ["gender", "race"])
    assert sorted(pairs) == [(0, 1), (1, 2)]  # (0, 2) differs in both; 3 is another prompt; 4 is augmented
    # The upstream collator's failure mode, as a control: pairing across prompts would add (0, 3)'s kind.
    assert all(rows[i].prompt_key == rows[j].prompt_key for i, j in pairs)


def test_lora_targets_the_language_model_only() -> None:
    pat = re.compile(lora_regex(("q_proj", "down_proj")))
    assert pat.fullmatch("model.language_model.layers.0.self_attn.q_proj")
    assert pat.fullmatch("model.language_model.layers.11.mlp.down_proj")
    assert not pat.fullmatch("model.vision_model.encoder.layers.0.self_attn.q_proj")
    assert not pat.fullmatch("model.language_model.layers.0.self_attn.k_proj")


def test_overrides_are_typed_and_bad_ones_name_the_culprit() -> None:
    assert parse_overrides(["sft_lr=1e-3", "sft_epochs=3", "augmented=false"]) == {
        "sft_lr": 1e-3, "sft_epochs": 3, "augmented": False}
    with pytest.raises(AuditError, match="nope"):
        parse_overrides(["nope=1"])
    with pytest.raises(AuditError, match="sft_epochs"):
        parse_overrides(["sft_epochs=lots"])
