"""`mllm-audit scan`: which answers does the model prefer, item by item."""

from __future__ import annotations

from pathlib import Path

import typer

from mllm_audit.cli import options
from mllm_audit.runs.greedy import DEFAULT_TOKENS


def register(app: typer.Typer) -> None:
    @app.command()
    def scan(
        model: str = options.model(),
        suite: str = typer.Option("toy", "--suite", "-s", help="Registered suite, suite .yaml, or items .jsonl."),
        data_dir: Path | None = options.data_dir(),
        output: Path | None = options.output(),
        batch_size: int = typer.Option(16, help="Candidates per forward pass."),
        limit: int | None = typer.Option(None, help="Score only the first N items."),
        split: str | None = typer.Option(None, help="Only items of this split (train, val, eval)."),
        dtype: str = typer.Option("fp32", help="fp32 (default, exact), bf16 or fp16."),
        device: str = options.device(),
        quantize: str | None = typer.Option(None, help="8bit or 4bit (bitsandbytes)."),
        seed: int = options.seed(),
        allow_outside_paths: bool = typer.Option(False, help="Allow image paths outside the suite folder."),
        trust_remote_code: bool = options.trust_remote_code(),
        resume: bool = typer.Option(
            False, help="Continue the run in --output: keep its samples for this model and suite, score the rest."
        ),
        device_map: str | None = typer.Option(
            None, help="Spread the model over devices: auto, balanced, balanced_low_0 or sequential."
        ),
        max_memory: str | None = typer.Option(None, help="Budget per device for --device-map, e.g. 0=20GiB,cpu=64GiB."),
        card: str | None = options.card(),
        quiet: bool = options.quiet(),
        threads: int | None = options.threads(),
        revision: str | None = typer.Option(
            None, help="Hub commit, branch or tag to load (recorded in the run; default: the card's, else the "
            "local snapshot's commit).",
        ),
        trust_generic: bool = options.trust_generic(),
        max_pixels: int | None = options.max_pixels(),
        image_size: int | None = options.image_size(),
        greedy: bool = typer.Option(False, help="Also record each item's greedy answer (y_more, y_less or "
                                    "neither, lm-eval's is_greedy), summarised per group: one more forward pass."),
        greedy_tokens: int = typer.Option(DEFAULT_TOKENS, help="With --greedy: the most new tokens decoded for "
                                          "each item's free-text answer (stops earlier at EOS or a stop string)."),
    ) -> None:
        """Score every item: is p(y_more) > p(y_less)? Prints a table per bias type.

        An existing run in --output is refused unless --resume is given. Ctrl-C or SIGTERM leave a
        folder that --resume continues. Several processes: accelerate launch --multi_gpu
        --num_processes N -m mllm_audit.cli scan ... (works on CPU too, over gloo).
        """
        from mllm_audit.runs.options import check_scan_options
        from mllm_audit.runs.sharding import world_size_from_env

        check_scan_options(batch_size, limit, dtype, device, quantize, split, device_map, max_memory,
                           world_size_from_env())  # before torch is imported: a typo costs milliseconds
        for flag, value in (("--max-pixels", max_pixels), ("--image-size", image_size)):
            if value is not None and value < 1:
                from mllm_audit.errors import AuditError

                raise AuditError(f"{flag} must be a positive number of pixels, got {value}")
        from mllm_audit.runs.greedy import check_greedy_tokens

        check_greedy_tokens(greedy_tokens)
        from mllm_audit.report.tables import bias_table
        from mllm_audit.runs.scan import run_scan
        from mllm_audit.util.console import console, err_console, progress_bar
        from mllm_audit.util.text import shown

        with progress_bar("scoring", enabled=not quiet) as start:
            res = run_scan(
                model=model, suite=suite, data_dir=data_dir, output=output, batch_size=batch_size,
                limit=limit, split=split, dtype=dtype, device=device, quantize=quantize, seed=seed,
                allow_outside_paths=allow_outside_paths, trust_remote_code=trust_remote_code, progress=start,
                resume=resume, device_map=device_map, max_memory=max_memory, card=card, revision=revision,
                threads=threads,
                trust_generic=trust_generic, max_pixels=max_pixels, image_size=image_size, greedy=greedy,
                greedy_tokens=greedy_tokens,
            )
        if not res.main_process:
            return  # under accelerate launch, rank 0 reports for everyone
        r = res.results
        cov = res.record.coverage if res.record is not None else None
        part = f" ({cov.describe()}, not the whole suite)" if cov is not None and cov.subset else ""
        console.print(bias_table(r["summary"], f"{r['model']['name']} on {r['suite']['name']}{part}"))
        if "greedy" in r:
            from mllm_audit.report.greedy import greedy_table

            console.print(greedy_table(r["greedy"], "what the model would say (scan --greedy)", r["summary"]))
        if "disparity" in r:
            from mllm_audit.report.tables import render_disparity

            render_disparity(r["disparity"], console)
        t, c = r["timings"], r["counters"]
        scored = cov.describe() if cov is not None else f"{r['suite']['n_items']} items"
        err_console.print(
            f"{scored} in {t['total_s']:.1f} s (load {t['load_s']:.1f} s), "
            f"{c['images_encoded']} images encoded, {c['forward_passes']} forward passes -> {shown(res.run_dir)}",
            soft_wrap=True,
        )
