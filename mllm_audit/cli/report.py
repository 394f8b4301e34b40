"""`mllm-audit report`, `compare` and `rescore`: read run folders, never a model."""

from __future__ import annotations

from pathlib import Path

import typer

MAX_MISMATCH_LINES = 20


def register(app: typer.Typer) -> None:
    @app.command()
    def report(
        run_dir: Path = typer.Argument(..., help="Run folder (with results.json)."),
        html: Path | None = typer.Option(None, "--html", help="Write a self-contained HTML report here."),
        all_items: bool = typer.Option(False, "--all", help="Every per-item line of a fix run (default: 20)."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace an earlier --html report at that path."),
    ) -> None:
        """Show a run's summary, or write it as one HTML file with embedded plots."""
        from rich.console import Console

        if html is not None:
            from mllm_audit.report.html import write_html_report

            rep = write_html_report(run_dir, html, overwrite)
            from mllm_audit.util.text import shown

            Console(stderr=True, highlight=False).print(shown(f"wrote {rep.path} ({rep.n_images} plots)"))
            return
        from mllm_audit.report.views import render_run

        render_run(run_dir, Console(highlight=False), all_items=all_items)

    @app.command()
    def compare(
        run_a: Path = typer.Argument(..., help="Reference run folder (A)."),
        run_b: Path = typer.Argument(..., help="New run folder (B); deltas are B - A."),
        cluster: str = typer.Option("image", help="Two fix runs: resample edits by image or scenario."),
    ) -> None:
        """Per-group deltas on shared items with paired cluster-bootstrap p-values."""
        from rich.console import Console

        from mllm_audit.report.compare import compare_runs, render_comparison

        render_comparison(compare_runs(run_a, run_b, cluster), Console(highlight=False))

    @app.command()
    def rescore(
        run_dir: Path = typer.Argument(..., help="Run folder (results.json + samples.jsonl)."),
        write: bool = typer.Option(False, "--write", help="Replace the stored summary (atomically)."),
    ) -> None:
        """Recompute the summary from samples.jsonl; exit 1 if it differs from results.json."""
        from rich.console import Console

        from mllm_audit.report.tables import bias_table
        from mllm_audit.report.views import rescore_run
        from mllm_audit.util.text import shown

        res = rescore_run(run_dir, write=write)
        console = Console(highlight=False)
        all_row = res.summary.get("all", {})
        if "pct_biased" in all_row:
            console.print(bias_table(res.summary, f"recomputed from {res.run_dir / 'samples.jsonl'}"))
        source = (f"{all_row['n']} samples" if "n" in all_row
                  else f"{all_row['n_prompts']} prompts" if "n_prompts" in all_row else "edits.jsonl")
        if res.matches:
            console.print(f"[green]summary reproduced exactly[/] from {source}")
            return
        for line in res.mismatches[:MAX_MISMATCH_LINES]:
            console.print(f"  {shown(line)}", soft_wrap=True)
        if len(res.mismatches) > MAX_MISMATCH_LINES:
            console.print(f"  ... and {len(res.mismatches) - MAX_MISMATCH_LINES} more")
        if res.written:
            where = res.run_dir / "results.json"
            console.print(f"[yellow]rewrote summary[/] in {shown(where)} ({len(res.mismatches)} fields differed)")
            return
        console.print(f"[red]summary differs[/] in {len(res.mismatches)} fields; --write replaces it")
        raise typer.Exit(1)
