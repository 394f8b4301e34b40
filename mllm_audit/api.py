"""The public Python API: one function per CLI command, with the command's options as its arguments.

`mllm-audit scan --batch-size 8` is `mllm_audit.scan(batch_size=8)`; tests/test_api.py holds the two to
the same names. Arguments the CLI has no option for (a loaded `adapter`, progress callbacks) are
keyword-only and library-only. Most functions are the run modules' own functions; the few wrappers
here only give typed arguments where the CLI parses text (`--editor-state NAME=DIR`, `--sizes 1,4`).
Every function validates its arguments before any model loads.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from mllm_audit.errors import AuditError
from mllm_audit.gate.evaluate import gate
from mllm_audit.models import load_model
from mllm_audit.report.compare import compare_runs as compare
from mllm_audit.report.views import rescore_run as rescore
from mllm_audit.runs.gen_scan import run_gen_scan as gen_scan
from mllm_audit.runs.locate import run_locate as locate
from mllm_audit.runs.scan import run_scan as scan
from mllm_audit.suites.frame import frame_run as frame_suite
from mllm_audit.suites.items import load_suite

__all__ = [
    "compare", "fix", "frame_suite", "gate", "gen_scan", "load_model", "load_suite", "locate", "report",
    "rescore", "scan", "study", "train_editor", "train_toy",
]


def fix(
    model: str = "toy",
    suite: str = "toy",
    editor: str = "ft-l",
    scope: str | None = None,
    mode: str = "single",
    batch_edits: int = 16,
    all_items: bool = False,
    limit: int | None = None,
    split: str | None = None,
    require: Sequence[str] = (),
    output: Path | None = None,
    save: Path | None = None,
    editor_state: Path | None = None,
    variant: str | None = None,
    serac_routing: str | None = None,
    data_dir: Path | None = None,
    allow_outside_paths: bool = False,
    batch_size: int = 16,
    dtype: str = "fp32",
    device: str = "cpu",
    seed: int = 0,
    card: str | None = None,
    hparam: Sequence[str] = (),
    *,
    adapter: Any = None,
    on_edit: Callable[[dict[str, Any]], None] | None = None,
    progress: Callable[[int], Callable[[int], None]] | None = None,
    log: Callable[[str], None] | None = None,
) -> Any:
    """Edit the model so it prefers y_less and measure the edit (runs.fix); `sft` / `bpo` edit a
    unified model's image generation instead (runs.fix_unified), with `hparam` as KEY=VALUE settings."""
    if editor in ("sft", "bpo"):  # `data_dir`: the labelled images the balanced data is drawn against
        from mllm_audit.editors.bpo import BalancedSettings, parse_overrides
        from mllm_audit.runs.fix_unified import run_unified_fix

        settings = BalancedSettings(**{"seed": seed, **parse_overrides(list(hparam))})
        return run_unified_fix(model="toy-janus-v2" if model == "toy" else model,
                               suite="gen-toy-v2" if suite == "toy" else suite, editor=editor, images=data_dir,
                               output=output, save=save, seed=seed, settings=settings, device=device,
                               adapter=adapter, log=log)
    if hparam:
        raise AuditError(f"--set applies to --editor sft and bpo, not {editor}")
    options: dict[str, Any] = {}
    if variant is not None:
        if editor not in ("ft-l", "ft-v", "ike"):
            raise AuditError(f"--variant applies to ft-l, ft-v and ike; {editor} takes it at train-editor time")
        options["variant"] = variant
    if serac_routing is not None:
        if editor != "serac":
            raise AuditError(f"--serac-routing applies to --editor serac, not {editor}")
        options["routing"] = serac_routing
    from mllm_audit.runs.fix import run_fix

    return run_fix(model=model, suite=suite, editor=editor, scope=scope, mode=mode, batch_edits=batch_edits,
                   all_items=all_items, limit=limit, split=split, require=require, output=output, save=save,
                   editor_state=editor_state, data_dir=data_dir, batch_size=batch_size, dtype=dtype, device=device,
                   seed=seed, card=card, allow_outside_paths=allow_outside_paths, editor_options=options,
                   adapter=adapter, on_edit=on_edit, progress=progress)


