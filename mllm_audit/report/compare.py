"""Compare two runs on their shared items, and recompute a run's summary from its samples.

`compare` pairs items by `item_id`, so two runs of the same suite (before/after a fix, two model
versions) are judged on exactly the same questions; per-item differences remove item difficulty
from the noise. `rescore` proves a run folder is self-consistent: the summary in results.json must
follow from samples.jsonl alone, with no model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mllm_audit.errors import AuditError
from mllm_audit.metrics.bias import ALL, bias_summary, group_label
from mllm_audit.metrics.stats import N_BOOT, SEED, PairedDiff, paired_runs
from mllm_audit.report.tables import new_table
from mllm_audit.runs.writer import read_results
from mllm_audit.util.files import atomic_write_json, read_jsonl


@dataclass
class Run:
    """A run folder read from disk: results.json and its sample records."""

    dir: Path
    results: dict[str, Any]
    samples: list[dict[str, Any]]

    @property
    def group_by(self) -> str | None:
        gb = self.results.get("group_by")
        return str(gb) if gb else None

    @property
    def complete(self) -> bool:
        return self.results.get("complete") is True

    def label(self) -> str:
        model = (self.results.get("model") or {}).get("name", "?")
        suite = (self.results.get("suite") or {}).get("name", "?")
        return f"{self.dir.name} ({model} on {suite})"


# What each run type's samples.jsonl lines must carry to be read back.
SAMPLE_KEYS = {"scan": ("item_id", "bias_type", "logp_more", "logp_less"), "gen-scan": ("prompt_id", "counts")}


def load_run(run_dir: Path | str, need_samples: bool = True) -> Run:
    """Read a run folder; a missing folder, results.json or samples file names the culprit."""
    path = Path(run_dir)
    if not path.is_dir():
        raise AuditError(f"run folder not found: {path}")
    results = read_results(path)
    if not isinstance(results, dict):
        raise AuditError(f"{path / 'results.json'}: expected a JSON object")
    samples: list[dict[str, Any]] = []
    samples_path = path / "samples.jsonl"
    if need_samples or samples_path.is_file():
        if not samples_path.is_file():
            raise AuditError(f"no samples.jsonl in {path}")
        samples = read_jsonl(samples_path)
        needed = SAMPLE_KEYS.get(str(results.get("command") or "scan"), ())
        for n, s in enumerate(samples, 1):
            if not isinstance(s, dict):
                raise AuditError(f"{samples_path}:{n}: a sample record must be a JSON object")
            missing = [k for k in needed if k not in s]
            if missing:
                raise AuditError(f"{samples_path}:{n}: sample record lacks {missing[0]!r}")
            if needed == SAMPLE_KEYS["scan"]:
                check_sample_fields(f"{samples_path}:{n}", s)
    return Run(dir=path, results=results, samples=samples)


def check_sample_fields(where: str, s: dict[str, Any]) -> None:
    """A hand-edited sample (a score written as a string, a list as an id) is refused, naming the field."""
    from mllm_audit.util.guards import finite_number

    for key in ("logp_more", "logp_less"):
        finite_number(where, key, s[key])
    for key in ("item_id", "bias_type"):
        if not isinstance(s[key], str):
            raise AuditError(f"{where}: field {key!r} must be a string, got {type(s[key]).__name__}")
    if s.get("cluster") is not None and not isinstance(s["cluster"], str):
        raise AuditError(f"{where}: field 'cluster' must be a string, got {type(s['cluster']).__name__}")


def samples_in_group(run: Run, label: str) -> list[dict[str, Any]]:
    """The run's samples on one summary row (`all`, a bias type, or `bias_type/<group>`)."""
    if label == ALL:
        return list(run.samples)
    return [s for s in run.samples if group_label(s, run.group_by) == label or s["bias_type"] == label]


@dataclass
class CompareRow:
    """One summary row compared on shared items: B minus A for both metrics."""

    label: str
    pct_biased: PairedDiff
    mean_margin: PairedDiff

    def verdict(self, key: str) -> str:
        """`overshoot` (B crossed balance: 50 % biased, 0 nats), `closer`, `farther` or `same`."""
        from mllm_audit.metrics.catalog import verdict

        d = getattr(self, key)
        return "nan" if math.isnan(d.diff) else verdict(key, d.mean_a, d.mean_b)


@dataclass
class Comparison:
    run_a: Run
    run_b: Run
    rows: list[CompareRow]
    n_a: int
    n_b: int
    n_shared: int
    notes: list[str] = field(default_factory=list)
    # Differences that make the deltas measure something other than the model (the prompt format).
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_a": str(self.run_a.dir),
            "run_b": str(self.run_b.dir),
            "n_a": self.n_a,
            "n_b": self.n_b,
            "n_shared": self.n_shared,
            "notes": self.notes,
            "warnings": self.warnings,
            "rows": {
                r.label: {"pct_biased": {**r.pct_biased.to_dict(), "verdict": r.verdict("pct_biased")},
                          "mean_margin": {**r.mean_margin.to_dict(), "verdict": r.verdict("mean_margin")}}
                for r in self.rows
            },
        }


