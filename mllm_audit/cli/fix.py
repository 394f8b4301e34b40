"""`mllm-audit fix`: debias-edit the items a model is biased on, and show what else changed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from mllm_audit.cli import options
from mllm_audit.report.headline import print_headline
from mllm_audit.report.tables import diff_line, metrics_table, saved_model_table


def register(app: typer.Typer) -> None:
    @app.command()
    def fix(
        model: str = options.model(),
        suite: str = typer.Option("toy", "--suite", "-s", help="Registered suite, suite .yaml, or items .jsonl."),
        editor: str = typer.Option("ft-l", help="ft-l, ft-v, ike (learned: mend, ke, serac); "
                                   "sft, bpo (unified models' generation)."),
        scope: str | None = typer.Option(None, help="text or vision: which side a weight editor edits."),
        mode: str = typer.Option("single", help="single (restore after each edit), batch, or sequential."),
        batch_edits: int = typer.Option(16, help="Edits applied at once in batch mode: 1, 4, 16 or 64."),
        all_items: bool = typer.Option(False, "--all", help="Edit every item, not only the biased ones."),
        limit: int | None = typer.Option(None, help="Edit at most N items."),
        split: str | None = typer.Option(None, help="Items of this split (default: eval when present)."),
        require: list[str] | None = typer.Option(None, help="Metrics that must be measurable."),
        output: Path | None = options.output("Run folder."),
        save: Path | None = typer.Option(None, help="Write the edited model (all edits at once) here."),
        editor_state: Path | None = typer.Option(None, help="Trained editor state (mend, ke, serac)."),
        variant: str | None = typer.Option(
            None, help="ft-l/ft-v: easyedit (default) or margin; ike: easyedit (default) or prompt "
                       "(mend/ke pick theirs at train-editor time). See docs/editors.md."),
        serac_routing: str | None = typer.Option(
            None, help="serac: soft (default; EasyEdit's multimodal SERAC mixes by scope score) or hard."),
        objective: str | None = typer.Option(
            None, help="ft-l/ft-v, mend, ke: flip (default, the paper's), paired (also an other-group train image) "
                       "or neutral (margin to 0). See docs/editors.md."),
        data_dir: Path | None = options.data_dir(),
        allow_outside_paths: bool = options.allow_outside_paths(),
        batch_size: int = options.batch_size(),
        dtype: str = options.dtype(),
        device: str = options.device(),
        seed: int = options.seed("Random seed."),
        card: str | None = options.card(),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="No per-item diff or progress bar."),
        hparam: list[str] | None = typer.Option(None, "--set", help="An editor setting, KEY=VALUE (an unknown KEY "
                                                "is refused listing the editor's; docs/editors.md)."),
        balanced_from: str = typer.Option(
            "images", help="sft/bpo: balanced data from the labelled images (the paper's) or the model's own "
                           "generations (classifier-filtered; a deviation, recorded)."),
        self_images_per_word: int = typer.Option(16, help="sft/bpo with --balanced-from generations: images drawn "
                                                            "per group word and prompt."),
        resume: bool = typer.Option(False, "--resume", help="Continue a killed single/batch run in --output: its "
                                    "recorded edits are kept, the rest redone."),
        hparams_file: Path | None = typer.Option(None, "--hparams", help="An EasyEdit hparams YAML (FT, IKE; MEND, "
                                                 "KE, SERAC at train-editor): each field mapped or refused."),
        revision: str | None = options.revision(),
        trust_generic: bool = options.trust_generic(),
    ) -> None:
        """Edit the model so it prefers y_less; report Reliability, Generality and Locality."""
        from mllm_audit.runs.options import check_fix_options

        editor = editor.lower()  # the docs write FT-L

        check_fix_options(editor, mode, batch_edits, scope, variant, serac_routing, hparam or (), dtype, device,
                          split, balanced_from)  # before torch is imported: a typo costs milliseconds
        from mllm_audit.editors.objectives import check_objective

        check_objective(objective, editor)
        if editor in ("sft", "bpo") and hparams_file is None:  # unified models: their own path
            from mllm_audit.cli.fix_unified import fix_unified

            return fix_unified(model, suite, editor, data_dir, output, save, seed, device, quiet, hparam or [],
                               balanced_from, self_images_per_word)
        from mllm_audit.api import fix as run_fix
        from mllm_audit.util.console import console, err_console, progress_bar
        from mllm_audit.util.text import shown

        def on_edit(rec: dict[str, Any]) -> None:
            if not quiet:  # streamed as each edit is measured
                console.print(diff_line(rec), soft_wrap=True)

        with progress_bar(f"editing ({editor})", enabled=not quiet) as start:
            res = run_fix(
                model=model, suite=suite, editor=editor, scope=scope, mode=mode, batch_edits=batch_edits,
                all_items=all_items, limit=limit, split=split, require=require or (), output=output, save=save,
                editor_state=editor_state, variant=variant, serac_routing=serac_routing, data_dir=data_dir,
                batch_size=batch_size,
                dtype=dtype, device=device, seed=seed, card=card, progress=start, on_edit=on_edit,
                allow_outside_paths=allow_outside_paths, hparam=hparam or (), hparams_file=hparams_file, resume=resume,
                objective=objective, revision=revision, trust_generic=trust_generic,
            )
        if not res.edits:
            err_console.print(
                "nothing to edit: the model prefers y_less on every selected item "
                "(--all edits every item; --split picks another split)"
            )
            return
        print_headline(console, res.results, res.edits)  # what it did to bias and what it broke, first
        console.print(metrics_table(res.results))
        t = res.results["timings"]
        n = res.results["n_edits"]
        err_console.print(
            f"{n} edits in {t['total_s']:.1f} s ({t['s_per_edit']:.3f} s/edit) -> {shown(res.run_dir)}", soft_wrap=True
        )
        saved = res.results.get("saved_model")
        if saved:
            for part in saved_model_table(saved, res.results["metrics"]):
                err_console.print(part, soft_wrap=True)


