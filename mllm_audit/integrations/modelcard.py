"""`mllm-audit card`: a scan's and a fix run's numbers in a Hugging Face model card.

Through huggingface_hub's card API (`ModelCard`, `ModelCardData`, `EvalResult`): each measured
number becomes one model-index entry (task "image-text-to-text", dataset = the suite with its content
hash as revision and its split, metric = the metric's name and value). model-index has no field for
an interval or a run, so `metric_args` carries them (the 95 % cluster-bootstrap bounds, the run id,
the command, the tool); the dataset type `mllm-audit/<suite>` marks the entries this tool wrote.
A human section between two marker comments follows the card's own text.

Merging, never clobbering: the card's other metadata, its other eval results and its prose are kept;
entries and the section this tool wrote before are replaced (a re-run card states the latest runs).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mllm_audit.errors import AuditError

SOURCE = "mllm-audit"
START, END = "<!-- mllm-audit:start -->", "<!-- mllm-audit:end -->"
TASK = "image-text-to-text"
FIX_CARD_METRICS = ("reliability", "t_generality", "v_generality", "t_locality_top1", "m_locality_top1",
                    "mirror_amplified", "neighbour_drift")


def _run(run_dir: Path) -> dict[str, Any]:
    from mllm_audit.runs.record import read_record

    rec = read_record(run_dir)
    res = rec.to_dict()
    if res["command"] not in ("scan", "fix"):
        raise AuditError(f"{run_dir}: a {res['command']} run; card takes scan and fix runs")
    if not rec.complete:
        raise AuditError(f"{run_dir}: the run did not finish; a card states only finished runs")
    return res


def _rows(res: dict[str, Any]) -> list[tuple[str, str, float, float | None, float | None, int | None]]:
    """(group, metric, value, ci_low, ci_high, n) of one run, in the record's order."""
    out: list[tuple[str, str, float, float | None, float | None, int | None]] = []
    if res["command"] == "scan":
        for group, row in (res.get("summary") or {}).items():
            out.append((group, "pct_biased", row["pct_biased"], row.get("ci_low"), row.get("ci_high"), row.get("n")))
            out.append((group, "mean_margin", row["mean_margin"], row.get("margin_ci_low"), row.get("margin_ci_high"),
                        row.get("n")))
    else:
        metrics = res.get("metrics") or {}
        for name in FIX_CARD_METRICS:
            if isinstance(metrics.get(name), (int, float)):
                out.append(("all", name, metrics[name], metrics.get(f"{name}_ci_low"), metrics.get(f"{name}_ci_high"),
                            res.get("n_edits")))
    return out


def eval_results(res: dict[str, Any]) -> list[Any]:
    """The model-index entries of one run."""
    from huggingface_hub import EvalResult

    suite = res["suite"]
    split = (res.get("options") or {}).get("split") or "all"
    editor = (res.get("editor") or {}).get("name")
    what = "social bias (mllm-audit scan)" if res["command"] == "scan" else f"debias edit {editor} (mllm-audit fix)"
    return [EvalResult(
        task_type=TASK, task_name=what, dataset_type=f"mllm-audit/{suite['name']}", dataset_name=suite["name"],
        dataset_split=split, dataset_revision=suite.get("content_hash"),
        metric_type=metric, metric_name=f"{metric} ({group})" if group != "all" else metric,
        metric_value=float(value),
        metric_args={"group": group, "ci95_low": lo, "ci95_high": hi, "interval": "cluster bootstrap", "n": n,
                     "tool": SOURCE, "command": res["command"], "run_id": res["run_id"]},
        verified=False,
    ) for group, metric, value, lo, hi, n in _rows(res)]


def _ours(entry: Any) -> bool:
    """An eval result this tool wrote: its dataset type is `mllm-audit/<suite>`."""
    return str(entry.dataset_type or "").startswith(f"{SOURCE}/")


def _fmt(v: Any) -> str:
    """A table cell: numbers to 3 places; user text (group, model and suite names) as the gate's step
    summary writes it (one line, control characters escaped, pipes escaped), backticks made quotes."""
    from mllm_audit.gate.ci import _md_cell

    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:.3f}"
    return _md_cell(str(v)).replace("`", "'")


