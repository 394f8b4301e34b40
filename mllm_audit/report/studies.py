"""A study's table as console rows, markdown and an HTML section (with Figure 4's plot for `modules`)."""

from __future__ import annotations

from typing import Any


def _fmt(v: Any) -> str:
    return "—" if v is None else (f"{v:.2f}" if isinstance(v, float) else str(v))


def table_rows(results: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of a study's table as text, for the console, markdown and HTML."""
    study = results.get("study")
    rows_in = results.get("table") or []
    if study == "cross-bias":
        types = list(dict.fromkeys(r["eval_type"] for r in rows_in))
        header = ["editor", "edit on"] + [f"{t} rel" for t in types] + [f"{t} parity" for t in types]
        rows = []
        for key in dict.fromkeys((r["editor"], r["edit_type"]) for r in rows_in):
            cells = {r["eval_type"]: r for r in rows_in if (r["editor"], r["edit_type"]) == key}
            rel = [_fmt(cells[t].get("reliability")) if t in cells else "—" for t in types]
            par = [f"{_fmt(cells[t].get('parity_before'))}→{_fmt(cells[t].get('parity_after'))}"
                   if t in cells else "—" for t in types]
            rows.append([key[0], key[1], *rel, *par])
        return header, rows
    first = ["editor", "module"] if study == "modules" else ["editor", "batch"]
    keys = {"reliability": "rel", "t_generality": "t-gen", "v_generality": "v-gen", "t_locality_top1": "t-loc",
            "m_locality_top1": "m-loc", "parity_before": "parity pre", "parity_after": "parity post",
            "parity_planted": "planted", "edit_s": "s/edit"}
    rows = [[str(r.get(first[0])), str(r.get(first[1])), *[_fmt(r.get(k)) for k in keys]] for r in rows_in]
    return [*first, *keys.values()], rows


def paired_rows(pairs: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of a study's paired comparisons (runs/studies.py `paired`): B - A [interval] p."""
    keys = list(dict.fromkeys(k for p in pairs for k in p["diffs"]))
    rows = []
    for p in pairs:
        cells = []
        for k in keys:
            d = p["diffs"].get(k)
            cells.append("—" if d is None else f"{d['diff']:+.2f} [{d['ci_low']:+.2f}, {d['ci_high']:+.2f}] "
                         f"p={_p(d['p_value'])}")
        rows.append([p["editor"], p["a"], p["b"], *cells])
    return ["editor", "A", "B", *keys], rows


def _p(p: float) -> str:
    return "<0.001" if p < 0.001 else f"{p:.3f}"


SHORT = {"reliability": "rel", "t_generality": "t-gen", "v_generality": "v-gen", "t_locality_top1": "t-loc",
         "m_locality_top1": "m-loc", "parity_after": "parity post", "balanced": "balanced",
         "mirror_amplified": "mirror amp.", "neighbour_drift": "drift"}


def paired_tables(results: dict[str, Any]) -> list[Any]:
    """Per editor, each setting minus the study's reference row on the same items, per metric: the paired
    difference, its 95 % cluster-bootstrap interval and p (no difference). Long format (a row per setting
    and metric), so it fits 80 columns whatever the number of metrics."""
    from mllm_audit.report.tables import new_table

    pairs = results.get("paired") or []
    cluster = results.get("paired_cluster", "image")
    study = results.get("study")
    tables = []
    for ed in dict.fromkeys(p["editor"] for p in pairs):
        mine = [p for p in pairs if p["editor"] == ed]
        if study == "cross-bias":
            ref, keys = "the in-type edit (edit on = measured on)", ["on", "edit on"]
        else:
            ref, keys = mine[0]["a"], ["module" if study == "modules" else "batch"]
        table = new_table(f"{ed} minus {ref} on the same items: 95 % paired interval, clusters: {cluster}")
        for h in [*keys, "metric", "diff", "interval", "p"]:
            table.add_column(h, justify="left" if h in ("on", "edit on", "module", "metric") else "right",
                             no_wrap=True)
        for p in mine:
            key = [p["eval_type"], p["key"]] if study == "cross-bias" else [p.get("key") or p["b"].split()[-1]]
            for k, d in p["diffs"].items():
                table.add_row(*key, SHORT.get(k, k), f"{d['diff']:+.2f}",
                              f"[{d['ci_low']:+.2f}, {d['ci_high']:+.2f}]", _p(d["p_value"]))
        tables.append(table)
    return tables


def study_table(results: dict[str, Any], width: int | None = None) -> Any:
    """The study's console table (the `study` command and `report` of a study run print the same). Too wide
    for the terminal (80 columns: 11 columns of a batch study), it stacks: the value columns split over
    several tables, each repeating the key columns, so no header or number is ever cut. Below it, the
    paired differences against the reference row (`paired_tables`)."""
    from rich.console import Group

    from mllm_audit.report.tables import new_table
    from mllm_audit.util.console import console

    header, rows = table_rows(results)
    keys = 2
    title = (f"study {results.get('study')} on {(results.get('model') or {}).get('name', '?')} / "
             f"{(results.get('suite') or {}).get('name', '?')} ({results.get('n_items', '?')} items)")
    need = [max([len(h), *(len(r[i]) for r in rows)]) + 3 for i, h in enumerate(header)]
    room = (width or console.width) - 1 - sum(need[:keys])
    groups: list[list[int]] = [[]]
    for i in range(keys, len(header)):
        if groups[-1] and sum(need[j] for j in groups[-1]) + need[i] > room:
            groups.append([])
        groups[-1].append(i)
    tables = []
    for n, cols in enumerate(groups):
        part = f" ({n + 1}/{len(groups)})" if len(groups) > 1 else ""
        table = new_table(title + part)
        for i in [*range(keys), *cols]:
            table.add_column(header[i], justify="left" if header[i] in ("editor", "module", "edit on") else "right",
                             no_wrap=True)
        for r in rows:
            table.add_row(*[r[i] for i in [*range(keys), *cols]])
        tables.append(table)
    tables += paired_tables(results)
    return tables[0] if len(tables) == 1 else Group(*tables)


def markdown_table(results: dict[str, Any]) -> str:
    header, rows = table_rows(results)
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def plot_modules(results: dict[str, Any]) -> Any:
    """Figure 4's manner: per editor a panel of grouped bars, language vs vision module, per metric."""
    from mllm_audit.report.htmlkit import _figure

    rows = results.get("table") or []
    fams = list(dict.fromkeys(r["editor"] for r in rows))
    metrics = ["reliability", "t_generality", "v_generality", "t_locality_top1", "m_locality_top1"]
    short = ["Rel", "T-Gen", "V-Gen", "T-Loc", "M-Loc"]
    fig = _figure(3.2 * max(1, len(fams)), 2.8)
    axes = fig.subplots(1, max(1, len(fams)), squeeze=False)[0]
    for ax, fam in zip(axes, fams, strict=False):
        for j, (module, colour) in enumerate((("language", "#4c72b0"), ("vision", "#dd8452"))):
            row = next((r for r in rows if r["editor"] == fam and r["module"] == module), None)
            vals = [100 * float(row.get(m) or 0.0) if row else 0.0 for m in metrics]
            ax.bar([i + (j - 0.5) * 0.38 for i in range(len(metrics))], vals, 0.38, label=module, color=colour)
        ax.set_xticks(range(len(metrics)), short, fontsize=8)
        ax.set_ylim(0, 105)
        ax.set_title(fam.upper(), fontsize=10)
    axes[0].set_ylabel("%")
    axes[0].legend(fontsize=8, loc="lower left")
    return fig


def html_section(results: dict[str, Any]) -> tuple[str, int]:
    """The study's section of the HTML report: its table (and Figure 4's plot for `modules`)."""
    from mllm_audit.report.htmlkit import _esc, _png, _table

    study = results.get("study", "?")
    header, rows = table_rows(results)
    parts = [f"<h2>Study: {_esc(study)}</h2>",
             f'<p class="note">{_esc(__doc__.split(chr(10))[0])} Parity: {_esc(results.get("parity", ""))}.</p>']
    if results.get("protocol"):
        parts.append(f"<p>Protocol: <b>{_esc(results['protocol'])}</b> (see mllm_audit/runs/studies.py).</p>")
    parts.append(_table(header, [[_esc(c) for c in r] for r in rows], numeric_from=2))
    if results.get("paired"):
        ph, prows = paired_rows(results["paired"])
        parts.append("<p>Same items, B − A with the 95 % paired cluster-bootstrap interval (clusters: "
                     f"{_esc(results.get('paired_cluster', 'image'))}) and p:</p>")
        parts.append(_table(ph, [[_esc(c) for c in r] for r in prows], numeric_from=3))
    n = 0
    if study == "modules" and rows:
        parts.append(_png(plot_modules(results)))
        n = 1
    return "\n".join(parts), n
