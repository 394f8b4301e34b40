"""Weight memory of a model at real size, fp16 / 8-bit / 4-bit, from its config.json alone.

`python benchmarks/generic_memory.py CARD_OR_FOLDER_OR_HUB_ID...` builds each model on the meta device
from the checkpoint's own config.json (a folder, or a hub id in the local cache: nothing is downloaded
or allocated) and prints its parameters and weight memory. Weights only: activations, the KV cache and
the CUDA context come on top. Quantized sizes follow bitsandbytes: nn.Linear weights outside the card's
keep_fp32 modules at 1 byte (8-bit) or 0.5 byte + one fp32 absmax per 64 weights (4-bit nf4), the rest
at 2 bytes. (Architecture classes' default configs are not the checkpoints their docstrings name, e.g.
Qwen2_5_VLConfig() is 72B-sized: use the real config.json.)
"""

from __future__ import annotations

import torch


def sizes(model: torch.nn.Module, keep: list[str]) -> tuple[int, float, float, float]:
    from mllm_audit.models.loading import keeps_full_precision

    n = sum(p.numel() for p in model.parameters())
    quantized = sum(m.weight.numel() for name, m in model.named_modules()
                    if isinstance(m, torch.nn.Linear) and not keeps_full_precision(name, keep))
    rest = n - quantized
    gib = 1024**3
    return n, 2 * n / gib, (quantized + 2 * rest) / gib, (quantized * (0.5 + 4 / 64) + 2 * rest) / gib


def main(specs: list[str]) -> None:
    from transformers import AutoConfig, AutoModelForImageTextToText

    from mllm_audit.models import resolve_card

    print("| model | model_type | parameters | fp16 GiB | 8-bit GiB | 4-bit GiB |")
    print("|---|---|---|---|---|---|")
    for spec in specs:
        card = resolve_card(spec, trust_generic=True)
        config = AutoConfig.from_pretrained(card.weights, revision=card.revision, local_files_only=True)
        with torch.device("meta"):
            model = AutoModelForImageTextToText.from_config(config)
        n, fp16, q8, q4 = sizes(model, card.keep_fp32)
        print(f"| {spec} | {config.model_type} | {n / 1e9:.2f} B | {fp16:.1f} | {q8:.1f} | {q4:.1f} |", flush=True)


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
