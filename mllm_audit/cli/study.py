"""`mllm-audit study modules|cross-bias|batch`: the debias-editing paper's studies (studies.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from mllm_audit.cli import options


def register(app: typer.Typer) -> None:
    @app.command()
    def study(
        study: str = typer.Argument(..., help="modules (Figure 4), cross-bias (Table 3) or batch (1/4/16/64)."),
        model: str = options.model(),
        suite: str = typer.Option("toy", "--suite", "-s", help="Suite with eval (edited) and train splits."),
        editors: str | None = typer.Option(
            None, help="Comma-separated. modules: ft,mend,ke; others: ft-l,ft-v,ike,serac,ke,mend."),
        limit: int | None = typer.Option(24, help="Edit at most N biased eval items (per bias type in cross-bias)."),
        sizes: str = typer.Option("1,4,16,64", help="batch: edits applied at once."),
        protocol: str = typer.Option("fit", help="cross-bias: fit (editor fitted on one type, edits each) or "
                                                 "transfer (one type's edits at once, measured on each type)."),
        editor_state: list[str] | None = typer.Option(
            None, help="NAME=DIR or NAME:SCOPE=DIR: a trained state instead of training one here (not cross-bias)."),
        train_steps: int | None = typer.Option(None, help="Training steps of learned editors trained here."),
        output: Path | None = options.output("Run folder."),
        data_dir: Path | None = options.data_dir(),
        batch_size: int = options.batch_size(),
        dtype: str = options.dtype(),
        device: str = options.device(),
        seed: int = options.seed("Random seed."),
        revision: str | None = options.revision(),
        trust_generic: bool = options.trust_generic(),
        cluster: str = typer.Option("image", help="Paired intervals resample image or scenario clusters."),
    ) -> None:
        """Run one of the paper's studies; prints its table and writes a run folder with report.html."""

        from mllm_audit.runs.options import check_load_options

        check_load_options(dtype, device)  # before torch is imported: a typo costs milliseconds
        from mllm_audit.api import study as run_study
        from mllm_audit.errors import AuditError
        from mllm_audit.report.html import write_html_report
        from mllm_audit.report.studies import study_table
        from mllm_audit.util.console import console, err_console
        from mllm_audit.util.text import shown

        states: dict[str, Path] = {}
        for spec in editor_state or []:
            key, sep, path = spec.partition("=")
            if not sep or not key or not path:
                raise AuditError(f"--editor-state wants NAME=DIR, got {spec!r}")
            states[key] = Path(path)
        try:
            size_list = [int(s) for s in sizes.split(",") if s.strip()]
        except ValueError:
            raise AuditError(f"--sizes wants comma-separated integers, got {sizes!r}") from None
        import time

        names = [e.strip() for e in editors.split(",")] if editors else None
        known = {"batch": len(names or ["ft-l", "ft-v", "ike"]) * len(size_list),
                 "modules": 2 * len(names or ["ft", "mend", "ke"])}.get(study)
        t_start, done = time.monotonic(), [0]

        def on_row(row: dict[str, Any]) -> None:  # one line per table row, with the time left when known
            done[0] += 1
            spent = time.monotonic() - t_start
            left = f", about {spent / done[0] * (known - done[0]):.0f} s left" if known else ""
            what = ", ".join(str(v) for k, v in row.items() if k in ("editor", "batch", "module", "edit_type",
                                                                     "eval_type"))
            err_console.print(shown(f"study {study}: row {done[0]}{f'/{known}' if known else ''} ({what}) after "
                                    f"{spent:.0f} s{left}"), soft_wrap=True)

        res = run_study(
            study, model=model, suite=suite, editors=names, on_row=on_row,
            limit=limit, sizes=size_list, protocol=protocol, editor_state=states, train_steps=train_steps,
            output=output, data_dir=data_dir, batch_size=batch_size, dtype=dtype, device=device, seed=seed,
            revision=revision, trust_generic=trust_generic, cluster=cluster,
        )
        try:
            write_html_report(res.run_dir, res.run_dir / "report.html")
        except AuditError:  # matplotlib missing: the run folder is still complete
            pass
        table = study_table(res.results)
        console.print(table)
        err_console.print(f"{res.results['timings']['total_s']:.1f} s -> {res.run_dir} (report.html inside)")
