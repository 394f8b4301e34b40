"""`mllm-audit locate`: is a unified model's generation bias in its image tokenizer or its language model?"""

from __future__ import annotations

from pathlib import Path

import typer

from mllm_audit.cli import options


def register(app: typer.Typer) -> None:
    @app.command("locate")
    def locate(
        model: str = typer.Option("toy-janus-v2", "--model", "-m", help="Card name, card .yaml, or model folder."),
        suite: str = typer.Option("gen-toy-v2", "--suite", "-s", help="Generation suite (neutral prompts)."),
        images: Path | None = typer.Option(None, help="Labelled images folder (labels.jsonl: image, gender, race) "
                                           "for the tokenizer tests (default: the suite's labelled_images)."),
        classifier: str | None = typer.Option(None, help="Classifier (default: the suite's)."),
        images_per_prompt: int = typer.Option(64, "--images-per-prompt", "-n",
                                              help="Images per prompt and per augmented variant."),
        min_margin: float = typer.Option(0.1, help="Skip prompts whose neutral majority share is below "
                                         "chance 1/K plus this (ambiguous)."),
        min_parity: float = typer.Option(0.9, help="VQ round-trip parity below this flags the tokenizer."),
        folds: int = typer.Option(5, help="Cross-validation folds of the linear probe."),
        limit: int | None = typer.Option(None, help="Only the first N prompts."),
        output: Path | None = options.output("Run folder."),
        seed: int = typer.Option(0, help="Seed."),
        batch_size: int = typer.Option(64, help="Images per generate call."),
        device: str = options.device(),
        quiet: bool = options.quiet(),
        revision: str | None = options.revision(),
        trust_generic: bool = options.trust_generic(),
    ) -> None:
        """Probe the tokenizer (linear probe, VQ round trip) and the LM (JSD hit rate); print a verdict."""
        from mllm_audit.runs.options import check_load_options

        check_load_options(device=device)  # before torch is imported: a typo costs milliseconds
        from mllm_audit.report.tables import locate_tables
        from mllm_audit.runs.locate import run_locate
        from mllm_audit.util.console import console, err_console, progress_bar

        with progress_bar("locating", enabled=not quiet) as start:
            res = run_locate(model=model, suite=suite, images=images, classifier=classifier,
                             images_per_prompt=images_per_prompt, output=output, seed=seed, batch_size=batch_size,
                             limit=limit, min_margin=min_margin, min_parity=min_parity, folds=folds,
                             device=device, progress=start, revision=revision, trust_generic=trust_generic)
        for t in locate_tables(res.results):
            console.print(t)
        r = res.results
        console.print(f"[bold]verdict: {r['verdict']}[/] ({r['verdict_reason']})")
        err_console.print(f"{len(res.samples)} prompts in {r['timings']['total_s']:.1f} s -> {res.run_dir}")
