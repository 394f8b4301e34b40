"""`mllm-audit gate`: judge a run against a policy; exit 0 pass, 1 a check failed, 2 bad input."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from mllm_audit.cli import options


def register(app: typer.Typer) -> None:
    @app.command()
    def gate(
        policy: Path = typer.Option(..., "--policy", "-p", help="Policy YAML: the checks to apply."),
        report: Path | None = typer.Option(None, "--report", "-r", help="Saved run folder to judge."),
        model: str | None = typer.Option(None, "--model", "-m", help="Scan this model now (no --report)."),
        suite: str | None = typer.Option(None, "--suite", "-s", help="Suite to scan (default: policy)."),
        junit: Path | None = typer.Option(None, "--junit", help="Write JUnit XML (a testcase per check)."),
        output: Path | None = typer.Option(None, "--output", "-o", help="Run folder for the fresh scan."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace an earlier --junit file at that path."),
        revision: str | None = options.revision(),
        trust_generic: bool = options.trust_generic(),
    ) -> None:
        """Apply a release policy to a run. Appends to $GITHUB_STEP_SUMMARY when set."""
        from rich.console import Console

        from mllm_audit.gate.ci import github_error_lines, render_outcome
        from mllm_audit.gate.evaluate import gate as run_gate
        from mllm_audit.util.console import progress_bar

        with progress_bar("scanning", enabled=model is not None) as start:  # a fresh scan's progress, ETA piped
            outcome = run_gate(policy=policy, report=report, model=model, suite=suite, junit=junit, output=output,
                               progress=start, overwrite=overwrite, revision=revision,
                               trust_generic=trust_generic)
        render_outcome(outcome, Console(highlight=False))
        if os.environ.get("GITHUB_STEP_SUMMARY") or os.environ.get("GITHUB_ACTIONS") == "true":
            for line in github_error_lines(outcome):
                print(line, flush=True)
        if outcome.exit_code:
            raise typer.Exit(outcome.exit_code)
