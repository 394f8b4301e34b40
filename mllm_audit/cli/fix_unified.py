"""`mllm-audit fix --editor sft|bpo`: the unified-model path of `fix` (balanced SFT / BPO with LoRA)."""

from __future__ import annotations

from pathlib import Path


def fix_unified(model: str, suite: str, editor: str, images: Path | None, output: Path | None, save: Path | None,
                seed: int, device: str, quiet: bool, overrides: list[str], balanced_from: str = "images",
                self_images_per_word: int = 16) -> None:
    from mllm_audit.api import fix
    from mllm_audit.report.tables import fix_table
    from mllm_audit.util.console import console, err_console

    res = fix(model=model, suite=suite, editor=editor, data_dir=images, output=output, save=save, seed=seed,
              device=device, hparam=overrides, balanced_from=balanced_from,
              self_images_per_word=self_images_per_word, log=None if quiet else (lambda line: err_console.print(line)))
    console.print(fix_table(res.results))
    err_console.print(f"{editor} in {res.results['timings']['total_s']:.1f} s -> {res.run_dir}")
