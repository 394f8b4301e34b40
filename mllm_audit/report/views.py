"""What `report` and `rescore` show for each run type (report/runinfo.KINDS): one dispatch on the
run's `command`, so a new run type adds a view here instead of a new copy of the report command."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mllm_audit.errors import AuditError

MAX_ITEM_LINES = 20


def command_of(results: dict[str, Any]) -> str:
    return str(results.get("command") or "scan")


def render_run(run_dir: Path, console: Any, all_items: bool = False) -> None:
    """The run's own tables under a header naming what ran (report/runinfo.py): bias per group (scan),
    metrics and per-item diffs (fix), stages (fix --editor sft|bpo), skew (gen-scan), the probes and
    verdict (locate), the study's table, a trained editor state (train-editor)."""
    from mllm_audit.report.compare import load_run
    from mllm_audit.report.runinfo import run_kind, run_title, what_ran
    from mllm_audit.util.text import shown

    if is_editor_state(Path(run_dir)):
        console.print(editor_state_table(Path(run_dir)))
        return
    run = load_run(run_dir, need_samples=False)
    res, kind = run.results, run_kind(run.results)
    title = f"{(res.get('model') or {}).get('name', '?')} on {(res.get('suite') or {}).get('name', '?')}"
    if kind not in ("scan", "gen-scan"):  # a scan's table title already says all there is
        console.print(f"[bold]{shown(run_title(res))}[/]")
        extra = [f"{k} {v}" for k, v in what_ran(res) if k in ("state", "objective", "settings", "verdict")]
        if extra:
            console.print(shown("; ".join(extra)), soft_wrap=True)
    if kind == "fix":
        _render_fix(run.dir, res, console, all_items)
    elif kind == "fix-unified":
        from mllm_audit.report.tables import fix_table

        console.print(fix_table(res))
    elif kind == "locate":
        from mllm_audit.report.tables import locate_tables

        for table in locate_tables(res):
            console.print(table)
        console.print(f"[bold]verdict: {shown(res.get('verdict'))}[/] ({shown(res.get('verdict_reason'))})")
    elif kind == "study":
        from mllm_audit.report.studies import study_table

        console.print(study_table(res))
    elif kind == "gen-scan":
        from mllm_audit.report.tables import gen_table, summary_table

        attributes = res.get("attributes") or {}
        console.print(gen_table(run.samples, attributes, f"{title}: per prompt (normalised bias, 0..1)"))
        console.print(summary_table(res.get("summary") or {}, attributes, f"{title}: mean over prompts"))
    elif kind == "scan":
        from mllm_audit.report.tables import bias_table

        console.print(bias_table(res.get("summary") or {}, title))
        if isinstance(res.get("greedy"), dict):
            from mllm_audit.report.greedy import greedy_table

            console.print(greedy_table(res["greedy"], f"{title}: what the model would say", res.get("summary")))
    else:
        raise AuditError(f"{run.dir}: `report` does not know run type {kind!r}")
    if not run.complete:
        console.print("[yellow]incomplete run[/] (results.json says complete: false)")


def _render_fix(run_dir: Path, res: dict[str, Any], console: Any, all_items: bool) -> None:
    from mllm_audit.report.tables import diff_line, metrics_table
    from mllm_audit.util.files import read_jsonl

    edits = read_jsonl(run_dir / "edits.jsonl") if (run_dir / "edits.jsonl").is_file() else []
    from mllm_audit.report.headline import print_headline
    from mllm_audit.report.tables import saved_model_table

    print_headline(console, res, edits)  # what the edit did to bias and what it broke, before any table
    console.print(metrics_table(res))
    shown = edits if all_items else edits[:MAX_ITEM_LINES]
    for rec in shown:
        if isinstance(rec.get("pre"), dict) and "reliability" in rec["pre"]:
            console.print(diff_line(rec), soft_wrap=True)
    if len(shown) < len(edits):
        console.print(f"... and {len(edits) - len(shown)} more edits (--all shows every one)")
    console.print("margin = log p(y_more) - log p(y_less), in nats")
    if res.get("saved_model"):
        for part in saved_model_table(res["saved_model"], res.get("metrics") or {}):
            console.print(part, soft_wrap=True)


