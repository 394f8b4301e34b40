# Over 350 lines: one self-contained HTML document: every section's markup and plots.
"""One self-contained HTML file per run: tables plus plots embedded as base64 PNG.

The file has no external references (no scripts, fonts or stylesheets), so it can be attached to a
CI job, mailed, or archived next to the run and still open years later. Plots are drawn with the
matplotlib Agg canvas directly (no pyplot state, no display needed).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mllm_audit.errors import AuditError
from mllm_audit.metrics.bias import ALL, group_label
from mllm_audit.report.htmlkit import _esc, _figure, _is_num, _mpl, _num, _pct, _png, _table

Series = tuple[str, list[str], list[float]]  # (title, names, values) of one disparity panel
MAX_HIST_GROUPS = 12
PERSON_KEY = "favoured_logodds"  # per-person mean log-odds in a disparity.py group block
MAX_BARS = 40
MAX_DISPARITY_PANELS = 4
SMALL_CLUSTERS = 5  # fewer clusters than this in a group: its interval gets a small-sample note
_LABEL_KEYS = ("person", "name", "label", "id", "item_id", "pair", "group")
_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;max-width:1100px;
color:#222;padding:0 1em}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left}
td.num{text-align:right;font-variant-numeric:tabular-nums}th{background:#f3f3f3}
.warn{background:#fff3cd;border:1px solid #e0c060;padding:.6em}.note{color:#666}
img{max-width:100%;height:auto;display:block;margin:.5em 0}pre{background:#f7f7f7;padding:.6em;overflow:auto}
"""


@dataclass
class HtmlReport:
    """Where the report went and what it holds (tests count the images)."""

    path: Path
    n_images: int
    sections: list[str] = field(default_factory=list)


# ------------------------------------------------------------------------------------------ plots


def interval_colour(lo_pct: float, hi_pct: float) -> str:
    return "#c0504d" if lo_pct > 50 else "#8064a2" if hi_pct < 50 else "#888888"  # below 50 %: reversed


def plot_pct_biased(summary: dict[str, Any]) -> Any:
    """Horizontal bars of % biased per row with the cluster-bootstrap interval; 50% = no preference."""
    labels = [k for k in summary if k != ALL] + ([ALL] if ALL in summary else [])
    pct = [float(summary[k]["pct_biased"]) for k in labels]  # percent, as stored
    lo = [float(summary[k].get("ci_low", summary[k]["pct_biased"])) for k in labels]
    hi = [float(summary[k].get("ci_high", summary[k]["pct_biased"])) for k in labels]
    fig = _figure(7.5, 0.45 * len(labels) + 1.4)
    ax = fig.add_subplot()
    y = list(range(len(labels)))[::-1]
    # The terminal's rule: red when the whole interval lies above 50 %, purple (reversed) below, grey otherwise.
    colors = [interval_colour(a, b) for a, b in zip(lo, hi, strict=True)]
    err = [[max(0.0, p - a) for p, a in zip(pct, lo, strict=True)],
           [max(0.0, b - p) for p, b in zip(pct, hi, strict=True)]]
    ax.barh(y, pct, color=colors, xerr=err, capsize=3, ecolor="#222222")
    ax.axvline(50, color="#888888", linestyle="--", linewidth=1)
    from matplotlib.patches import Patch

    ax.legend(handles=[Patch(color="#c0504d", label="interval above 50 %: biased"),
                       Patch(color="#70ad47", label="interval below 50 %: anti-stereotypical"),
                       Patch(color="#888888", label="interval includes 50 %"),
                       ax.lines[-1]], labels=["interval above 50 %: biased", "interval below 50 %: anti-stereotypical",
                                               "interval includes 50 %", "50 %: no preference"],
              loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=2, fontsize=8, frameon=False)
    ax.set_yticks(y, [_mpl(f"{k} (n={summary[k].get('n', '?')})") for k in labels])
    ax.set_xlim(0, 100)
    ax.set_xlabel("% of items where the stereotypical answer is more likely (95% cluster-bootstrap CI)")
    ax.set_title("% biased per group")
    return fig


