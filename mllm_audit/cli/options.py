"""Options several commands share, declared once: the same flag, default and help everywhere.

Each is a factory (a fresh typer.Option per use); a command with a different default passes it.
"""

from __future__ import annotations

from typing import Any

import typer

from mllm_audit.models.cards import DEFAULT_MODEL


def model(default: str = DEFAULT_MODEL) -> Any:
    return typer.Option(default, "--model", "-m", help="Card name, card .yaml, or model folder.")


def data_dir() -> Any:
    return typer.Option(None, help="Folder the suite's image paths are relative to.")


def allow_outside_paths() -> Any:
    return typer.Option(False, help="Allow paths outside the suite folder.")


def output(help: str = "Run folder (default ./mllm-audit-runs/...).") -> Any:  # noqa: A002 - typer's word
    return typer.Option(None, "--output", "-o", help=help)


def dtype() -> Any:
    return typer.Option("fp32", help="fp32, bf16 or fp16.")


def device() -> Any:
    return typer.Option("cpu", help="torch device, e.g. cpu or cuda:0.")


def seed(help: str = "Random seed recorded with the run.") -> Any:  # noqa: A002
    return typer.Option(0, help=help)


def quiet(help: str = "No progress bar.") -> Any:  # noqa: A002
    return typer.Option(False, "--quiet", "-q", help=help)


def card() -> Any:
    return typer.Option(None, help="Prompt templates of this card for a model folder.")


def trust_remote_code() -> Any:
    return typer.Option(False, help="Allow model code from the weights folder.")


def batch_size(default: int = 16, help: str = "Candidates per forward pass when measuring.") -> Any:  # noqa: A002
    return typer.Option(default, help=help)


def threads() -> Any:
    return typer.Option(None, help="CPU threads for torch (default: torch's own); recorded in the run.")


def revision() -> Any:
    return typer.Option(None, help="Hub commit, branch or tag to load (recorded in the run; default: the card's, "
                        "else the local snapshot's commit). Same as --model ORG/NAME@REV.")


def trust_generic() -> Any:
    return typer.Option(False, help="Load an image-text-to-text architecture outside the checked table "
                        "(docs/real-models.md) through the generic family, unchecked.")


def max_pixels() -> Any:
    return typer.Option(None, help="Pixels an image keeps once decoded (as the global --max-pixels), and the "
                        "pixel budget of processors that resize to one (Qwen2-VL family); recorded in the run.")


def image_size() -> Any:
    return typer.Option(None, help="Image side the processor resizes to (its size/longest_edge); recorded in the run.")


OUT_RENAMED = "--out is now --output"


def _old_out(value: Any) -> Any:
    if value is not None:
        typer.echo(OUT_RENAMED, err=True)
    return value


def output_alias() -> Any:
    """`--out`, the old spelling of `--output`: hidden from --help, kept working, saying so in one line on stderr.

    Every command that once took `--out` declares its `out_alias` with this and merges it with `pick_output`;
    tests/cli/test_output_spelling.py checks that no visible option is spelled `--out`."""
    return typer.Option(None, "--out", hidden=True, callback=_old_out)


def pick_output(output: Any, out_alias: Any, needed_by: str | None = None) -> Any:
    """The output given as `--output` or its old spelling `--out` (not both); with `needed_by`, one is required."""
    from mllm_audit.errors import AuditError

    if output is not None and out_alias is not None:
        raise AuditError("give --output once (--out is its old spelling)")
    value = output if output is not None else out_alias
    if value is None and needed_by is not None:
        raise AuditError(f"{needed_by} needs --output")
    return value
