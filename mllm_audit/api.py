"""The public Python API: one function per CLI command, with the command's options as its arguments.

`mllm-audit scan --batch-size 8` is `mllm_audit.scan(batch_size=8)`; tests/test_api.py holds the two to
the same names. Arguments the CLI has no option for (a loaded `adapter`, progress callbacks) are
keyword-only and library-only. The functions are the run modules' own (one definition each; `report`
dispatches between the console view and the HTML file). Where the CLI parses text (`--editor-state
NAME=DIR`, `--sizes 1,4`) the API takes the typed value. Every function validates its arguments
before any model loads. `study` writes the run folder; `report(run_dir, html=...)` renders it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from mllm_audit.gate.evaluate import gate
from mllm_audit.integrations.harness_tasks import export_suite
from mllm_audit.integrations.modelcard import card
from mllm_audit.models import load_model
from mllm_audit.report.compare import compare_runs as compare
from mllm_audit.report.views import rescore_run as rescore
from mllm_audit.runs.fix import run_fix as fix
from mllm_audit.runs.gen_scan import run_gen_scan as gen_scan
from mllm_audit.runs.locate import run_locate as locate
from mllm_audit.runs.scan import run_scan as scan
from mllm_audit.runs.studies import run_study as study
from mllm_audit.runs.train_editor import train_editor
from mllm_audit.suites.frame import frame_run as frame_suite
from mllm_audit.suites.items import load_suite

if TYPE_CHECKING:
    from mllm_audit.toy.train import TrainReport

__all__ = [
    "compare", "fix", "frame_suite", "gate", "gen_scan", "load_model", "load_suite", "locate", "report",
    "rescore", "scan", "study", "train_editor", "train_toy",
    "card", "export_suite",
]


def report(run_dir: Path, html: Path | None = None, all_items: bool = False, overwrite: bool = False, *,
           console: Any = None) -> Any:
    """Print a run's summary (any run type) to `console`, or with `html` write the one-file HTML report."""
    if html is not None:
        from mllm_audit.report.html import write_html_report

        return write_html_report(Path(run_dir), Path(html), overwrite)
    from mllm_audit.report.views import render_run

    if console is None:
        from mllm_audit.util.console import console
    return render_run(Path(run_dir), console, all_items=all_items)


def train_toy(output: Path = Path("toy-model"), seed: int = 0, steps: int | None = None,
              write_suite: Path | None = None, overwrite: bool = False, init_from: Path | None = None,
              ike_window: bool = False, *, log: Any = None,
              pool_size: int | None = None, ike_rows: int | None = None) -> TrainReport:
    """Train the toy model deterministically into `output` (`mllm-audit toy train`); `pool_size` and `ike_rows`
    (None: toy/train.py's defaults) are library-only. Named `output` like every command's output."""
    from mllm_audit.toy.train import train_toy as _train_toy

    library = {k: v for k, v in (("pool_size", pool_size), ("ike_rows", ike_rows)) if v is not None}
    return _train_toy(Path(output), seed=seed, steps=steps, write_suite=write_suite, overwrite=overwrite,
                      init_from=init_from, ike_window=ike_window, log=log, **library)