def plot_margin_histograms(samples: list[dict[str, Any]], group_by: str | None) -> Any:
    """One histogram of margins per group on a shared x axis; right of 0 means biased."""
    groups: dict[str, list[float]] = {}
    for s in samples:
        groups.setdefault(group_label(s, group_by), []).append(float(s["logp_more"]) - float(s["logp_less"]))
    labels = list(groups)[:MAX_HIST_GROUPS]
    allm = [m for lab in labels for m in groups[lab]]
    lo, hi = min(allm), max(allm)
    if lo == hi:
        lo, hi = lo - 1.0, hi + 1.0
    bins = [lo + (hi - lo) * i / 30 for i in range(31)]
    ncol = 3 if len(labels) > 4 else min(2, len(labels))
    nrow = math.ceil(len(labels) / ncol)
    fig = _figure(3.6 * ncol, 2.4 * nrow + 0.6)
    axes = fig.subplots(nrow, ncol, squeeze=False, sharex=True)
    for i, lab in enumerate(labels):
        ax = axes[i // ncol][i % ncol]
        ax.hist(groups[lab], bins=bins, color="#4f81bd")
        ax.axvline(0, color="#c0504d", linewidth=1)
        ax.set_title(_mpl(f"{lab} (n={len(groups[lab])})"), fontsize=9)
    for j in range(len(labels), nrow * ncol):
        axes[j // ncol][j % ncol].set_visible(False)
    fig.supxlabel("margin = log p(stereotypical) - log p(other), nats (right of the red line: biased)")
    fig.suptitle("Margin distribution per group")
    return fig


def edit_pairs(edits: list[dict[str, Any]]) -> list[tuple[str, float, float]]:
    """(item_id, margin before, margin after) on the edited prompt, for records that carry both.

    `fix` writes the edited prompt's margin under `reliability` in `pre`/`post` (the quantity the
    reliability metric thresholds at 0)."""
    out: list[tuple[str, float, float]] = []
    for e in edits:
        pre, post = e.get("pre"), e.get("post")
        if not (isinstance(pre, dict) and isinstance(post, dict)):
            continue
        a, b = pre.get("reliability"), post.get("reliability")
        if _is_num(a) and _is_num(b):
            out.append((str(e.get("item_id", len(out))), float(a), float(b)))
    return out


def plot_before_after(pairs: list[tuple[str, float, float]]) -> Any:
    """Per item margin before vs after the edit: below the diagonal moved toward less bias."""
    pre = [p[1] for p in pairs]
    post = [p[2] for p in pairs]
    fig = _figure(11, 4.4)
    ax1, ax2 = fig.subplots(1, 2)
    lo, hi = min(pre + post), max(pre + post)
    pad = 0.05 * (hi - lo or 1.0)
    colors = ["#2e8b57" if b <= 0 < a else "#c0504d" if a <= 0 < b else "#4f81bd"
              for a, b in zip(pre, post, strict=True)]
    ax1.scatter(pre, post, c=colors, s=14)
    ax1.plot([lo - pad, hi + pad], [lo - pad, hi + pad], color="#888888", linestyle="--", linewidth=1)
    ax1.axhline(0, color="#bbbbbb", linewidth=0.8)
    ax1.axvline(0, color="#bbbbbb", linewidth=0.8)
    ax1.set_xlabel("margin before edit")
    ax1.set_ylabel("margin after edit")
    ax1.set_title("Per item: before vs after (green: became unbiased)")
    order = sorted(range(len(pairs)), key=lambda i: pre[i])
    for rank, i in enumerate(order):
        ax2.plot([rank, rank], [pre[i], post[i]], color=colors[i], linewidth=1)
    ax2.scatter(range(len(order)), [pre[i] for i in order], s=8, color="#888888", label="before")
    ax2.scatter(range(len(order)), [post[i] for i in order], s=8, color="#222222", label="after")
    ax2.axhline(0, color="#c0504d", linewidth=0.8)
    ax2.set_xlabel("items, sorted by margin before")
    ax2.set_ylabel("margin")
    ax2.legend(loc="best", fontsize=8)
    ax2.set_title("Per item change")
    return fig


def disparity_series(obj: Any, prefix: str = "") -> list[Series]:
    """Named numeric series found anywhere in a `disparity` block, without assuming its layout.

    Recognised: a mapping of >= 3 names to numbers; a list of records with a name-like field and a
    numeric field (a `log_odds`-like field preferred); a mapping of names to such records.
    """
    out: list[Series] = []
    title = prefix or "disparity"
    if isinstance(obj, dict) and obj:
        if len(obj) >= 3 and all(_is_num(v) for v in obj.values()):
            return [(title, [str(k) for k in obj], [float(v) for v in obj.values()])]
        if len(obj) >= 2 and all(isinstance(v, dict) for v in obj.values()):
            recs = [{"__label": str(k), **v} for k, v in obj.items()]
            found = _records_series(recs, title, "__label")
            if found:
                return [found]
        for k, v in obj.items():
            out += disparity_series(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(obj, list) and obj and all(isinstance(x, dict) for x in obj):
        key = next((k for k in _LABEL_KEYS if all(isinstance(r.get(k), (str, int)) for r in obj)), None)
        if key is not None:
            found = _records_series(obj, title, key)
            if found:
                out.append(found)
    return out


def _records_series(recs: list[dict[str, Any]], title: str, label_key: str) -> Series | None:
    numeric = [k for k in recs[0] if k != label_key and all(_is_num(r.get(k)) for r in recs)]
    if not numeric:
        return None
    pick = next((k for k in numeric if "log_odds" in k or "logodds" in k), numeric[0])
    return (f"{title}: {pick}", [str(r[label_key]) for r in recs], [float(r[pick]) for r in recs])


def pairs_groups(disparity: Any) -> dict[str, dict[str, Any]]:
    """The per-section blocks of a `disparity.py` summary that carry per-person log-odds, else {}."""
    groups = disparity.get("groups") if isinstance(disparity, dict) else None
    if not isinstance(groups, dict):
        return {}
    ok = {str(k): g for k, g in groups.items() if isinstance(g, dict)}
    return {k: g for k, g in ok.items() if isinstance(g.get(PERSON_KEY), dict)}


def plot_pairs_disparity(groups: dict[str, dict[str, Any]]) -> Any:
    """Left: mean favoured-answer log-odds per person and section. Right: gaps with scenario CIs."""
    labels = list(groups)
    persons = list(dict.fromkeys(p for g in groups.values() for p in g[PERSON_KEY]))
    fig = _figure(12, 0.5 * max(len(labels), 3) + 2.6)
    ax1, ax2 = fig.subplots(1, 2)
    width = 0.8 / max(1, len(persons))
    palette = ["#4f81bd", "#9bbb59", "#c0504d", "#8064a2", "#f79646", "#4bacc6"]
    for j, person in enumerate(persons):
        vals = [groups[lab][PERSON_KEY].get(person) for lab in labels]
        ys = [i + (j - (len(persons) - 1) / 2) * width for i in range(len(labels))]
        ax1.barh(ys, [v if _is_num(v) else math.nan for v in vals], height=width,
                 color=palette[j % len(palette)], label=_mpl(person))
    ax1.set_yticks(range(len(labels)), [_mpl(x) for x in labels])
    ax1.invert_yaxis()
    ax1.axvline(0, color="#888888", linewidth=0.8)
    ax1.set_xlabel("mean log-odds of the favoured answer")
    ax1.set_title("Per person")
    ax1.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=4)
    gap_names = ("gender_gap", "race_gap", "spread")
    metrics = [m for m in gap_names if all(isinstance(g.get(m), dict) for g in groups.values())]
    for j, metric in enumerate(metrics):
        for i, lab in enumerate(labels):
            cell = groups[lab][metric]
            mean, lo, hi = cell.get("mean"), cell.get("ci_low"), cell.get("ci_high")
            if not _is_num(mean):
                continue
            y = i + (j - (len(metrics) - 1) / 2) * 0.25
            xerr = [[mean - lo], [hi - mean]] if _is_num(lo) and _is_num(hi) else None
            ax2.errorbar([mean], [y], xerr=xerr, fmt="o", color=palette[j], capsize=3,
                         label=metric if i == 0 else None)
    ax2.set_yticks(range(len(labels)), [_mpl(x) for x in labels])
    ax2.invert_yaxis()
    ax2.axvline(0, color="#888888", linewidth=0.8)
    ax2.set_xlabel("log-odds difference (95% CI over scenarios)")
    ax2.set_title("Gaps: gender (men - women), race (white - Black), spread")
    if metrics:
        ax2.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=3)
    fig.suptitle("Parallel-image disparity")
    return fig


def plot_disparity(series: list[Series]) -> Any:
    """Bars per person (or pair), sorted; the largest |value| are kept when there are many."""
    series = series[:MAX_DISPARITY_PANELS]
    heights = []
    for _, labels, _ in series:
        heights.append(0.22 * min(len(labels), MAX_BARS) + 1.0)
    fig = _figure(8, sum(heights) + 0.4)
    axes = fig.subplots(len(series), 1, squeeze=False, gridspec_kw={"height_ratios": heights})
    for ax, (title, labels, values) in zip(axes[:, 0], series, strict=True):
        keep = sorted(range(len(values)), key=lambda i: -abs(values[i]))[:MAX_BARS]
        keep.sort(key=lambda i: values[i])
        ax.barh(range(len(keep)), [values[i] for i in keep],
                color=["#c0504d" if values[i] > 0 else "#4f81bd" for i in keep])
        ax.set_yticks(range(len(keep)), [_mpl(labels[i]) for i in keep], fontsize=7)
        ax.axvline(0, color="#888888", linewidth=0.8)
        extra = f" (top {len(keep)} of {len(values)} by |value|)" if len(keep) < len(values) else ""
        ax.set_title(_mpl(title + extra), fontsize=9)
    fig.suptitle("Parallel-image disparity")
    return fig


# ----------------------------------------------------------------------------------------- report


def _gen_section(res: dict[str, Any], samples: list[dict[str, Any]]) -> tuple[str, int]:
    """gen-scan: mean normalised bias per attribute (0 = balanced, 1 = one class only) with intervals
    and the balanced model's floor, per group of prompts; then each prompt's bias, plotted, and its counts."""
    from mllm_audit.metrics.generation import prompt_metrics

    summary = res.get("summary") or {}
    first: Any = next(iter(summary.values()), {})
    attrs = [a for a, v in first.items() if isinstance(v, dict)]  # gender, race, gender_x_race
    rows = []
    for label, row in summary.items():
        cells = [_esc(label), _num(row.get("n_prompts"))]
        for a in attrs:
            m = row.get(a) or {}
            cells.append(f"{_num(m.get('normalised'))} [{_num(m.get('ci_low'))}, {_num(m.get('ci_high'))}]"
                         f" (floor {_num(m.get('floor'))})")
        cells.append(_num(row.get("understanding_skew")))
        rows.append(cells)
    head = ["group", "prompts", *[f"{a} (normalised)" for a in attrs], "understanding skew"]
    attributes = res.get("attributes") or {}
    per_prompt, bars = [], []
    for s_ in samples:
        m = prompt_metrics(s_, attributes) if attributes else {}
        cells = [_esc(s_.get("prompt_id")), _num(s_.get("n_person"))]
        for a in attrs:
            r = m.get(a) or {}
            counts = ", ".join(f"{k} {v}" for k, v in (s_.get("counts") or {}).get(a, {}).items())
            cells.append(f"{_num(r.get('normalised'))}<br><small>{_esc(counts)}</small>")
        per_prompt.append(cells)
        g = m.get("gender") or {}
        if _is_num(g.get("normalised")):
            bars.append((str(s_.get("prompt_id")), g["normalised"], g.get("ci_low"), g.get("ci_high")))
    floor = (first.get("gender") or {}).get("floor")
    html = ("<h2>Generation bias</h2><p>Mean over prompts of the normalised pairwise gap between group "
            "frequencies (0 balanced, 1 a single group), 95 % bootstrap intervals; floor: what a balanced "
            "model scores at this many images.</p>" + _table(head, rows))
    n = 0
    if bars:
        html += _png(plot_prompt_bias(bars, floor))
        n = 1
    html += "<h3>Per prompt</h3>" + _table(["prompt", "people", *attrs], per_prompt, numeric_from=1)
    return html, n


def plot_prompt_bias(bars: list[tuple[str, float, Any, Any]], floor: Any) -> Any:
    """Per prompt, normalised gender bias with its 95 % interval; the balanced floor as a dashed line."""
    bars = bars[:MAX_BARS]
    fig = _figure(8, 0.3 * len(bars) + 1.4)
    ax = fig.add_subplot()
    y = list(range(len(bars)))[::-1]
    vals = [b[1] for b in bars]
    err = [[max(0.0, v - (lo if _is_num(lo) else v)) for v, (_, _, lo, _) in zip(vals, bars, strict=True)],
           [max(0.0, (hi if _is_num(hi) else v) - v) for v, (_, _, _, hi) in zip(vals, bars, strict=True)]]
    ax.barh(y, vals, xerr=err, color="#4f81bd", capsize=3, ecolor="#222222")
    if _is_num(floor):
        ax.axvline(float(floor), color="#c0504d", linestyle="--", linewidth=1, label=f"balanced floor {floor:.2f}")
        ax.legend(loc="lower right", fontsize=8)
    ax.set_yticks(y, [_mpl(b[0]) for b in bars], fontsize=8)
    ax.set_xlim(0, 1)
    ax.set_xlabel("normalised gender bias per prompt (0 balanced, 1 one group), 95 % interval")
    return fig


def build_html(run_dir: Path) -> tuple[str, int, list[str]]:
    """The report's HTML text, how many images it embeds, and the section titles."""
    from mllm_audit.report.compare import load_run
    from mllm_audit.report.htmlruns import editor_state_page, locate_section, unified_section, what_ran_table
    from mllm_audit.report.runinfo import run_kind, run_title
    from mllm_audit.report.views import is_editor_state
    from mllm_audit.util.files import read_jsonl

    if is_editor_state(Path(run_dir)):  # train-editor writes a state folder, not a run folder
        body, n_state, state_sections, state_title = editor_state_page(Path(run_dir))
        return _document(state_title, [f"<h1>{_esc(state_title)}</h1>", body]), n_state, state_sections
    run = load_run(run_dir, need_samples=False)
    res = run.results
    kind = run_kind(res)
    model = res.get("model") or {}
    suite = res.get("suite") or {}
    title = f"mllm-audit {run_title(res)}"
    parts = [f"<h1>{_esc(title)}</h1>", what_ran_table(res)]
    sections: list[str] = []  # "What ran" heads every page; sections are what the run type adds
    n_images = 0
    if not run.complete:
        parts.append('<p class="warn">This run is <b>incomplete</b> (results.json says complete: false); '
                     "numbers cover only the items scored so far.</p>")
    timings = res.get("timings") or {}
    info = [
        ["run id", _esc(res.get("run_id", "?"))],
        ["folder", _esc(run.dir)],
        ["model", _esc(_short_identity(model, ("name", "family", "dtype", "quantize", "revision", "templates_from")))],
        ["suite", _esc(_short_identity(suite, ("name", "kind", "n_items", "n_prompts", "split", "content_hash")))],
        ["seed", _esc(res.get("seed", "?"))],
        ["versions", _esc(", ".join(f"{k} {v}" for k, v in (res.get("versions") or {}).items()))],
        ["timings (s)", _esc(", ".join(f"{k} {_num(v, '.1f')}" for k, v in timings.items()))],
    ]
    parts.append("<h2>Run</h2>" + _table(None, info, numeric_from=99))
    full = json.dumps({"model": model, "suite": suite}, indent=1, default=str)
    parts.append(f"<details><summary>full identity (every file's sha256)</summary><pre>{_esc(full)}</pre></details>")
    sections.append("Run")

    summary = res.get("summary")
    if kind == "fix-unified":
        block, k = unified_section(res)
        parts.append(block)
        n_images += k
        sections.append("Generation bias per stage")
        summary = None
    elif kind == "locate":
        parts.append(locate_section(res))
        sections += ["Tokenizer", "Language model", "Verdict"]
        summary = None
    elif res.get("command") == "study":  # a study run holds its own table (studies.py), nothing else
        from mllm_audit.report.studies import html_section

        block, k = html_section(res)
        parts.append(block)
        n_images += k
        sections.append(f"Study: {res.get('study')}")
    elif res.get("command") == "gen-scan":
        from mllm_audit.report.gallery import contact_sheet

        block, k = _gen_section(res, run.samples)
        parts.append(block)
        sheet = contact_sheet(run.dir, run.samples)
        if sheet:
            parts.append(sheet)
            sections.append("Generated images")
        n_images += k
        sections.append("Generation bias")
        summary = None
    elif isinstance(summary, dict) and summary:
        from mllm_audit.report.gallery import scan_gallery

        rows, small = [], []
        for lab, r in summary.items():
            rows.append([_esc(lab), _num(r.get("n")), _num(r.get("n_clusters")), _pct(r.get("pct_biased")),
                         f"{_pct(r.get('ci_low'))} to {_pct(r.get('ci_high'))}", _num(r.get("mean_margin")),
                         f"{_num(r.get('margin_ci_low'))} to {_num(r.get('margin_ci_high'))}"])
            if isinstance(r.get("n_clusters"), int) and r["n_clusters"] < SMALL_CLUSTERS:
                small.append(f"{lab} ({r['n_clusters']} cluster{'s' if r['n_clusters'] != 1 else ''})")
        parts.append("<h2>% biased per group</h2>")
        parts.append("<p>% biased: share of items where the model gives the stereotypical answer (y_more) a higher "
                     "probability than the other (y_less); 50 % is no preference. Intervals are 95 % cluster "
                     "bootstrap (items sharing an image or scenario resampled together). Margin = log p(y_more) - "
                     "log p(y_less), in nats.</p>")
        parts.append(_table(["group", "items", "clusters", "% biased", "% biased 95 % interval",
                             "mean margin (nats)", "mean margin 95 % interval (nats)"], rows))
        if small:
            parts.append(f'<p class="note">Small samples: {_esc(", ".join(small))}. With fewer than '
                         f"{SMALL_CLUSTERS} clusters the bootstrap interval is unreliable; with one it has zero "
                         "width, which means no information, not certainty.</p>")
        parts.append(_png(plot_pct_biased(summary)))
        n_images += 1
        sections.append("% biased per group")
        if isinstance(res.get("greedy"), dict):
            from mllm_audit.report.greedy import greedy_html

            parts.append(greedy_html(res["greedy"], summary))
            sections.append("What the model would say")
        if run.samples:
            gallery = scan_gallery(res, run.samples, run.group_by)
            if gallery:
                parts.append(gallery)
                sections.append("Example items")
    elif res.get("command", "scan") == "scan":
        parts.append('<p class="note">results.json has no summary.</p>')

    if kind in ("gen-scan", "study", "fix-unified", "locate") or (kind == "fix" and not run.samples):
        pass  # no likelihood margins of their own: the sections above and below are the run's result
    elif run.samples:
        parts.append("<h2>Margins</h2>")
        sections.append("Margins")
        parts.append(_png(plot_margin_histograms(run.samples, run.group_by)))
        n_images += 1
    else:
        parts.append("<h2>Margins</h2>")
        sections.append("Margins")
        parts.append('<p class="note">No samples.jsonl: margin histograms skipped.</p>')

    fix_metrics = res.get("metrics")
    edits_path = run.dir / "edits.jsonl"
    if isinstance(fix_metrics, dict) or edits_path.is_file():
        from mllm_audit.report.htmlruns import fix_headline_html, plot_sequential_curve, saved_model_html

        parts.append("<h2>Edit</h2>")
        sections.append("Edit")
        edit_recs = read_jsonl(edits_path) if edits_path.is_file() else []
        parts.append(fix_headline_html(res, edit_recs))
        saved = res.get("saved_model") or {}
        if isinstance(fix_metrics, dict) and fix_metrics:
            parts.append(_fix_metrics_table(fix_metrics, res.get("base_metrics") or {}, saved.get("metrics")))
        if saved:
            parts.append(saved_model_html(saved, fix_metrics or {}))
        if res.get("sequential_curve"):
            parts.append("<h3>Sequential curve</h3>" + _png(plot_sequential_curve(res["sequential_curve"])))
            n_images += 1
        pairs = edit_pairs(edit_recs)
        if pairs:
            flipped = sum(1 for _, a, b in pairs if a > 0 >= b)
            worse = sum(1 for _, a, b in pairs if a <= 0 < b)
            parts.append(f"<p>{len(pairs)} items with margins before and after; {flipped} went from biased "
                         f"to unbiased, {worse} from unbiased to biased.</p>")
            parts.append(_png(plot_before_after(pairs)))
            n_images += 1
        else:
            parts.append('<p class="note">No per-item before/after margins (edits.jsonl).</p>')

    disparity = res.get("disparity")
    if disparity is not None:
        parts.append("<h2>Parallel-image disparity</h2>")
        sections.append("Parallel-image disparity")
        pairs = pairs_groups(disparity)
        series = [] if pairs else disparity_series(disparity)
        if pairs:
            parts.append(_png(plot_pairs_disparity(pairs)))
            n_images += 1
        elif series:
            parts.append(_png(plot_disparity(series)))
            n_images += 1
        else:
            parts.append('<p class="note">No per-person series recognised; raw values below.</p>')
        raw = json.dumps(disparity, indent=1)
        if len(raw) > 20000:
            raw = raw[:20000] + "\n..."
        parts.append(f"<details><summary>raw disparity block</summary><pre>{_esc(raw)}</pre></details>")

    return _document(title, parts), n_images, sections


def _document(title: str, parts: list[str]) -> str:
    return ('<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>{_esc(title)}</title><style>{_CSS}</style></head><body>\n" + "\n".join(parts)
            + "\n</body></html>\n")


def write_html_report(run_dir: Path, html_path: Path, overwrite: bool = False, *,
                      created: tuple[Path, ...] = ()) -> HtmlReport:
    """Write the self-contained report for `run_dir` to `html_path` (atomically, through the output
    guard util/outputs.py: an existing file is replaced only if it is an earlier report and `overwrite`;
    the report may go into the run folder it shows, or one in `created`, and no other run's folder)."""
    import importlib.util

    from mllm_audit.util import outputs

    if not Path(run_dir).is_dir():
        raise AuditError(f"run folder not found: {run_dir}")
    out = outputs.check_file(Path(html_path), "html-report", "--html", overwrite, (*created, Path(run_dir)))
    if importlib.util.find_spec("matplotlib") is None:
        raise AuditError('report --html needs matplotlib: pip install "mllm-audit[report]"')
    doc, n_images, sections = build_html(Path(run_dir))
    doc = doc.replace("<!DOCTYPE html>\n", "<!DOCTYPE html>\n" + outputs.marker_line("html-report", "<!--") + "\n", 1)
    try:
        outputs.write_text(out, doc, "html-report")
    except OSError as e:
        raise AuditError(f"cannot write report {out}: {e.strerror}") from None
    return HtmlReport(out, n_images, sections)


def _short_identity(block: dict[str, Any], keys: tuple[str, ...]) -> str:
    """The identity fields a reader compares at a glance; hashes cut to 12 characters (full ones below)."""
    out = []
    for k in keys:
        v = block.get(k)
        if v is None or v == "":
            continue
        text = str(v)
        if k in ("revision", "content_hash"):
            text = text.removeprefix("sha256:")[:12]
        out.append(f"{k}={text}")
    return ", ".join(out)


def _fix_metrics_table(metrics: dict[str, Any], base: dict[str, Any], saved: dict[str, Any] | None = None) -> str:
    """Every metric the fix run wrote, once: unedited, edited, the change coloured by the metric's
    declared direction (metrics/catalog.py), the edited value's 95 % interval, and with --save the
    saved model's own value."""
    from mllm_audit.metrics.catalog import FIX_EXTRA_METRICS, FIX_RATE_METRICS, METRIC_INFO, better
    from mllm_audit.report.numbers import fmt_metric

    known = [k for k in (*FIX_RATE_METRICS, *FIX_EXTRA_METRICS) if k in metrics or k in base]
    others = [k for k in metrics if k not in known and not k.endswith(("_ci_low", "_ci_high"))]
    rows = []
    for k in (*known, *others):
        e, b = metrics.get(k), base.get(k)
        change, colour = "", ""
        if _is_num(e) and _is_num(b):
            d = float(e) - float(b)
            good = better(k, d, float(b))
            colour = "" if good is None or abs(d) < 1e-9 else ("#2e7d32" if good else "#c62828")
            signed = fmt_metric(k, d, signed=True)
            change = f'<span style="color:{colour}">{signed}</span>' if colour else signed
        lo, hi = metrics.get(f"{k}_ci_low"), metrics.get(f"{k}_ci_high")
        ci = f"[{fmt_metric(k, lo)}, {fmt_metric(k, hi)}]" if _is_num(lo) and _is_num(hi) else ""
        info = METRIC_INFO.get(k)
        way = "" if info is None or info.higher_is_better is None else ("higher" if info.higher_is_better else "lower")
        row = [_esc(k), "" if b is None else fmt_metric(k, b), fmt_metric(k, e), change, ci, way,
               _esc(info.unit if info is not None else "")]
        if saved is not None:
            row.append(fmt_metric(k, saved.get(k)))
        rows.append(row)
    head = ["metric", "unedited", "edited", "change", "95% interval", "better", "unit"]
    return _table(head + (["saved model"] if saved is not None else []), rows)
