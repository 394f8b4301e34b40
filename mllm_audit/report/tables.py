"""Console tables and lines for every run type, in one place: user text is escaped here (util.text.shown)
and every table fits 80 columns (long values fold).
"""

from __future__ import annotations

from typing import Any


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


def saved_model_line(saved: dict[str, Any], rows: dict[str, Any]) -> str:
    """What the saved model itself measures, and where that differs from the per-edit rows above."""
    from mllm_audit.util.text import shown as escape

    head = f"saved model ({saved['n_edits']} edits applied at once) -> {escape(saved['path'])}"
    if not saved["differs_from_rows"]:
        return f"{head}: measures the same as the rows above"
    parts = [f"{k} {_num(saved['metrics'].get(k))} (rows: {_num(rows.get(k))})" for k in saved["differs_from_rows"]]
    return f"[yellow]{head} differs from the rows above[/]: " + ", ".join(parts)


def _num(x: Any) -> str:
    return "—" if x is None else f"{x:.3f}"


def metrics_table(results: dict[str, Any]) -> Any:
    from rich.table import Table

    from mllm_audit.metrics.bias import FIX_METRICS as METRIC_KEYS
    from mllm_audit.util.text import shown

    table = Table(title=shown(f"{results['editor']['name']} on {results['model']['name']} / "
                              f"{results['suite']['name']} ({results['mode']}, {results['n_edits']} edits)"),
                  title_justify="left")
    table.add_column("metric")
    table.add_column("base", justify="right")
    table.add_column("edited", justify="right")
    table.add_column("delta", justify="right")
    for key in METRIC_KEYS:
        b, e = results["base_metrics"].get(key), results["metrics"].get(key)
        if b is None or e is None:
            table.add_row(key, "—", "—", "—")
            continue
        d = e - b
        good = d < 0 if key.endswith("_kl") else d > 0
        style = "green" if good else ("red" if abs(d) > 1e-9 else "")
        table.add_row(key, f"{b:.3f}", f"{e:.3f}", f"[{style}]{d:+.3f}[/]" if style else f"{d:+.3f}")
    return table


def locate_tables(results: dict[str, Any]) -> list[Any]:
    """Rich tables: probe + round trip per attribute, the LM test per attribute, and the verdict line."""
    from rich.table import Table

    tables = []
    tok = results.get("tokenizer")
    if tok:
        t = Table(title=f"tokenizer ({tok['n_images']} labelled images)", title_justify="left")
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
    t = Table(title="language model (JSD of image-token histograms, neutral vs augmented prompts)",
              title_justify="left")
    for col in ("attribute", "hits / prompts", "hit rate [95 % Wilson]", "chance", "skipped (ambiguous)"):
        t.add_column(col)
    for a, r in results["language_model"].items():
        rate = "-" if r["hit_rate"] is None else f"{r['hit_rate']:.3f} [{r['ci_low']:.3f}, {r['ci_high']:.3f}]"
        t.add_row(a, f"{r['hits']} / {r['n']}", rate, f"{r['chance']:.2f}", str(r["skipped"]))
    tables.append(t)
    return tables
