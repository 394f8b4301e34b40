"""`mllm-audit train-editor`: meta-train MEND, KE or SERAC for one model on a suite's train split."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from mllm_audit.cli import options


def register(app: typer.Typer) -> None:
    @app.command("train-editor")
    def train_editor_cmd(
        editor: str = typer.Option("mend", help="mend, ke or serac."),
        model: str = options.model(),
        suite: str = typer.Option("toy", "--suite", "-s", help="Suite with a train split (val: early stopping)."),
        output: Path | None = typer.Option(None, "--output", "-o", help="Folder for state.safetensors, "
                                           "config.json, checkpoints (required)."),
        out_alias: Path | None = options.output_alias(),
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
        objective: str | None = typer.Option(
            None, help="mend, ke: flip (default), paired or neutral; fix then uses the state under it."),
        hparam: list[str] | None = typer.Option(None, "--set", help="A training setting, KEY=VALUE (an unknown "
                                                "KEY is refused listing the editor's)."),
        hparams_file: Path | None = typer.Option(None, "--hparams", help="An EasyEdit hparams YAML (MEND, KE, "
                                                 "SERAC): each field mapped or refused."),
        quiet: bool = options.quiet(),
        revision: str | None = options.revision(),
        trust_generic: bool = options.trust_generic(),
    ) -> None:
        """Train a learned editor; `fix --editor NAME --editor-state OUT` then uses it."""
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        from mllm_audit.runs.options import LEARNED_EDITORS, check_editor_name, check_load_options

        output = options.pick_output(output, out_alias, "train-editor")
        editor = editor.lower()
        check_editor_name(editor, LEARNED_EDITORS, "--editor (a learned editor)")  # before torch is imported
        check_load_options(dtype, device)
        from mllm_audit.editors.objectives import check_objective

        check_objective(objective, editor)
        from mllm_audit.editors.hparams import resolve_settings

        resolve_settings(editor, hparam or (), hparams_file, train=True)
        from mllm_audit.api import train_editor
        from mllm_audit.util.console import err_console
        from mllm_audit.util.text import shown

        columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("loss {task.fields[loss]:.4f}  val {task.fields[val]}"), TimeRemainingColumn())
        def train(on_step: Any) -> Any:
            return train_editor(editor=editor, model=model, suite=suite, output=output, scope=scope, steps=steps,
                                seed=seed, resume=resume, data_dir=data_dir, dtype=dtype, device=device,
                                counterfactual=counterfactual, variant=variant, lr=lr, on_step=on_step,
                                hparam=hparam or (), hparams_file=hparams_file, allow_outside_paths=allow_outside_paths,
                                objective=objective, revision=revision, trust_generic=trust_generic)

        if not quiet and not err_console.is_terminal:  # piped (CI logs): progress lines with rate and time left
            from mllm_audit.util.console import progress_bar

            with progress_bar(f"training {editor}") as start:
                seen = {"step": 0}
                advance: list[Any] = []

                def on_line(step: int, total: int, loss: float, val: float | None) -> None:
                    if not advance:
                        advance.append(start(total))
                    advance[0](step - seen["step"])
                    seen["step"] = step

                res = train(on_line)
        else:
            with Progress(*columns, console=err_console, transient=True, disable=quiet) as prog:
                task = prog.add_task(shown(f"training {editor}"), total=None, loss=float("nan"), val="—")

                def on_step(step: int, total: int, loss: float, val: float | None) -> None:
                    fields = {"loss": loss} if val is None else {"loss": loss, "val": f"{val:.4f}"}
                    prog.update(task, completed=step, total=total, **fields)

                res = train(on_step)
        how = "stopped early" if res.stopped_early else "done"
        err_console.print(f"{editor}: {res.steps_run} steps ({how}, best at step {res.best_step}) in "
                          f"{res.seconds:.1f} s -> {shown(res.out)}")
