"""`mllm-audit fix --editor sft|bpo`: the unified-model path of `fix` (balanced SFT / BPO with LoRA)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from mllm_audit.errors import AuditError


def parse_overrides(pairs: list[str]) -> dict[str, object]:
    """KEY=VALUE strings -> typed BalancedSettings fields (one-line error naming a bad one)."""
    from mllm_audit.editors.bpo import BalancedSettings

    fields = {f.name: f for f in dataclasses.fields(BalancedSettings)}
    out: dict[str, object] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or key not in fields or key == "lora_targets":
            raise AuditError(f"--set {pair!r}: expected KEY=VALUE with KEY one of "
                             f"{', '.join(k for k in fields if k != 'lora_targets')}")
        default = getattr(BalancedSettings(), key)
        try:
            if isinstance(default, bool):
                if value.lower() not in ("true", "false", "1", "0"):
                    raise ValueError(value)
                out[key] = value.lower() in ("true", "1")
            else:
                out[key] = type(default)(value)
        except ValueError:
            raise AuditError(f"--set {pair!r}: {value!r} is not a {type(default).__name__}") from None
    return out


def fix_unified(model: str, suite: str, editor: str, images: Path | None, output: Path | None, save: Path | None,
                seed: int, device: str, quiet: bool, overrides: list[str]) -> None:
    from mllm_audit.editors.bpo import BalancedSettings
    from mllm_audit.report.tables import fix_table
    from mllm_audit.runs.fix_unified import run_unified_fix
    from mllm_audit.util.console import console, err_console

    settings = BalancedSettings(**{"seed": seed, **parse_overrides(overrides)})
    model = "toy-janus-v2" if model == "toy" else model
    suite = "gen-toy-v2" if suite == "toy" else suite
    res = run_unified_fix(model=model, suite=suite, editor=editor, images=images, output=output, save=save,
                          seed=seed, settings=settings, device=device,
                          log=None if quiet else (lambda line: err_console.print(line)))
    console.print(fix_table(res.results))
    err_console.print(f"{editor} in {res.results['timings']['total_s']:.1f} s -> {res.run_dir}")
