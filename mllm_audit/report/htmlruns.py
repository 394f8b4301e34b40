"""HTML sections of the run types beyond scan / fix / gen-scan: what ran (every page's header), the
stages of `fix --editor sft|bpo`, `locate`'s probes and verdict, and a trained editor state."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mllm_audit.report.htmlkit import _esc, _figure, _is_num, _num, _png, _table


def what_ran_table(results: dict[str, Any]) -> str:
    """The header every page opens with: run type, model, suite and (for edits) editor, mode, edits, state,
    objective, so two pages that differ only in editor or mode never look alike."""
    from mllm_audit.report.runinfo import what_ran

    rows = [[_esc(k), _esc(v)] for k, v in what_ran(results)]
    return "<h2>What ran</h2>" + _table(None, rows, numeric_from=99)


def unified_section(res: dict[str, Any]) -> tuple[str, int]:
    """fix --editor sft|bpo: per stage, normalised generation bias (with its 95 % interval and the floor a
    balanced model reaches) on held-out test and control prompts, fidelity, adherence and understanding."""
    stages = res.get("stages") or {}
    if not stages:
        return '<p class="note">results.json has no stages.</p>', 0
    first = next(iter(stages.values()))
    groups = [g for g in first.get("summary", {}) if g != "all"] or ["all"]
    attrs = [a for a in ("gender", "race") if a in ((res.get("classifier") or {}).get("attributes") or {})]
    head = ["stage"]
    for g in groups:
        head += [f"{g} prompts: {a} normalised bias [95 % interval] (floor)" for a in attrs]
    head += ["fidelity (0..1)", "adherence per attribute (0..1)", "understanding p(unknown) / skew", "pair gap"]
    rows, bars = [], []
    for name, m in stages.items():
        cells = [_esc(name)]
        for g in groups:
            for a in attrs:
                r = (m.get("summary", {}).get(g) or {}).get(a) or {}
                cells.append(f"{_num(r.get('normalised'))} [{_num(r.get('ci_low'))} to {_num(r.get('ci_high'))}]"
                             f" ({_num(r.get('floor'))})")
                if _is_num(r.get("normalised")):
                    bars.append((f"{name}: {g} {a}", float(r["normalised"]), r.get("floor")))
        fid = m.get("fidelity") if m.get("fidelity") is not None else m.get("clip_score")
        cells.append(_num(fid))
        cells.append(_esc(", ".join(f"{a} {_num(v)}" for a, v in (m.get("adherence") or {}).items())))
        s_all = (m.get("summary") or {}).get("all") or {}
        cells.append(f"{_num(s_all.get('understanding_p_unknown'))} / {_num(s_all.get('understanding_skew'))}")
        cells.append(_num(m.get("pair_gap"), ".4f"))
        rows.append(cells)
    html = ("<h2>Generation bias per stage</h2><p>Normalised bias: the mean normalised pairwise gap between group "
            "frequencies over prompts (0 balanced, 1 a single group). Held-out <b>test</b> prompts measure the "
            "edit; <b>control</b> prompts, never trained on, show what else moved. Floor: what a perfectly "
            "balanced model scores at this many images.</p>" + _table(head, rows))
    n = 0
    if bars:
        fig = _figure(8, 0.3 * len(bars) + 1.4)
        ax = fig.add_subplot()
        y = list(range(len(bars)))[::-1]
        ax.barh(y, [b[1] for b in bars], color="#4f81bd", label="normalised bias")
        floors = [(yy, b[2]) for yy, b in zip(y, bars, strict=True) if _is_num(b[2])]
        if floors:
            ax.scatter([f for _, f in floors], [yy for yy, _ in floors], marker="|", s=200, color="#c0504d",
                       label="balanced floor")
        ax.set_yticks(y, [b[0] for b in bars], fontsize=8)
        ax.set_xlim(0, 1)
        ax.set_xlabel("normalised bias (0 balanced, 1 one group only)")
        ax.legend(loc="lower right", fontsize=8)
        html += _png(fig)
        n = 1
    return html, n


def locate_section(res: dict[str, Any]) -> str:
    """locate: the tokenizer tests (linear probes, VQ round trip) and the LM test, then the verdict."""
    html = ""
    tok = res.get("tokenizer")
    if tok:
        rows = []
        for a, pr in (tok.get("probe") or {}).items():
            rt = (tok.get("roundtrip") or {}).get(a) or {}
            kept = ", ".join(f"{c} {_num(v.get('kept'), '.2f')}" for c, v in (rt.get("per_group") or {}).items())
            rows.append([_esc(a), f"{_num(pr['vision_tower']['accuracy'])} / {_num(pr['vision_tower']['macro_f1'])}",
                         f"{_num(pr['vq_encoder']['accuracy'])} / {_num(pr['vq_encoder']['macro_f1'])}",
                         _num(pr.get("chance"), ".2f"), _esc(kept), _num(rt.get("parity"), ".2f")])
        html += (f"<h2>Tokenizer ({_esc(tok.get('n_images'))} labelled images)</h2><p>Linear probes read the "
                 "attribute from the vision tower and from the VQ encoder (accuracy / macro F1, cross-validated; "
                 "chance = 1/K). Round trip: the share of images whose classified attribute survives VQ encode + "
                 "decode, per group; parity = lowest / highest.</p>"
                 + _table(["attribute", "probe: vision tower acc / F1", "probe: VQ encoder acc / F1", "chance",
                           "round trip kept per group", "parity"], rows))
    rows = []
    for a, r in (res.get("language_model") or {}).items():
        rate = (f"{_num(r.get('hit_rate'))} [{_num(r.get('ci_low'))} to {_num(r.get('ci_high'))}]"
                if r.get("hit_rate") is not None else "—")
        rows.append([_esc(a), f"{_esc(r.get('hits'))} / {_esc(r.get('n'))}", rate, _num(r.get("chance"), ".2f"),
                     _esc(r.get("skipped"))])
    html += ("<h2>Language model</h2><p>Hit: the image-token histogram of a neutral prompt is closer (Jensen-Shannon "
             "divergence) to the prompt augmented with its majority group than to the other groups'. Hit rate "
             "with its 95 % Wilson interval; skipped: prompts whose majority share is too close to chance.</p>"
             + _table(["attribute", "hits / prompts", "hit rate [95 % Wilson interval]", "chance",
                       "skipped (ambiguous)"], rows))
    html += (f"<h2>Verdict</h2><p><b>{_esc(res.get('verdict'))}</b> ({_esc(res.get('verdict_reason'))})</p>")
    return html


def editor_state_page(folder: Path) -> tuple[str, int, list[str], str]:
    """train-editor: the state's settings and its training curve; (body, images, sections, title)."""
    from mllm_audit.report.runinfo import read_state_config, run_title

    cfg = read_state_config(folder)
    body = [what_ran_table(cfg)]
    rows = [[_esc(k), _esc(v)] for k, v in (
        ("items (train / val)", f"{cfg.get('n_train', '?')} / {cfg.get('n_val', '?')}"),
        ("steps run", cfg.get("steps_run")), ("best step (validation loss)", cfg.get("best_step")),
        ("best validation loss (the editor's objective)", _num(cfg.get("best_val_loss"), ".4f")),
        ("stopped early", cfg.get("stopped_early")), ("training time (s)", _num(cfg.get("train_seconds"), ".1f")),
        ("settings", ", ".join(f"{k}={v}" for k, v in (cfg.get("settings") or {}).items())),
        ("hparams", ", ".join(f"{k}={v}" for k, v in (cfg.get("hparams") or {}).items())),
    ) if v is not None]
    body.append("<h2>Training</h2>" + _table(None, rows, numeric_from=99))
    n = 0
    loss = [float(v) for v in cfg.get("loss_history") or [] if _is_num(v)]
    vals = [(p["step"], float(p["val_loss"])) for p in cfg.get("val_history") or []
            if isinstance(p, dict) and _is_num(p.get("val_loss")) and _is_num(p.get("step"))]
    if loss or vals:
        fig = _figure(7.5, 3.2)
        ax = fig.add_subplot()
        if loss:
            ax.plot(range(1, len(loss) + 1), loss, color="#4f81bd", linewidth=1, label="training loss")
        if vals:
            ax.plot([s for s, _ in vals], [v for _, v in vals], "o-", color="#c0504d", label="validation loss")
        from matplotlib.ticker import MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("training step")
        ax.set_ylabel("loss (the editor's objective, same for both)")
        ax.legend(loc="best", fontsize=8)
        ax.set_title("Editor training curve")
        body.append(_png(fig))
        n = 1
    full = json.dumps({k: cfg.get(k) for k in ("model", "suite")}, indent=1, default=str)
    body.append(f"<details><summary>full identity</summary><pre>{_esc(full)}</pre></details>")
    return "\n".join(body), n, ["Training"], "mllm-audit " + run_title(cfg)


