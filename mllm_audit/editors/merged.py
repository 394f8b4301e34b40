"""A LoRA-trained model (balanced SFT / BPO) saved as a whole model folder that every command loads.

peft's own `save_pretrained` writes only the adapter (adapter_config.json + adapter weights), which no
command can load (`gen-scan -m SAVED`: "no config.json"). Here each LoRA delta is added to its base weight
under the base model's own parameter names, without touching the training model (its LoRA layers keep
training), and the folder gets the config, the processor and the card: `--model SAVED` loads it like
the base, with the edit merged in.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def merged_state_dict(peft_model: Any) -> dict[str, Any]:
    """The base model's state dict with every active LoRA delta merged, keys as in the base checkpoint."""
    from peft.tuners.lora import LoraLayer

    base = peft_model.get_base_model() if hasattr(peft_model, "get_base_model") else peft_model
    merged: dict[str, Any] = {}
    for name, module in base.named_modules():
        if isinstance(module, LoraLayer):
            weight = module.get_base_layer().weight
            delta = sum(module.get_delta_weight(a) for a in module.active_adapters if a in module.lora_A)
            merged[f"{name}.weight"] = (weight + delta).detach().to(weight.dtype)
    out: dict[str, Any] = {}
    for key, value in base.state_dict().items():
        if ".lora_" in key:
            continue
        clean = key.replace(".base_layer.", ".")
        out[clean] = merged.get(clean, value).detach().clone()
    return out


def save_merged(peft_model: Any, adapter: Any, folder: Path, name: str, description: str) -> Path:
    """Write `folder` (new) as a loadable model folder: merged weights, the processor, the card renamed
    `name` (the base name plus the edit, so later scans and `compare` tell it from its base). Built through
    the output guard's temporary folder and renamed into place: a killed save leaves nothing loadable."""
    import dataclasses

    from mllm_audit.models.cards import write_folder_card
    from mllm_audit.util.folders import OutputFolder

    out = OutputFolder(Path(folder), "--save", "fix", kind="edited model")
    try:
        tmp = out.open()
        base = peft_model.get_base_model() if hasattr(peft_model, "get_base_model") else peft_model
        base.save_pretrained(tmp, state_dict=merged_state_dict(peft_model))
        proc = getattr(adapter, "processor", None)
        (proc or adapter.tokenizer).save_pretrained(tmp)
        write_folder_card(dataclasses.replace(adapter.card, name=name), tmp, description)
        return out.commit()
    finally:
        if not out.committed:
            out.abandon()
