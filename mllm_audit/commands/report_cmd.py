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
    ) -> None:
        """Show a run's summary, or write it as one HTML file with embedded plots."""
        from rich.console import Console

        if html is not None:
            from ..html_report import write_html_report

            rep = write_html_report(run_dir, html)
            from ..text import shown

            Console(stderr=True, highlight=False).print(shown(f"wrote {rep.path} ({rep.n_images} plots)"))
            return
        from ..compare import load_run
        from ..console import bias_table

        run = load_run(run_dir, need_samples=False)
        res = run.results
        title = f"{(res.get('model') or {}).get('name', '?')} on {(res.get('suite') or {}).get('name', '?')}"
        console = Console(highlight=False)
        console.print(bias_table(res.get("summary") or {}, title))
        if not run.complete:
            console.print("[yellow]incomplete run[/] (results.json says complete: false)")

    @app.command()
    def compare(
        run_a: Path = typer.Argument(..., help="Reference run folder (A)."),
        run_b: Path = typer.Argument(..., help="New run folder (B); deltas are B - A."),
    ) -> None:
        """Per-group deltas on shared items with paired cluster-bootstrap p-values."""
        from rich.console import Console

        from ..compare import compare_runs, render_comparison

        render_comparison(compare_runs(run_a, run_b), Console(highlight=False))

    @app.command()
    def rescore(
        run_dir: Path = typer.Argument(..., help="Run folder (results.json + samples.jsonl)."),
        write: bool = typer.Option(False, "--write", help="Replace the stored summary (atomically)."),
    ) -> None:
        """Recompute the summary from samples.jsonl; exit 1 if it differs from results.json."""
        from rich.console import Console

        from ..compare import rescore as do_rescore
        from ..console import bias_table
        from ..text import shown

        res = do_rescore(run_dir, write=write)
        console = Console(highlight=False)
        console.print(bias_table(res.summary, f"recomputed from {res.run_dir / 'samples.jsonl'}"))
        n = res.summary.get("all", {}).get("n", 0)
        if res.matches:
            console.print(f"[green]summary reproduced exactly[/] from {n} samples")
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
