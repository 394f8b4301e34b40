"""`mllm-audit card`: write scan and fix runs into a Hugging Face model card (integrations/modelcard.py)."""

from __future__ import annotations

from pathlib import Path

import typer

from mllm_audit.cli import options


def register(app: typer.Typer) -> None:
    @app.command()
    def card(
        runs: list[Path] = typer.Argument(..., help="Run folders of scans and fixes."),
        output: Path | None = typer.Option(None, "--output", help="Card file to write (a new file, or a model "
                                                                  "card to merge into, e.g. README.md)."),
        out_alias: Path | None = options.output_alias(),
        update: Path | None = typer.Option(None, "--update", help="Model folder whose README.md gets the audit "
                                                                  "(created, or merged into)."),
    ) -> None:
        """Put the audit in a model card: model-index results plus a section, merged without clobbering."""
        from mllm_audit.api import card as write_card
        from mllm_audit.util.console import err_console
        from mllm_audit.util.text import shown

        r = write_card(runs, options.pick_output(output, out_alias), update)
        err_console.print(shown(f"{r['eval_results']} results from {r['runs']} runs ({r['kept_eval_results']} "
                                f"others kept) -> {r['path']}"), soft_wrap=True)
