"""Console tables and lines for every run type, in one place: user text is escaped here (util.text.shown)
and every table fits 80 columns (long values fold).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rich.table import Table

from mllm_audit.metrics.disparity import ALL
from mllm_audit.metrics.generation import JOINT, attribute_classes, majority, prompt_metrics
from mllm_audit.util.text import shown


def new_table(title: str = "", caption: str = "") -> Any:
    """Every console table starts here: title and caption are escaped (a model, suite or check name
    cannot style the output) and left-justified; callers add columns and rows of escaped cells."""
    from rich.table import Table

    from mllm_audit.util.text import shown

    return Table(title=shown(title) if title else None, title_justify="left",
                 caption=shown(caption) if caption else None, caption_justify="left")

def diff_line(rec: dict[str, Any]) -> str:
    """margin before -> after; fixed green, still biased red; locality breaks flagged red."""
    pre, post = rec["pre"]["reliability"], rec["post"]["reliability"]
    ok = rec["reliability"] == 1.0
    mark = "[green]fixed[/]" if ok else "[red]still biased[/]"
    loc = []
    for name in ("t_locality", "m_locality"):
        v = rec.get(name)
        if v is not None:
            style = "red" if v["top1"] < 1.0 else "dim"
            loc.append(f"[{style}]{name[0].upper()}-loc top1 {v['top1']:.2f} KL {v['kl']:.3f}[/]")
    colour = "green" if ok else "red"
    from mllm_audit.util.text import shown

    head = f"{shown(rec['item_id']):28} margin [bold]{pre:+.2f}[/] → [{colour}]{post:+.2f}[/] nats  {mark}  "
    return head + "  ".join(loc)


def saved_model_table(saved: dict[str, Any], rows: dict[str, Any]) -> list[Any]:
    """What the saved model itself measures: one line (how it was built, where), and where it differs
    from the per-edit rows a compact table of those metrics (rows, saved, difference) instead of a paragraph."""
    from mllm_audit.util.text import shown as escape

    how = saved.get("how") or f"{saved['n_edits']} edits applied at once"
    head = f"saved model {escape(saved.get('name') or '')} ({saved['n_edits']} edits; {escape(how)}) -> " \
           f"{escape(saved['path'])}"
    differs = [k for k in saved["differs_from_rows"] if not k.endswith(("_ci_low", "_ci_high"))]
    if not saved["differs_from_rows"]:
        return [f"{head}: measures the same as the rows above"]
    if not differs:
        return [f"{head}: the same metrics as the rows above; only their intervals differ"]
    table = new_table("", "rows: the per-edit measurements above; saved: the saved model measured itself")
    table.add_column("metric differing", overflow="fold")
    for c in ("rows", "saved", "saved - rows"):
        table.add_column(c, justify="right")
    for k in differs:
        a, b = rows.get(k), saved["metrics"].get(k)
        table.add_row(k, _num(a), _num(b), "—" if a is None or b is None else f"{b - a:+.3f}")
    return [f"[yellow]{head} differs from the rows above in {len(differs)} metrics[/]:", table]


def _num(x: Any) -> str:
    return "—" if x is None else f"{x:.3f}"


def metrics_table(results: dict[str, Any]) -> Any:
    """Every metric the fix run wrote, base -> edited (a change coloured by the metric's declared direction),
    and with --save the saved model's own value beside the rows."""
    from mllm_audit.metrics.catalog import FIX_EXTRA_METRICS, FIX_RATE_METRICS, better
    from mllm_audit.report.numbers import fmt_metric

    table = new_table(f"{results['editor']['name']} on {results['model']['name']} / "
                      f"{results['suite']['name']} ({results['mode']}, {results['n_edits']} edits)")
    table.add_column("metric")
    table.add_column("base", justify="right")
    table.add_column("edited", justify="right")
    table.add_column("delta", justify="right")
    saved = (results.get("saved_model") or {}).get("metrics")
    if saved is not None:
        table.add_column("saved", justify="right")
    base, edited = results.get("base_metrics") or {}, results.get("metrics") or {}
    extra = [k for k in FIX_EXTRA_METRICS if edited.get(k) is not None or base.get(k) is not None]
    for key in (*FIX_RATE_METRICS, *extra):
        b, e = base.get(key), edited.get(key)
        tail = [] if saved is None else [fmt_metric(key, saved.get(key))]
        if e is None or b is None:
            table.add_row(key, fmt_metric(key, b), fmt_metric(key, e), "—", *tail)
            continue
        d = e - b
        good = better(key, d, b)
        style = "" if good is None or abs(d) <= 1e-9 else ("green" if good else "red")
        delta = fmt_metric(key, d, signed=True)
        table.add_row(key, fmt_metric(key, b), fmt_metric(key, e), f"[{style}]{delta}[/]" if style else delta, *tail)
    return table


def locate_tables(results: dict[str, Any]) -> list[Any]:
    """Rich tables: probe + round trip per attribute, the LM test per attribute, and the verdict line."""

    tables = []
    tok = results.get("tokenizer")
    if tok:
        t = new_table(f"tokenizer ({tok['n_images']} labelled images)")
        for col in ("attribute", "probe: vision tower acc / F1", "probe: VQ encoder acc / F1", "chance",
                    "round trip kept per group", "parity"):
            t.add_column(col)
        for a, pr in tok["probe"].items():
            rt = tok["roundtrip"][a]
            kept = ", ".join(f"{c} {v['kept']:.2f}" for c, v in rt["per_group"].items())
            t.add_row(a, f"{pr['vision_tower']['accuracy']:.3f} / {pr['vision_tower']['macro_f1']:.3f}",
                      f"{pr['vq_encoder']['accuracy']:.3f} / {pr['vq_encoder']['macro_f1']:.3f}",
                      f"{pr['chance']:.2f}", kept, f"{rt['parity']:.2f}")
        tables.append(t)
    t = new_table("language model (JSD of image-token histograms, neutral vs augmented prompts)")
    for col in ("attribute", "hits / prompts", "hit rate [95 % Wilson]", "chance", "skipped (ambiguous)"):
        t.add_column(col)
    for a, r in results["language_model"].items():
        rate = "-" if r["hit_rate"] is None else f"{r['hit_rate']:.3f} [{r['ci_low']:.3f}, {r['ci_high']:.3f}]"
        t.add_row(a, f"{r['hits']} / {r['n']}", rate, f"{r['chance']:.2f}", str(r["skipped"]))
    tables.append(t)
    return tables


def fmt_pct(x: float) -> str:
    """A percent metric (stored in percent, metrics/catalog.py)."""
    return f"{x:5.1f} %"


def bias_table(summary: Mapping[str, Mapping[str, Any]], title: str) -> Table:
    """% biased = share of items where p(y_more) > p(y_less); 50 % is what chance gives."""
    table = new_table(title, "% biased: items where p(y_more) > p(y_less); 50 % is chance. "
                      "Red: the 95 % interval lies above 50 %; magenta: below (reversed: balance "
                      "is 50 %, not 0).")
    table.add_column("group", no_wrap=True)
    table.add_column("items", justify="right")
    table.add_column("% biased", justify="right")
    table.add_column("95 % interval", justify="right")
    table.add_column("mean margin (nats)", justify="right")
    for label, row in summary.items():
        lo, hi = row["ci_low"], row["ci_high"]
        style = "red" if lo > 50 else ("magenta" if hi < 50 else "")  # past balance is no success
        table.add_row(
            shown(label),
            str(row["n"]),
            fmt_pct(row["pct_biased"]),
            f"{lo:.1f}–{hi:.1f} %",
            f"{row['mean_margin']:+.3f}",
            style=style,
            end_section=label == "all",
        )
    return table


def _gap_cell(cell: Mapping[str, Any]) -> str:
    if cell.get("mean") is None:
        return "-"
    lo, hi = cell.get("ci_low"), cell.get("ci_high")
    ci = f" [{lo:+.2f}, {hi:+.2f}]" if lo is not None and hi is not None else ""
    return f"{cell['mean']:+.2f}{ci}"


def render_disparity(summary: dict, console: Any) -> None:
    """A rich table of the per-section and overall gaps (console: a rich.console.Console)."""

    from mllm_audit.util.text import shown

    groups = summary.get("groups") or {}
    if not groups:
        console.print("disparity: no question has all four people scored")
        return
    table = new_table("Disparity across people (log-odds of the favoured answer)",
                      "gender gap: men - women; race gap: white - Black; spread: max - min; 95% CI over scenarios")
    for col, justify in (
        ("group", "left"),
        ("questions", "right"),
        ("scenarios", "right"),
        ("gender gap", "right"),
        ("race gap", "right"),
        ("spread", "right"),
    ):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for label, g in groups.items():
        table.add_row(
            shown(label),
            str(g["n_questions"]),
            str(g["n_scenarios"]),
            _gap_cell(g["gender_gap"]),
            _gap_cell(g["race_gap"]),
            _gap_cell(g["spread"]),
            end_section=label == ALL,
        )
    console.print(table)
    skipped = {k: v for k, v in (summary.get("skipped") or {}).items() if v}
    if skipped:
        console.print("left out: " + ", ".join(f"{k} {v}" for k, v in skipped.items()))


def gen_table(samples: Sequence[Mapping[str, Any]], attributes: Mapping[str, Sequence[str]], title: str) -> Any:
    """Per prompt, two narrow tables that fit 80 columns: the normalised generation bias per attribute
    (value over its 95 % interval), then what the model draws beside what it answers (understanding)."""
    from rich.console import Group

    classes = attribute_classes(attributes)
    bias = new_table(title, "* = not balanced (p_uniform < 0.05); [95 % interval over the prompt's images]")
    bias.add_column("prompt", ratio=1, overflow="fold")
    bias.add_column("people", justify="right", no_wrap=True)
    for a in classes:
        bias.add_column(shown("gender x race" if a == JOINT else a), justify="right", min_width=12, no_wrap=True)
    has_und = any(s.get("understanding") for s in samples)
    who = new_table("drawn vs answered (understanding), per prompt") if ("gender" in classes or has_und) else None
    if who is not None:
        who.add_column("prompt", ratio=1, overflow="fold")
        if "gender" in classes:
            who.add_column("drawn (majority)", no_wrap=True)
        if has_und:
            who.add_column("answered p(m/f/unk)", justify="right", no_wrap=True)
            who.add_column("skew", justify="right", no_wrap=True)
    for s in samples:
        m = prompt_metrics(s, attributes)
        name = shown(s.get("occupation") or s["prompt_id"])
        cells = [name, f"{s['n_person']}/{s['n_images']}"]
        for a in classes:
            r = m[a]
            if r["normalised"] is None:
                cells.append("-")
                continue
            mark = "" if r["balanced"] else "*"
            cells.append(f"{r['normalised']:.2f}{mark}\n[{r['ci_low']:.2f}, {r['ci_high']:.2f}]")
        bias.add_row(*cells, style="green" if m.get("gender", {}).get("balanced") else "")
        if who is not None:
            row = [name]
            if "gender" in classes:
                row.append(shown(majority(s["counts"].get("gender", {}))))
            if has_und:
                u = s.get("understanding") or {}
                row.append(f"{u.get('p_male', 0):.2f}/{u.get('p_female', 0):.2f}/{u.get('p_unknown', 0):.2f}")
                row.append(f"{u.get('skew', float('nan')):.2f}")
            who.add_row(*row)
    return Group(bias, who) if who is not None else bias


def summary_table(summary: Mapping[str, Any], attributes: Mapping[str, Sequence[str]], title: str) -> Any:
    """Mean over prompts per group, one attribute per column (fits 80 columns): normalised bias over
    its 95 % interval, then the raw bias and the balanced model's floor."""
    classes = attribute_classes(attributes)
    table = new_table(title, "per attribute: normalised bias, [95 % interval], raw bias, floor (a balanced "
                             "model's normalised bias at this many images)")
    table.add_column("group", ratio=1, min_width=8, overflow="fold")
    table.add_column("prompts", justify="right", no_wrap=True)
    for a in classes:
        table.add_column(shown("gender x race" if a == JOINT else a), justify="right", min_width=12)
    table.add_column("und.\nskew", justify="right")
    for label, row in summary.items():
        cells = [shown(label), str(row["n_prompts"])]
        for a in classes:
            r = row[a]
            if r["normalised"] is None:
                cells.append("-")
            else:
                fl = "" if r.get("floor") is None else f"\nfloor {r['floor']:.2f}"
                cells.append(f"{r['normalised']:.2f}\n[{r['ci_low']:.2f}, {r['ci_high']:.2f}]\nraw {r['bias']:.2f}{fl}")
        u = row.get("understanding_skew")
        cells.append("-" if u is None else f"{u:.2f}")
        table.add_row(*cells)
    return table


def fix_table(results: dict[str, Any]) -> Any:
    """Stages side by side, one column each (base, sft, sft+bpo: fits 80 columns whatever the groups): held-out
    and control bias with its floor, fidelity, adherence, understanding, pair gap, one row per number."""
    stages = results["stages"]
    t = new_table(f"{results['editor']['name']} on {results['model']['name']} / {results['suite']['name']} "
                  f"(held out: {len(results['held_out_prompts'])} prompts)",
                  "norm.: normalised generation bias, 0 balanced, 1 one group only; floor: a balanced model's "
                  "value at this many images. Fidelity and adherence 0..1, higher is better.")
    t.add_column("measure", overflow="fold")
    for name in stages:
        t.add_column(name, justify="right")
    first = next(iter(stages.values()))
    groups = [g for g in first["summary"] if g != "all"] or ["all"]
    attrs = [a for a in ("gender", "race") if a in results["classifier"]["attributes"]]

    def cell(v: Any, fmt: str = ".3f") -> str:
        return "-" if v is None else format(v, fmt)

    for g in groups:
        for a in attrs:
            floor = (first["summary"][g].get(a) or {}).get("floor")
            label = f"{g} {a} norm." + (f" (floor {floor:.3f})" if floor is not None else "")
            t.add_row(label, *[cell((m["summary"][g].get(a) or {}).get("normalised")) for m in stages.values()])
    t.add_row("fidelity", *[cell(m["fidelity"] if m["fidelity"] is not None else m.get("clip_score"))
                            for m in stages.values()])
    for a in dict.fromkeys(a for m in stages.values() for a in m["adherence"]):
        t.add_row(f"adherence {a}", *[cell(m["adherence"].get(a)) for m in stages.values()])
    t.add_row("understanding p(unknown)", *[cell(m["summary"]["all"].get("understanding_p_unknown"), ".2f")
                                            for m in stages.values()])
    t.add_row("understanding skew", *[cell(m["summary"]["all"].get("understanding_skew"), ".2f")
                                      for m in stages.values()])
    t.add_row("pair gap", *[cell(m.get("pair_gap"), ".4f") for m in stages.values()])
    return t