def rescore_run(run_dir: Path, write: bool = False) -> Any:
    """Recompute a run's summary from its per-item file: scan and gen-scan summaries, fix metrics."""
    from mllm_audit.report.compare import RescoreResult, diff_summaries, load_run, rescore
    from mllm_audit.util.files import atomic_write_json, read_jsonl

    run = load_run(run_dir, need_samples=False)
    cmd = command_of(run.results)
    if write:  # a record whose samples do not cover what it claims is not rewritten (runs/coverage.py)
        from mllm_audit.runs.coverage import check_claimed_coverage
        from mllm_audit.runs.record import RunRecord

        record = RunRecord.from_dict(run.results, str(run.dir / "results.json"))
        check_claimed_coverage(cmd, record.coverage, run.dir)
    if cmd == "scan":
        return rescore(run_dir, write=write)
    if cmd == "gen-scan":
        from mllm_audit.metrics.generation import gen_summary

        if not run.samples:
            raise AuditError(f"{run.dir / 'samples.jsonl'} has no samples to rescore")
        key, fresh = "summary", gen_summary(run.samples, run.results.get("attributes") or {})
    elif cmd == "fix":
        from mllm_audit.metrics.edits import aggregate

        path = run.dir / "edits.jsonl"
        if not path.is_file():
            raise AuditError(f"no edits.jsonl in {run.dir}")
        key, fresh = "metrics", {"all": aggregate(read_jsonl(path))}
    else:
        raise AuditError(f"{run.dir}: `rescore` does not know run type {cmd!r}")
    stored = run.results.get(key)
    stored_view = stored
    if cmd == "fix" and isinstance(stored, dict):
        stored_view = {"all": {k: stored.get(k) for k in fresh["all"]}}
    mismatches = diff_summaries(stored_view, fresh)
    written = False
    if write and mismatches:
        results = dict(run.results)
        results[key] = {**(stored or {}), **fresh["all"]} if cmd == "fix" else fresh
        atomic_write_json(run.dir / "results.json", results)
        written = True
    return RescoreResult(run.dir, fresh, stored, mismatches, written)


def is_editor_state(folder: Path) -> bool:
    """A train-editor output: state.safetensors + config.json (schema editor-state), no results.json."""
    return (folder / "state.safetensors").is_file() and (folder / "config.json").is_file() and not (
        folder / "results.json").exists()


def editor_state_table(folder: Path) -> Any:
    """The train-editor run's view: what was trained on what, how long, and the validation curve."""
    from mllm_audit.report.runinfo import read_state_config
    from mllm_audit.report.tables import new_table
    from mllm_audit.util.text import shown

    cfg = read_state_config(folder)
    model, suite = cfg.get("model") or {}, cfg.get("suite") or {}
    table = new_table(f"train-editor: {cfg.get('editor', '?')} ({cfg.get('scope', '?')}) on "
                      f"{model.get('name', '?')} / {suite.get('name', '?')}")
    table.add_column("field")
    table.add_column("value", overflow="fold")
    vals = cfg.get("val_history") or []
    last: Any = vals[-1] if vals else None
    rows = [
        ("untrained (negative control)", "yes" if cfg.get("untrained") else None),
        ("variant", (cfg.get("hparams") or {}).get("variant")),
        ("items (train / val)", f"{cfg.get('n_train', '?')} / {cfg.get('n_val', '?')}"),
        ("steps run", cfg.get("steps_run")),
        ("best step (val loss)", f"{cfg.get('best_step')} ({cfg['best_val_loss']:.4f})"
         if isinstance(cfg.get("best_val_loss"), (int, float)) else cfg.get("best_step")),
        ("stopped early", cfg.get("stopped_early")),
        ("training time (s)", cfg.get("train_seconds")),
        ("settings", ", ".join(f"{k}={v}" for k, v in (cfg.get("settings") or {}).items())),
        ("hparams", ", ".join(f"{k}={v}" for k, v in (cfg.get("hparams") or {}).items())),
        ("val loss (first -> last)", f"{_val(vals[0]):.4f} at step {vals[0].get('step')} -> {_val(last):.4f} at "
                                     f"step {last.get('step')}" if vals and all(isinstance(v, dict) for v in vals)
         and _val(vals[0]) is not None and _val(last) is not None else None),
    ]
    for k, v in rows:
        if v is not None:
            table.add_row(k, shown(v))
    return table


def _val(point: Any) -> float | None:
    v = point.get("val_loss") if isinstance(point, dict) else None
    return float(v) if isinstance(v, (int, float)) else None
