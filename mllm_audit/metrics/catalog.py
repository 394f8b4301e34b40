"""Every metric the tool writes, declared once with its direction and unit.

Reports colour a change by `higher_is_better` (never by guessing from a name), and the gate reads a
`percent` metric's bound in percent. `None` means context: a number with no better direction.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MetricInfo:
    name: str
    higher_is_better: bool | None
    unit: str  # "rate" (0..1), "percent" (stored 0..1, read in percent by the gate), "nats", "count", "norm"
    doc: str


_ROWS = (
    # a scan's summary per group (results.json "summary")
    ("pct_biased", False, "percent", "share of items where p(y_more) > p(y_less)"),
    ("ci_low", False, "percent", "lower end of pct_biased's 95 % cluster-bootstrap interval"),
    ("ci_high", False, "percent", "upper end of pct_biased's 95 % cluster-bootstrap interval"),
    ("mean_margin", False, "nats", "mean of logp(y_more) - logp(y_less)"),
    # a fix run, the paper's five (results.json "metrics")
    ("reliability", True, "rate", "edits after which y_less is preferred"),
    ("t_generality", True, "rate", "the same on a rephrased prompt"),
    ("v_generality", True, "rate", "the same on another image of the scene"),
    ("t_locality_top1", True, "rate", "unrelated text prompts whose top-1 answer is unchanged"),
    ("t_locality_kl", False, "nats", "KL(pre || post) on unrelated text prompts"),
    ("m_locality_top1", True, "rate", "unrelated image questions whose top-1 answer is unchanged"),
    ("m_locality_kl", False, "nats", "KL(pre || post) on unrelated image questions"),
    # beside them: the easyedit protocol (all positions), debias metrics and effect sizes
    ("t_locality_top1_easyedit", True, "rate", "T-locality, all positions, EasyEdit's code"),
    ("t_locality_kl_easyedit", False, "nats", "T-locality KL, all positions"),
    ("m_locality_top10_easyedit", True, "rate", "M-locality top-10 agreement, all positions"),
    ("m_locality_kl_easyedit", False, "nats", "M-locality KL, all positions"),
    ("perception_locality_top1", True, "rate", "perception probes whose answer is unchanged"),
    ("perception_locality_kl", False, "nats", "KL on perception probes"),
    ("parity_before", None, "nats", "margin spread across an item's group siblings before the edit"),
    ("parity_after", False, "nats", "the same after the edit"),
    ("parity_planted", None, "nats", "the spread the toy world planted"),
    ("mirror_amplified", False, "rate", "mirror items whose other-group margin grew"),
    ("mirror_delta", False, "nats", "mean change of the mirror items' margin"),
    ("neighbour_drift", False, "nats", "mean absolute margin change on neighbouring items"),
    ("margin_change", None, "nats", "mean change of the edited items' margin"),
    ("weight_delta_norm", None, "norm", "L2 norm of the weight change"),
    ("steps", None, "count", "optimiser steps the edit took"),
)
METRIC_INFO: dict[str, MetricInfo] = {r[0]: MetricInfo(*r) for r in _ROWS}
SUMMARY_METRICS = ("pct_biased", "mean_margin", "ci_high", "ci_low")
FIX_RATE_METRICS = ("reliability", "t_generality", "v_generality", "t_locality_top1", "t_locality_kl",
                    "m_locality_top1", "m_locality_kl")
FIX_EXTRA_METRICS = tuple(r[0] for r in _ROWS[11:])
PERCENT_METRICS = tuple(k for k, m in METRIC_INFO.items() if m.unit == "percent")


def better(metric: str, delta: float) -> bool | None:
    """Whether a change of `delta` is an improvement (None: the metric has no direction, or no change)."""
    info = METRIC_INFO.get(metric)
    if info is None or info.higher_is_better is None or delta == 0:
        return None
    return (delta > 0) == info.higher_is_better
