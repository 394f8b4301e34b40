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


# The issue-29 shapes, with the real OPT vocabulary (50,272). Keys as benchmarks/gpu_bench.py's SHAPES.
# 389M: ViT-B/16 (768 x 12), a BERT-base-sized Q-Former (12 layers, 32 queries), OPT 1024 x 12.
BLIP2_389M: dict[str, Any] = dict(
    v_hidden=768, v_ffn=3072, v_layers=12, v_heads=12, image=224, patch=16, q_hidden=768, q_layers=12, q_heads=12,
    n_query=32, t_hidden=1024, t_ffn=4096, t_layers=12, t_heads=16, vocab=50272,
)
# 56M: ViT 384 x 4, Q-Former 384 x 2, OPT 512 x 6.
BLIP2_56M: dict[str, Any] = dict(
    v_hidden=384, v_ffn=1536, v_layers=4, v_heads=6, image=224, patch=16, q_hidden=384, q_layers=2, q_heads=6,
    n_query=32, t_hidden=512, t_ffn=2048, t_layers=6, t_heads=8, vocab=50272,
)
ISSUE_SHAPES = {"56m": BLIP2_56M, "389m": BLIP2_389M}


def blip2_shape(name: str, root: Path) -> Path:
    """The named issue-29 shape, random weights (seed 0), built once into root/<name>."""
    import torch
    from gpu_bench import build_blip2

    folder = root / f"mllm-audit-bench-blip2-{name}"
    if not (folder / "config.json").is_file():
        build_blip2(ISSUE_SHAPES[name], folder, "cpu", torch.float32)
    return folder
