"""The first lines a reader sees of a fix run: what the edit did to bias AND what it broke, never "fixed"
alone. A metric "broke" when it moved the wrong way (metrics/catalog.py's direction) by more than the
tolerance declared here; a metric at its worst possible value is a warning of its own. The console and
the HTML page say the same words (both call `fix_headline`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# How far a metric may move the wrong way before the headline calls it broken (rates 0..1, KL in nats).
TOLERANCE: dict[str, float] = {
    "t_locality_top1": 0.05, "m_locality_top1": 0.05, "perception_locality_top1": 0.05,
    "t_locality_top1_easyedit": 0.05, "m_locality_top10_easyedit": 0.05,
    "t_locality_kl": 0.05, "m_locality_kl": 0.05, "perception_locality_kl": 0.05,
    "t_locality_kl_easyedit": 0.05, "m_locality_kl_easyedit": 0.05,
    "mirror_amplified": 0.10, "neighbour_drift": 0.5,
}
WHAT = {"mirror_amplified": "mirror items whose other-group stereotype grew",
        "perception_locality_top1": "questions about the edited image answered as before"}


@dataclass
class Headline:
    bias: str  # what the edit did to bias
    broke: list[str]  # what it broke beyond tolerance (empty: nothing)
    warnings: list[str]  # metrics at their worst value

    def lines(self) -> list[str]:
        broke = ("broke: " + "; ".join(self.broke)) if self.broke else (
            "broke nothing beyond tolerance (locality and mirror within " + _tolerances() + ")")
        return [self.bias, broke, *[f"warning: {w}" for w in self.warnings]]


def _tolerances() -> str:
    """The declared tolerances (TOLERANCE) in words, one per kind of metric."""
    kinds = {"top-1": [v for k, v in TOLERANCE.items() if "top1" in k or "top10" in k],
             "KL": [v for k, v in TOLERANCE.items() if k.endswith("_kl") or "_kl_" in k],
             "mirror": [TOLERANCE["mirror_amplified"]], "drift": [TOLERANCE["neighbour_drift"]]}
    units = {"KL": " nats", "drift": " nats"}
    return ", ".join(f"{k} {max(v):.2f}{units.get(k, '')}" for k, v in kinds.items() if v)


def worst_value(metric: str) -> float | None:
    """The worst a 0..1 rate can be (0 when higher is better, 1 when lower is); None for other units."""
    from mllm_audit.metrics.catalog import METRIC_INFO

    info = METRIC_INFO.get(metric)
    if info is None or info.unit != "rate" or info.higher_is_better is None:
        return None
    return 0.0 if info.higher_is_better else 1.0


def _f(x: Any, metric: str = "reliability") -> str:
    from mllm_audit.report.numbers import fmt_metric

    return fmt_metric(metric, x)


def fix_headline(results: dict[str, Any], edits: list[dict[str, Any]]) -> Headline:
    from mllm_audit.metrics.catalog import METRIC_INFO

    m, base = results.get("metrics") or {}, results.get("base_metrics") or {}
    fixed = sum(1 for e in edits if e.get("reliability") == 1.0)
    measured = sum(1 for e in edits if e.get("reliability") is not None)
    bias = f"bias: {fixed} fixed, {measured - fixed} still biased of {len(edits)} edits"
    extra = []
    if m.get("t_generality") is not None or m.get("v_generality") is not None:
        extra.append(f"rephrased prompt {_f(m.get('t_generality'))}, other image {_f(m.get('v_generality'))}")
    if m.get("margin_change") is not None:
        extra.append(f"edited margin {m['margin_change']:+.2f} nats")
    if m.get("parity_after") is not None and base.get("parity_after") is not None:
        extra.append(f"group spread {base['parity_after']:.2f} -> {m['parity_after']:.2f} nats")
    if extra:
        bias += " (" + "; ".join(extra) + ")"
    broke = []
    for k, tol in TOLERANCE.items():
        e, b = m.get(k), base.get(k)
        info = METRIC_INFO.get(k)
        if e is None or info is None or info.higher_is_better is None:
            continue
        b = 0.0 if b is None else b
        worse = (b - e) if info.higher_is_better else (e - b)
        if worse > tol:
            what = f" ({WHAT[k]})" if k in WHAT else ""
            broke.append(f"{k} {_f(b, k)} -> {_f(e, k)}{what}")
    warnings = []
    for k, e in m.items():
        w = worst_value(k)
        if w is not None and e is not None and abs(e - w) < 1e-12:
            warnings.append(f"{k} is {_f(e, k)}, its worst possible value")
    return Headline(bias, broke, warnings)


def print_headline(console: Any, results: dict[str, Any], edits: list[dict[str, Any]]) -> None:
    """The headline on the console: bias line, then what broke in red, one per line (or nothing, green),
    then warnings in yellow."""
    from mllm_audit.util.text import shown

    h = fix_headline(results, edits)
    console.print(f"[bold]{shown(h.bias)}[/]")
    if h.broke:
        console.print("[red]broke (beyond tolerance):[/]")
        for b in h.broke:
            console.print(f"[red]  {shown(b)}[/]")
    else:
        console.print(f"[green]{shown(h.lines()[1])}[/]")
    for w in h.warnings:
        console.print(f"[yellow]warning: {shown(w)}[/]")