def compare_runs(run_a: Path | str, run_b: Path | str, cluster: str = "image", *, n_boot: int = N_BOOT,
                 seed: int = SEED) -> Any:
    """Per-group paired deltas (B - A) of pct_biased and mean_margin on items both runs scored.

    Rows are labelled with run A's grouping; the `all` row comes last. Runs sharing no item are an
    error: there is nothing to pair. Two fix runs (edits.jsonl) are compared per metric instead
    (report/compare_edits.py), their intervals resampling `cluster`s (image or scenario).
    """
    from mllm_audit.report.compare_edits import compare_edit_runs, is_fix_run

    if is_fix_run(run_a) or is_fix_run(run_b):
        if not (is_fix_run(run_a) and is_fix_run(run_b)):
            raise AuditError(f"compare needs two fix runs or two scans: {run_a} and {run_b} are one of each")
        return compare_edit_runs(run_a, run_b, cluster, n_boot=n_boot, seed=seed)
    a, b = load_run(run_a), load_run(run_b)
    ids_b = {str(s["item_id"]) for s in b.samples}
    shared_a = [s for s in a.samples if str(s["item_id"]) in ids_b]
    if not shared_a:
        raise AuditError(f"runs {a.dir} and {b.dir} share no item_id; nothing to compare")
    ids_shared = {str(s["item_id"]) for s in shared_a}
    shared_b = [s for s in b.samples if str(s["item_id"]) in ids_shared]
    notes: list[str] = []
    for run in (a, b):
        if not run.complete:
            notes.append(f"{run.dir} is incomplete (complete: false)")
    ha = (a.results.get("suite") or {}).get("content_hash")
    hb = (b.results.get("suite") or {}).get("content_hash")
    if ha and hb and ha != hb:
        notes.append("the runs used different suite contents (content_hash differs); pairing by item_id")
    warnings = template_differences(a, b)
    if a.group_by != b.group_by:
        notes.append(f"group_by differs ({a.group_by!r} vs {b.group_by!r}); rows use run A's")
    labels: list[str] = []
    groups: dict[str, list[dict[str, Any]]] = {}
    for s in shared_a:
        lab = group_label(s, a.group_by)
        if lab not in groups:
            labels.append(lab)
            groups[lab] = []
        groups[lab].append(s)
    rows = []
    for lab in [*labels, ALL]:
        sa = shared_a if lab == ALL else groups[lab]
        ids = {str(s["item_id"]) for s in sa}
        sb = [s for s in shared_b if str(s["item_id"]) in ids]
        rows.append(
            CompareRow(
                label=lab,
                pct_biased=paired_runs(sa, sb, "pct_biased", n_boot=n_boot, seed=seed),
                mean_margin=paired_runs(sa, sb, "mean_margin", n_boot=n_boot, seed=seed),
            )
        )
    return Comparison(a, b, rows, len(a.samples), len(b.samples), len(shared_a), notes, warnings)


def template_differences(a: Run, b: Run) -> list[str]:
    """One line per task whose prompt template differs between the runs (a prompt-format change, not
    a model change, would otherwise read as a significant bias delta)."""
    ta = (a.results.get("model") or {}).get("templates")
    tb = (b.results.get("model") or {}).get("templates")
    if ta is None or tb is None:
        missing = a.dir if ta is None else b.dir
        return [] if ta == tb else [f"{missing} does not record its prompt templates; they may differ"]
    out = []
    for task in sorted(set(ta) | set(tb)):
        if ta.get(task) != tb.get(task):
            out.append(f"prompt template for {task!r} differs: A {ta.get(task)!r}, B {tb.get(task)!r}")
    return out


def _word(word: str) -> str:
    return f"[bold red]{word}[/]" if word == "overshoot" else word


def _p_text(p: float) -> str:
    return "nan" if math.isnan(p) else ("<0.001" if p < 0.001 else f"{p:.3f}")


