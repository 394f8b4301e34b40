"""`compare` on two fix runs: per metric, the paired difference between two editors on the same edits.

Both runs edited the same items (matched by `item_id`), so per-edit differences cancel item
difficulty. Intervals and p-values resample clusters: `image` (the edit's scene, the record's
`cluster`) or `scenario` (meta.scenario, coarser: all of a scenario's scenes move together); the
comparison says which. Each metric is also judged against its catalog target: closer, farther, or
overshoot (moved past it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mllm_audit.errors import AuditError
from mllm_audit.metrics.paired_edits import CLUSTERS, paired_edits
from mllm_audit.metrics.stats import N_BOOT, SEED, PairedDiff


@dataclass
class EditRun:
    dir: Path
    results: dict[str, Any]
    edits: list[dict[str, Any]]

    def label(self) -> str:
        ed = (self.results.get("editor") or {})
        opts = ed.get("options") or {}
        obj = f", objective {opts['objective']}" if opts.get("objective") else ""
        return f"{self.dir.name} ({ed.get('name', '?')}{obj}, {self.results.get('mode', '?')})"


@dataclass
class EditComparison:
    run_a: EditRun
    run_b: EditRun
    cluster: str
    n_shared: int
    rows: dict[str, PairedDiff]
    verdicts: dict[str, str]
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"run_a": str(self.run_a.dir), "run_b": str(self.run_b.dir), "cluster": self.cluster,
                "n_shared": self.n_shared, "notes": self.notes,
                "rows": {k: {**d.to_dict(), "verdict": self.verdicts[k]} for k, d in self.rows.items()}}


def is_fix_run(run_dir: Path | str) -> bool:
    return (Path(run_dir) / "edits.jsonl").is_file()


def load_edit_run(run_dir: Path | str) -> EditRun:
    from mllm_audit.runs.writer import read_results
    from mllm_audit.util.files import read_jsonl

    path = Path(run_dir)
    results = read_results(path)
    if not isinstance(results, dict) or results.get("command") != "fix":
        raise AuditError(f"{path / 'results.json'}: not a fix run (command {results.get('command')!r})")
    edits = read_jsonl(path / "edits.jsonl")
    for n, e in enumerate(edits, 1):
        if not isinstance(e, dict) or not isinstance(e.get("item_id"), str):
            raise AuditError(f"{path / 'edits.jsonl'}:{n}: an edit record must be an object with a string item_id")
    return EditRun(path, results, edits)


def compare_edit_runs(run_a: Path | str, run_b: Path | str, cluster: str = "image", *, n_boot: int = N_BOOT,
                      seed: int = SEED) -> EditComparison:
    """B - A per metric on the edits both runs made, with a paired cluster-bootstrap interval and p."""
    from mllm_audit.metrics.bias import FIX_DEBIAS_METRICS, FIX_METRICS
    from mllm_audit.metrics.catalog import verdict

    if cluster not in CLUSTERS:
        raise AuditError(f"--cluster must be one of {', '.join(CLUSTERS)}, got {cluster!r}")
    a, b = load_edit_run(run_a), load_edit_run(run_b)
    n_shared = len({e["item_id"] for e in a.edits} & {e["item_id"] for e in b.edits})
    if not n_shared:
        raise AuditError(f"fix runs {a.dir} and {b.dir} edited no item in common; nothing to pair")
    notes = []
    if n_shared < max(len(a.edits), len(b.edits)):
        notes.append(f"{len(a.edits)} edits in A, {len(b.edits)} in B: compared on the {n_shared} shared items")
    rows = paired_edits(a.edits, b.edits, (*FIX_METRICS, *FIX_DEBIAS_METRICS), cluster, n_boot=n_boot, seed=seed)
    verdicts = {k: verdict(k, d.mean_a, d.mean_b) for k, d in rows.items()}
    return EditComparison(a, b, cluster, n_shared, rows, verdicts, notes)


def render_edit_comparison(cmp: EditComparison, console: Any, alpha: float = 0.05) -> None:
    """One table: metric, A, B, B - A with its 95 % interval, p, and the verdict against the target."""
    from mllm_audit.report.tables import new_table
    from mllm_audit.util.text import shown as escape

    console.print(f"A: {escape(cmp.run_a.label())}", soft_wrap=True)
    console.print(f"B: {escape(cmp.run_b.label())}", soft_wrap=True)
    from rich import box

    table = new_table(f"B - A on {cmp.n_shared} shared edits (clusters: {cmp.cluster})")
    table.box, table.pad_edge, table.collapse_padding = box.SIMPLE_HEAD, False, True  # 7 columns in 80
    table.add_column("metric", no_wrap=True, overflow="ellipsis", max_width=20)
    for col, width in (("A", 5), ("B", 5), ("B - A", 5), ("95% CI", 11), ("p", 5), ("target", 8)):
        table.add_column(col, justify="right", no_wrap=True, min_width=width)
    for key, d in cmp.rows.items():
        word = cmp.verdicts[key]
        colour = "green" if word == "closer" else "red" if word in ("farther", "overshoot") else "default"
        style = f"bold {colour}" if d.p_value < alpha else colour
        p = "nan" if math.isnan(d.p_value) else ("<.001" if d.p_value < 0.001 else f"{d.p_value:.3f}")
        table.add_row(escape(key), f"{d.mean_a:.2f}", f"{d.mean_b:.2f}", f"[{style}]{d.diff:+.2f}[/]",
                      f"{d.ci_low:+.2f},{d.ci_high:+.2f}", p, word)
    console.print(table)
    console.print(f"paired cluster bootstrap over {cmp.cluster}s; to target: the catalog's target "
                  "(balance, rate 1, KL 0); overshoot = B moved past it", soft_wrap=True)
    for note in cmp.notes:
        console.print(f"[yellow]note:[/] {escape(note)}", soft_wrap=True)
