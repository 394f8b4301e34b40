"""Random-weight models at benchmark sizes, saved to a folder and loaded like real ones."""

from __future__ import annotations

from pathlib import Path
from typing import Any

# BLIP-2-shaped, ~85M parameters: ViT 224 px / 16 px patches, Q-Former with 32 queries, OPT decoder.
BLIP2_100M: dict[str, Any] = dict(
    image_size=224, patch_size=16, vision_hidden=384, vision_layers=8, qformer_hidden=384,
    qformer_layers=4, text_hidden=768, text_layers=8, text_ffn=3072, heads=12, num_query_tokens=32,
)


def blip2_100m(folder: Path) -> Path:
    from mllm_audit.testing.tiny import save_tiny_blip2

    if not (folder / "config.json").is_file():
        save_tiny_blip2(folder, seed=0, **BLIP2_100M)
    return folder
