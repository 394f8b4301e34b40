"""What the generic family reads off an architecture it has no code for: the modules editors touch, the
image placeholder the model fills, the modules quantization keeps in full precision."""

from __future__ import annotations

from typing import Any

import torch

from mllm_audit.errors import AuditError


def edit_modules(model: Any) -> dict[str, list[str]]:
    """FT-L: the last decoder layer's MLP of the language model; FT-V: the projector (or the vision tower's
    last block when the architecture has no separate projector), found by name in the module tree."""
    names = [n for n, _ in model.named_modules()]
    layers = [n for n in names if n.endswith(".layers") and "vision" not in n and "visual" not in n]
    if not layers:
        raise AuditError("generic family: found no decoder layers to edit; name them in the card's edit section")
    stack = max(layers, key=lambda n: len(dict(model.get_submodule(n).named_children())))
    last = f"{stack}.{len(model.get_submodule(stack)) - 1}"
    mlp = [n for n in names if n.startswith(last + ".") and n.count(".") == last.count(".") + 2
           and n.split(".")[-2] in ("mlp", "feed_forward")]
    mlp = [n for n in mlp if isinstance(model.get_submodule(n), torch.nn.Linear)] or [f"{last}.mlp"]
    projectors = [n for n in names if n.split(".")[-1] in ("multi_modal_projector", "connector", "merger",
                                                           "mlp1", "embed_vision")]
    vision = projectors[:1]
    if not vision:
        towers = [n for n in names if n.endswith(".layers") or n.endswith(".blocks")]
        towers = [n for n in towers if "vision" in n or "visual" in n]
        vision = [f"{towers[0]}.{len(model.get_submodule(towers[0])) - 1}"] if towers else []
    return {"text_modules": mlp, "vision_modules": vision}


def image_token_id(model: Any, processor: Any) -> int:
    for source in (model.config, processor):  # the token the model fills (Gemma 3's processor names BOI)
        for attr in ("image_token_id", "image_token_index"):
            value = getattr(source, attr, None)
            if isinstance(value, int):
                return value
    token = getattr(processor, "image_token", None)
    if token is None:
        raise AuditError("generic family: the processor names no image token")
    return int(processor.tokenizer.convert_tokens_to_ids(token))


def default_keep_fp32() -> tuple[str, ...]:
    """Modules quantization leaves in full precision when the card names none: vision side and LM head."""
    return ("vision_tower", "visual", "vision_model", "multi_modal_projector", "connector", "lm_head")
