"""`fix --editor sft|bpo --save`: the saved folder is a whole model (LoRA merged into the base weights),
loaded by `--model SAVED` like any folder, and it computes what the trained LoRA model computed."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mllm_audit.editors.bpo import BalancedSettings, add_lora
from mllm_audit.editors.merged import save_merged
from mllm_audit.models import load_model
from mllm_audit.scoring.imagetokens import image_token_logprobs, t2i_prompt_ids


def test_saved_folder_loads_and_equals_the_lora_model(tmp_path: Path) -> None:
    adapter = load_model("toy-janus-v2")
    prompts = [t2i_prompt_ids(adapter, "a photo of a doctor"), t2i_prompt_ids(adapter, "a nurse")]
    width = max(len(p) for p in prompts)
    codes = torch.randint(0, 4, (2, 3), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        base = image_token_logprobs(adapter.model, prompts, codes)
    peft_model = add_lora(adapter.model, BalancedSettings(lora_r=4, lora_alpha=8, lora_dropout=0.0))
    torch.manual_seed(1)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05)  # a trained adapter: LoRA's B starts at zero
        trained = image_token_logprobs(adapter.model, prompts, codes)
    assert (trained - base).abs().max() > 1e-3  # the control: the adapter changes the model
    out = save_merged(peft_model, adapter, tmp_path / "sft", "toy-janus-v2+sft", "test")
    assert (out / "config.json").is_file() and not (out / "adapter_config.json").exists()
    saved = load_model(str(out))
    assert saved.card.family == "janus" and width > 0
    with torch.no_grad():
        again = image_token_logprobs(saved.model, prompts, codes)
    # peft's own merge (on a copy) is the exact reference for merged weights...
    import copy

    with torch.no_grad():
        reference = image_token_logprobs(copy.deepcopy(peft_model).merge_and_unload(), prompts, codes)
    torch.testing.assert_close(again, reference, atol=1e-6, rtol=0)
    # ...and W x + B A x (LoRA) vs (W + B A) x (merged) differ only by fp32 rounding.
    torch.testing.assert_close(again, trained, atol=1e-4, rtol=0)


def test_peft_adapter_folder_alone_is_what_no_command_loads(tmp_path: Path) -> None:
    """The old save: peft's adapter files only; loading it fails (the defect this fixes)."""
    from mllm_audit.errors import AuditError

    adapter = load_model("toy-janus-v2")
    peft_model = add_lora(adapter.model, BalancedSettings(lora_r=4, lora_alpha=8, lora_dropout=0.0))
    peft_model.save_pretrained(str(tmp_path / "adapters"))
    with pytest.raises(AuditError, match="no config.json"):
        load_model(str(tmp_path / "adapters"))


def test_fix_sft_save_writes_a_folder_every_command_loads(tmp_path: Path) -> None:
    """`fix --editor sft --save DIR` end to end (one short epoch on the toy): DIR/sft is a model folder."""
    from mllm_audit.runs.fix_unified import run_unified_fix

    res = run_unified_fix(model="toy-janus-v2", editor="sft", save=tmp_path / "saved", output=tmp_path / "run",
                          images_per_prompt=4, adherence_images=2, settings=BalancedSettings(sft_epochs=1),
                          batch_size=8)
    assert res.results["saved"] == str(tmp_path / "saved")
    check = res.results["stages"]["sft"]["control_check"]  # the toy's images enumerate: exact, not 4 draws
    assert check["method"] == "exact" and set(check["prompts"]) == {"writer", "student", "cook", "artist"}
    saved = load_model(str(tmp_path / "saved" / "sft"))
    assert saved.card.family == "janus" and saved.generates_images
    assert saved.card.name == "toy-janus-v2+sft"  # not the base's name: later runs tell the two apart
    assert not list((tmp_path / "saved").glob(".sft.*"))  # no temporary folder left
    # The --save folder is the command's own output now: a second run into it is refused, untouched.
    from mllm_audit.errors import AuditError

    with pytest.raises(AuditError, match="--save"):
        run_unified_fix(model="toy-janus-v2", editor="sft", save=tmp_path / "saved", output=tmp_path / "run2")
    assert not (tmp_path / "run2").exists()