def section(runs: list[dict[str, Any]]) -> str:
    """The human-readable part: per run, what was measured on what, and the numbers with intervals."""
    from mllm_audit.metrics.catalog import PERCENT_METRICS
    from mllm_audit.report.numbers import fmt_metric

    lines = [START, "## Bias audit (mllm-audit)", "",
             "Measured with mllm-audit: the exact log-likelihood of each "
             "answer given the image and the prompt. `pct_biased` is the % of items where the model rates "
             "the stereotypical answer higher (50 % is chance); intervals are 95 % cluster-bootstrap.", ""]
    for res in runs:
        model, suite = res["model"], res["suite"]
        head = f"### {res['command']} `{res['run_id']}`"
        if res["command"] == "fix":
            head += f": editor `{(res.get('editor') or {}).get('name')}`, {res.get('n_edits')} edits"
        lines += [head, "",
                  f"Model `{_fmt(model.get('name'))}` (revision `{_fmt(model.get('revision'))}`, "
                  f"{_fmt(model.get('dtype'))}); suite `{_fmt(suite['name'])}` "
                  f"(sha256 `{str(suite.get('content_hash'))[:12]}`), finished "
                  f"{res.get('finished_at') or res.get('created')}.", "",
                  "| group | metric | value | 95 % interval | n |", "| --- | --- | --- | --- | --- |"]
        for g, m, v, lo, hi, n in _rows(res):
            def f(x: Any, m: str = m) -> str:  # each metric at its catalog precision and unit
                return fmt_metric(m, x) + (" %" if x is not None and m in PERCENT_METRICS else "")

            lines.append(f"| {_fmt(g)} | {m} | {f(v)} | {f(lo)} – {f(hi)} | {_fmt(n)} |")
        lines.append("")
    return "\n".join(lines + [END]) + "\n"


def _merge_text(old: str, new_section: str) -> str:
    """The card's text with this tool's section replaced (or appended)."""
    if START in old and END in old and old.index(START) < old.index(END):
        return old[: old.index(START)] + new_section.rstrip("\n") + old[old.index(END) + len(END):]
    return old.rstrip("\n") + ("\n\n" if old.strip() else "") + new_section


def _existing(path: Path, must_be_card: bool) -> Any | None:
    """The card at `path` (None when absent); with `must_be_card`, a file without card metadata is refused."""
    from huggingface_hub import ModelCard

    if not path.exists():
        return None
    if not path.is_file():
        raise AuditError(f"{path} is not a file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise AuditError(f"{path} is not UTF-8 text, so not a model card; nothing written") from None
    if must_be_card and not text.startswith("---"):
        raise AuditError(f"{path} exists and is not a model card (no YAML metadata block); nothing written "
                         f"(--update MODEL_FOLDER adds the audit to a folder's README.md)")
    try:
        return ModelCard(text, ignore_metadata_errors=False)
    except Exception as e:  # huggingface_hub raises ValueError / yaml errors on a malformed header
        raise AuditError(f"{path}: its model card metadata does not parse ({str(e).splitlines()[0][:120]})") from None


def card(runs: list[Path], output: Path | None = None, update: Path | None = None) -> dict[str, Any]:
    """Write the runs' audit into a model card: `output` (a new file, or an existing model card merged
    into) or `update` (a model folder whose README.md is created or merged into). Atomic."""
    from huggingface_hub import ModelCard, ModelCardData

    from mllm_audit.util import outputs
    from mllm_audit.util.faults import named_faults
    from mllm_audit.util.files import atomic_write_text

    if (output is None) == (update is None):
        raise AuditError("give exactly one of --output FILE and --update MODEL_FOLDER")
    if not runs:
        raise AuditError("give at least one run folder (a scan or a fix)")
    if update is not None and not Path(update).is_dir():
        raise AuditError(f"--update {update}: not a folder")
    path = Path(output) if output is not None else Path(update) / "README.md"  # type: ignore[arg-type]
    if output is not None:  # --update writes README.md, which is outside a model's identity (util/identity)
        outputs.refuse_inside(path, "--output")
    old = _existing(path, must_be_card=output is not None)  # the target is checked before any run is read
    recs = [_run(Path(r)) for r in runs]
    data = old.data if old is not None else ModelCardData()
    kept = [e for e in (data.eval_results or []) if not _ours(e)]
    ours = [e for res in recs for e in eval_results(res)]
    data.eval_results = kept + ours
    data.model_name = data.model_name or recs[0]["model"].get("name")
    data.tags = list(dict.fromkeys([*(data.tags or []), SOURCE, "bias-audit"]))
    body = old.text if old is not None else f"# {data.model_name}\n"
    new = ModelCard(f"---\n{data.to_yaml()}\n---\n{_merge_text(body, section(recs))}")
    with named_faults(path, "the card was left as it was"):
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, str(new))
    return {"path": str(path), "eval_results": len(ours), "kept_eval_results": len(kept), "runs": len(recs)}
