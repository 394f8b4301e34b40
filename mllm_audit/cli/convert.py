"""`mllm-audit convert <family>`: turn a model's original release files into a folder `--model` loads."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from mllm_audit.cli import options


def register(app: typer.Typer) -> None:
    convert = typer.Typer(help="Convert original model release files into a folder --model can load.")
    app.add_typer(convert, name="convert")

    @convert.command("minigpt4")
    def minigpt4(
        vit: Path = typer.Option(..., help="EVA ViT-g checkpoint (eva_vit_g.pth)."),
        qformer: Path = typer.Option(
            ..., help="BLIP-2 Q-Former checkpoint (blip2_pretrained_flant5xxl.pth)."
        ),
        proj: Path = typer.Option(..., help="MiniGPT-4 projection checkpoint (pretrained_minigpt4*.pth)."),
        llama: Path = typer.Option(..., help="Vicuna HF folder (config.json, weights, tokenizer)."),
        output: Optional[Path] = typer.Option(  # noqa: UP045 - typer reads the annotation
            None, "--output", help="Folder to write (safetensors, config.json, tokenizer); required."),
        out_alias: Optional[Path] = options.output_alias(),  # noqa: UP045 - typer reads the annotation
        vision_heads: int = typer.Option(16, help="EVA attention heads (16 for ViT-g)."),
        qformer_heads: int = typer.Option(12, help="Q-Former attention heads (12 for BERT-base)."),
        vision_layers: Optional[int] = typer.Option(  # noqa: UP045 - typer reads the annotation
            None,
            help="EVA blocks to run (default 39 of EVA-CLIP-g's 40, as MiniGPT-4 does; a file with fewer is refused).",
        ),
    ) -> None:
        """MiniGPT-4 from EVA ViT-g + BLIP-2 Q-Former + llama_proj + Vicuna, all local files."""
        from mllm_audit.models.convert.minigpt4 import convert_minigpt4
        from mllm_audit.util.console import console
        from mllm_audit.util.text import shown

        output = options.pick_output(output, out_alias, "convert minigpt4")
        folder = convert_minigpt4(vit, qformer, proj, llama, output, vision_heads, qformer_heads, vision_layers)
        console.print(shown(f"converted MiniGPT-4 -> {folder} (use --model {folder})"))