def fix_headline_html(res: dict[str, Any], edits: list[dict[str, Any]]) -> str:
    """The fix page's lead: what the edit did to bias and what it broke (report/headline.py), then warnings."""
    from mllm_audit.report.headline import fix_headline

    h = fix_headline(res, edits)
    broke = ("<p class=\"warn\"><b>Broke (beyond tolerance):</b> " + "; ".join(_esc(b) for b in h.broke) + "</p>"
             if h.broke else f"<p><b>{_esc(h.lines()[1])}</b></p>")
    warns = "".join(f'<p class="warn">Warning: {_esc(w)}</p>' for w in h.warnings)
    return f"<p><b>{_esc(h.bias)}</b></p>{broke}{warns}"


CURVE_METRICS = ("reliability", "t_generality", "v_generality", "t_locality_top1", "m_locality_top1",
                 "perception_locality_top1", "mirror_amplified")


def plot_sequential_curve(curve: list[dict[str, Any]]) -> Any:
    """Sequential mode: after each edit, the metrics of all edits so far (rates 0..1) against the edit count."""
    fig = _figure(7.5, 3.6)
    ax = fig.add_subplot()
    steps = [int(p.get("step", i + 1)) for i, p in enumerate(curve)]
    for k in CURVE_METRICS:
        ys: list[Any] = [p.get(k) for p in curve]
        if any(_is_num(y) for y in ys):
            ax.plot(steps, [float(y) if _is_num(y) else float("nan") for y in ys], marker="o", markersize=3, label=k)
    ax.set_ylim(-0.05, 1.05)
    ax.set_xticks(steps if len(steps) <= 20 else steps[:: max(1, len(steps) // 10)])
    ax.set_xlabel("edits applied so far (sequential)")
    ax.set_ylabel("rate over the edits so far (0..1)")
    ax.set_title("Sequential editing: metrics as edits accumulate")
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8)
    return fig


def saved_model_html(saved: dict[str, Any], rows: dict[str, Any]) -> str:
    """The saved model: how it was built, its name and folder, and a compact table where it differs."""
    head = (f"<h3>Saved model</h3><p><b>{_esc(saved.get('name') or '')}</b> in {_esc(saved.get('path'))}: "
            f"{_esc(saved.get('n_edits'))} edits, {_esc(saved.get('how') or 'every edit applied at once')}. Its own "
            "metrics are the <i>saved model</i> column above.</p>")
    differs = [k for k in saved.get("differs_from_rows") or [] if not k.endswith(("_ci_low", "_ci_high"))]
    if not differs:
        return head + "<p>It measures the same as the rows.</p>"
    body = []
    for k in differs:
        a: Any = rows.get(k)
        b: Any = (saved.get("metrics") or {}).get(k)
        d = f"{float(b) - float(a):+.3f}" if _is_num(a) and _is_num(b) else "—"
        body.append([_esc(k), _num(a), _num(b), d])
    return head + f"<p>It differs from the rows in {len(differs)} metrics:</p>" + _table(
        ["metric", "rows", "saved model", "saved - rows"], body)
