"""`mllm-audit train-editor`: meta-train MEND, KE or SERAC for one model on a suite's train split."""

from __future__ import annotations

from pathlib import Path

import typer

from mllm_audit.cli import options


def register(app: typer.Typer) -> None:
    @app.command("train-editor")
    def train_editor_cmd(
        editor: str = typer.Option("mend", help="mend, ke or serac."),
        model: str = options.model(),
        suite: str = typer.Option("toy", "--suite", "-s", help="Suite with a train split (val: early stopping)."),
        out: Path = typer.Option(..., "--out", "-o", help="Folder for state.safetensors, config.json, checkpoints."),
        scope: str | None = typer.Option(None, help="text (default) or vision: which side mend/ke edit."),
        steps: int | None = typer.Option(None, help="Training steps (default: the editor's schedule)."),
        seed: int = typer.Option(0, help="Random seed (initialisation and batch order)."),
        resume: bool = typer.Option(False, "--resume", help="Continue from OUT/checkpoint.pt."),
        data_dir: Path | None = options.data_dir(),
        allow_outside_paths: bool = options.allow_outside_paths(),
        dtype: str = options.dtype(),
        device: str = options.device(),
        counterfactual: str | None = typer.Option(
            None, help="serac: 'lora' (adapters on the base, default) or a card/folder of a smaller model."
        ),
        variant: str | None = typer.Option(
            None, help="mend: easyedit (default) or margin; ke: decao (default) or margin. See docs/editors.md."),
        lr: float | None = typer.Option(None, help="Learning rate (default: the editor's schedule; lower it when "
                                                    "training diverges)."),
        quiet: bool = options.quiet(),
        revision: str | None = options.revision(),
        trust_generic: bool = options.trust_generic(),
    ) -> None:
        """Train a learned editor; `fix --editor NAME --editor-state OUT` then uses it."""
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        from mllm_audit.runs.options import LEARNED_EDITORS, check_editor_name, check_load_options

        check_editor_name(editor, LEARNED_EDITORS, "--editor (a learned editor)")  # before torch is imported
        check_load_options(dtype, device)
        from mllm_audit.api import train_editor
        from mllm_audit.util.console import err_console
        from mllm_audit.util.text import shown

        columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("loss {task.fields[loss]:.4f}  val {task.fields[val]}"), TimeRemainingColumn())
        with Progress(*columns, console=err_console, transient=True, disable=quiet) as prog:
            task = prog.add_task(shown(f"training {editor}"), total=None, loss=float("nan"), val="—")

            def on_step(step: int, total: int, loss: float, val: float | None) -> None:
                fields = {"loss": loss} if val is None else {"loss": loss, "val": f"{val:.4f}"}
                prog.update(task, completed=step, total=total, **fields)

            res = train_editor(editor=editor, model=model, suite=suite, out=out, scope=scope, steps=steps, seed=seed,
                               resume=resume, data_dir=data_dir, dtype=dtype, device=device,
                               counterfactual=counterfactual, variant=variant, lr=lr, on_step=on_step,
                               allow_outside_paths=allow_outside_paths, revision=revision, trust_generic=trust_generic)
        how = "stopped early" if res.stopped_early else "done"
        err_console.print(f"{editor}: {res.steps_run} steps ({how}, best at step {res.best_step}) in "
                          f"{res.seconds:.1f} s -> {shown(res.out)}")
