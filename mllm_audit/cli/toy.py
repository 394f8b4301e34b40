"""`mllm-audit toy train`: build the project's ground truth, a tiny BLIP-2 with a planted bias."""

from __future__ import annotations

from pathlib import Path

import typer

from mllm_audit.cli import options


def register(app: typer.Typer) -> None:
    """Add the `toy` sub-app."""
    toy = typer.Typer(
        help="The toy world: a tiny BLIP-2 trained on synthetic scenes with a known bias.", no_args_is_help=True
    )

    @toy.command("train")
    def train(
        seed: int = typer.Option(0, "--seed", help="Seed for initialisation and data order."),
        output: Path | None = typer.Option(None, "--output", help="Folder for the trained model (default: toy-model)."),
        out_alias: Path | None = options.output_alias(),
        steps: int = typer.Option(None, "--steps", min=1, help="Optimizer steps (default: the full schedule)."),
        write_suite: Path = typer.Option(
            None, "--write-suite", help="Also write the toy suite here (DIR/items.jsonl, DIR/images, DIR.yaml)."
        ),
        overwrite: bool = typer.Option(
            False, "--overwrite", help="Replace an earlier toy model at --output (and toy suite at --write-suite)."
        ),
        init_from: Path = typer.Option(
            None, "--init-from", help="Warm-start from this toy model folder (its weights and tokenizer)."
        ),
        ike_window: bool = typer.Option(
            False, "--ike-window", help="Toy world v3: in-context rows with up to IKE's window of demonstrations, "
            "the eval paraphrases' words on other content, graded targets at the image positions (toy/v3_rows.py)."
        ),
    ) -> None:
        """Train the toy model deterministically (about two minutes on 2 CPU cores)."""
        from mllm_audit.api import train_toy

        report = train_toy(
            options.pick_output(output, out_alias) or Path("toy-model"), seed=seed, steps=steps,
            write_suite=write_suite, overwrite=overwrite, init_from=init_from, ike_window=ike_window,
            log=lambda line: typer.echo(line, err=True),
        )
        typer.echo(
            f"trained {report.n_params} parameters in {report.seconds:.1f}s "
            f"(seed {report.seed}, {report.steps} steps, loss {report.final_loss:.4f}) -> {report.out}"
        )
        if report.suite:
            typer.echo(f"suite -> {report.suite}")

    app.add_typer(toy, name="toy")