def render_comparison(cmp: Any, console: Any, alpha: float = 0.05) -> None:
    """Two narrow tables (fit 80 columns): % biased and mean margin, A, B, delta, p and the verdict
    against balance per group; a move toward balance is green, away from it (or past it: an
    overshoot) red, bold when p < alpha."""

    from mllm_audit.util.text import shown as escape

    if not isinstance(cmp, Comparison):
        from mllm_audit.report.compare_edits import render_edit_comparison

        return render_edit_comparison(cmp, console, alpha)

    def delta(d: PairedDiff, fmt: str, word: str) -> str:
        if math.isnan(d.diff):
            return "nan"
        color = "green" if word == "closer" else "red" if word in ("farther", "overshoot") else "default"
        style = f"bold {color}" if d.p_value < alpha else color
        return f"[{style}]{d.diff:+{fmt}}[/]"

    console.print(f"A: {escape(cmp.run_a.label())}  ({cmp.n_a} items)", soft_wrap=True)
    console.print(f"B: {escape(cmp.run_b.label())}  ({cmp.n_b} items)", soft_wrap=True)
    for w in cmp.warnings:
        console.print(f"[bold red]WARNING:[/] {escape(w)} — the deltas mix the prompt change with the model's")
    for title, key, fmt, unit in (  # each in its stored unit: pct_biased pairs in percent (stats.sample_value)
        ("% biased", "pct_biased", ".1f", "points"),
        ("mean margin", "mean_margin", ".2f", "nats"),
    ):
        table = new_table(f"{title}, B - A on {cmp.n_shared} shared items")
        table.add_column("group", no_wrap=True)
        for col in ("n", "A", "B", f"delta ({unit})", "p", "to balance"):
            table.add_column(col, justify="right", no_wrap=True)
        for r in cmp.rows:
            d = getattr(r, key)
            table.add_row(
                escape(r.label), str(d.n), f"{d.mean_a:{fmt}}", f"{d.mean_b:{fmt}}",
                delta(d, fmt, r.verdict(key)), _p_text(d.p_value), _word(r.verdict(key)),
                end_section=(r.label == ALL),
            )
        console.print(table)
    console.print("p: two-sided paired cluster bootstrap on shared items; delta > 0 means more bias in B; "
                  "balance is 50 % biased and 0 nats: overshoot = B moved past it", soft_wrap=True)
    for note in cmp.notes:
        console.print(f"[yellow]note:[/] {escape(note)}", soft_wrap=True)


# ---------------------------------------------------------------------------------------- rescore


@dataclass
class RescoreResult:
    run_dir: Path
    summary: dict[str, Any]
    stored: dict[str, Any] | None
    mismatches: list[str]
    written: bool

    @property
    def matches(self) -> bool:
        return not self.mismatches


def _same(x: Any, y: Any) -> bool:
    if isinstance(x, float) and isinstance(y, float) and math.isnan(x) and math.isnan(y):
        return True
    return bool(x == y)


# Summary fields added after runs were first written (issue 26): absent from an older run, not wrong.
LATER_FIELDS = frozenset(("tau", "mean_abs_margin", "abs_margin_ci_low", "abs_margin_ci_high", "pct_within_tau",
                          "within_ci_low", "within_ci_high", "mean_margin_per_token", "per_token_ci_low",
                          "per_token_ci_high", "mean_tokens_more", "mean_tokens_less"))


def diff_summaries(stored: dict[str, Any] | None, fresh: dict[str, Any]) -> list[str]:
    """Every row/field where the stored summary differs from the recomputed one (exact match)."""
    if not isinstance(stored, dict):
        return ["results.json has no summary"]
    out = []
    for label in [*fresh, *(k for k in stored if k not in fresh)]:
        if label not in stored:
            out.append(f"row {label!r} missing from the stored summary")
            continue
        if label not in fresh:
            out.append(f"row {label!r} is stored but has no samples")
            continue
        srow, frow = stored[label], fresh[label]
        if not isinstance(srow, dict):
            out.append(f"row {label!r}: stored value is not an object")
            continue
        for key in [*frow, *(k for k in srow if k not in frow)]:
            if key not in srow and key in LATER_FIELDS:
                continue  # a run written before the field existed: nothing stored to disagree with
            if key not in srow:
                out.append(f"{label}.{key}: missing from the stored summary")
            elif key not in frow:
                out.append(f"{label}.{key}: stored but not recomputed")
            elif not _same(srow[key], frow[key]):
                out.append(f"{label}.{key}: stored {srow[key]!r}, recomputed {frow[key]!r}")
    return out


def rescore(run_dir: Path | str, write: bool = False) -> RescoreResult:
    """Recompute `summary` from samples.jsonl; with `write`, replace it in results.json atomically."""
    run = load_run(run_dir)
    if not run.samples:
        raise AuditError(f"{run.dir / 'samples.jsonl'} has no samples to rescore")
    fresh = bias_summary(run.samples, run.group_by)
    stored = run.results.get("summary")
    mismatches = diff_summaries(stored, fresh)
    written = False
    if write and mismatches:
        results = dict(run.results)
        results["summary"] = fresh
        atomic_write_json(run.dir / "results.json", results)
        written = True
    return RescoreResult(run.dir, fresh, stored, mismatches, written)