def train_editor(
    editor: str = "mend",
    model: str = "toy",
    suite: str = "toy",
    out: Path = Path("editor-state"),
    scope: str | None = None,
    steps: int | None = None,
    seed: int = 0,
    resume: bool = False,
    data_dir: Path | None = None,
    allow_outside_paths: bool = False,
    dtype: str = "fp32",
    device: str = "cpu",
    counterfactual: str | None = None,
    variant: str | None = None,
    *,
    hparams: Mapping[str, Any] | None = None,
    adapter: Any = None,
    on_step: Callable[[int, int, float, float | None], None] | None = None,
) -> Any:
    """Train a learned editor (MEND, KE, SERAC) into `out`; `counterfactual` and `variant` are the two
    training settings the CLI exposes, `hparams` any other (docs/editors.md)."""
    from mllm_audit.runs.train_editor import train_editor as run

    settings = dict(hparams or {})
    if counterfactual:
        settings["counterfactual"] = counterfactual
    if variant:
        settings["variant"] = variant
    return run(editor=editor, model=model, suite=suite, out=out, scope=scope, steps=steps, seed=seed, resume=resume,
               data_dir=data_dir, allow_outside_paths=allow_outside_paths, dtype=dtype, device=device,
               hparams=settings or None, adapter=adapter, on_step=on_step)


def study(
    study: str,
    model: str = "toy",
    suite: str = "toy",
    editors: Sequence[str] | None = None,
    limit: int | None = 24,
    sizes: Sequence[int] = (1, 4, 16, 64),
    protocol: str = "fit",
    editor_state: Mapping[str, Path] | None = None,
    train_steps: int | None = None,
    output: Path | None = None,
    data_dir: Path | None = None,
    batch_size: int = 16,
    dtype: str = "fp32",
    device: str = "cpu",
    seed: int = 0,
    *,
    adapter: Any = None,
    on_row: Callable[[dict[str, Any]], None] | None = None,
) -> Any:
    """Run one of the paper's studies (modules, cross-bias, batch) and write its run folder with an
    HTML report beside results.json (when matplotlib is installed)."""
    from mllm_audit.runs.studies import run_study

    res = run_study(study, model=model, suite=suite, editors=editors, limit=limit, sizes=sizes, protocol=protocol,
                    states=dict(editor_state or {}), train_steps=train_steps, output=output, data_dir=data_dir,
                    batch_size=batch_size, dtype=dtype, device=device, seed=seed, adapter=adapter, on_row=on_row)
    try:
        from mllm_audit.report.html import write_html_report

        write_html_report(res.run_dir, res.run_dir / "report.html")
    except AuditError:  # matplotlib missing: the run folder is still complete
        pass
    return res


def report(run_dir: Path, html: Path | None = None, all_items: bool = False, *, console: Any = None) -> Any:
    """Print a run's summary (any run type) to `console`, or with `html` write the one-file HTML report."""
    if html is not None:
        from mllm_audit.report.html import write_html_report

        return write_html_report(Path(run_dir), Path(html))
    from mllm_audit.report.views import render_run

    if console is None:
        from mllm_audit.util.console import console
    return render_run(Path(run_dir), console, all_items=all_items)


def train_toy(
    seed: int = 0,
    out: Path = Path("toy-model"),
    steps: int | None = None,
    write_suite: Path | None = None,
    *,
    log: Callable[[str], None] | None = None,
) -> Any:
    """Train the toy model (a tiny BLIP-2 with a planted bias) deterministically; `write_suite` also
    writes the toy suite there."""
    from mllm_audit.toy.train import train_toy as run

    return run(out, seed=seed, steps=steps, write_suite_dir=write_suite, log=log)
