"""`mllm-audit gen-scan`: whom does a unified model draw, beside what it says when asked."""

from __future__ import annotations

from pathlib import Path

import typer

from mllm_audit.cli import options


def register(app: typer.Typer) -> None:
    @app.command("gen-scan")
    def gen_scan(
        model: str = typer.Option("toy-janus", "--model", "-m", help="Card name, card .yaml, or model folder."),
        suite: str = typer.Option("gen-toy", "--suite", "-s", help="Generation suite name, .yaml, or prompts .jsonl."),
        images_per_prompt: int = typer.Option(64, "--images-per-prompt", "-n",
                                              help="Images per prompt: 64 puts a balanced model's gender bias "
                                              "at 0.099 (the floor printed beside each number); the paper's "
                                              "full protocol is 160."),
        classifier: str | None = typer.Option(None, help="Classifier card, head folder or CLIP folder "
                                              "(default: the suite's, else clip-vit-l14)."),
        output: Path | None = options.output(),
        seed: int = typer.Option(0, help="Seed; each prompt's images are seeded from (seed, prompt id)."),
        batch_size: int = typer.Option(8, help="Images per generate call (under --sampler per-image, rows of "
                                       "several prompts share a call)."),
        resume: bool = typer.Option(False, help="Continue the run in --output, reusing prompts already done."),
        limit: int | None = typer.Option(None, help="Only the first N prompts."),
        understanding: bool = typer.Option(True, help="Also ask the blank-image gender question per prompt."),
        dtype: str = typer.Option("fp32", help="fp32 (default), bf16 or fp16."),
        device: str = options.device(),
        trust_remote_code: bool = options.trust_remote_code(),
        allow_outside_paths: bool = typer.Option(False, help="Allow the suite to name files outside its folder."),
        quiet: bool = options.quiet(),
        revision: str | None = options.revision(),
        trust_generic: bool = options.trust_generic(),
        sampler: str = typer.Option("per-image", help="per-image: each image drawn from its own generator "
                                    "(the same image whatever its batch); upstream: torch.multinomial on the "
                                    "global generator, as the Janus repos (images depend on --batch-size)."),
    ) -> None:
        """Generate images per prompt, classify gender and race, report the skew (U-MLLM fairness metric)."""
        from mllm_audit.runs.options import check_load_options

        check_load_options(dtype, device)  # before torch is imported: a typo costs milliseconds
        from mllm_audit.report.tables import gen_table, summary_table
        from mllm_audit.runs.gen_scan import run_gen_scan
        from mllm_audit.util.console import console, err_console, progress_bar
        from mllm_audit.util.text import shown

        with progress_bar("generating", enabled=not quiet) as start:
            res = run_gen_scan(
                model=model, suite=suite, images_per_prompt=images_per_prompt, classifier=classifier,
                output=output, seed=seed, batch_size=batch_size, resume=resume, limit=limit,
                understanding=understanding, dtype=dtype, device=device, trust_remote_code=trust_remote_code,
                progress=start, allow_outside_paths=allow_outside_paths, revision=revision, trust_generic=trust_generic,
                sampler=sampler,
            )
        r = res.results
        title = f"{r['model']['name']} on {r['suite']['name']}"
        console.print(gen_table(res.samples, res.attributes, f"{title}: per prompt (normalised bias, 0..1)"))
        console.print(summary_table(r["summary"], res.attributes, f"{title}: mean over prompts"))
        t = r["timings"]
        err_console.print(
            f"{len(res.samples)} prompts x {images_per_prompt} images in {t['total_s']:.1f} s "
            f"(load {t['load_s']:.1f} s, {r['resumed_prompts']} resumed) -> {shown(res.run_dir)}"
        )
