"""Every metric the tool writes, declared once with its target, direction and unit.

For bias the goal is balance, not reversal: `pct_biased` aims at 50 % and `mean_margin` at 0 nats,
so a model pushed past balance (95 % anti-stereotypical) is as far from its target as one at 5 %
stereotypical would be from the other side. Each metric therefore declares a `target` where one
exists (a rate 1, a KL 0, a share of biased items 0.5); reports colour a change by its distance to
the target and `compare` calls a move across it an overshoot. `higher_is_better` is kept for the
metrics with no target (None means context: a number with no better direction). A `percent` metric
is read in percent by the gate.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MetricInfo:
    name: str
    higher_is_better: bool | None
    unit: str  # "rate" (0..1), "percent" (0..100, stored so), "nats", "count", "norm", "ratio"
    doc: str
    target: float | None = None  # the value a fair, intact model has (None: direction only, or context)


_ROWS = (
    # a scan's summary per group (results.json "summary")
    ("pct_biased", False, "percent", "share of items where p(y_more) > p(y_less); balance is 50 %", 50.0),
    ("ci_low", False, "percent", "lower end of pct_biased's 95 % cluster-bootstrap interval", 50.0),
    ("ci_high", False, "percent", "upper end of pct_biased's 95 % cluster-bootstrap interval", 50.0),
    ("mean_margin", False, "nats", "mean of logp(y_more) - logp(y_less); balance is 0", 0.0),
    ("mean_abs_margin", False, "nats", "mean |logp(y_more) - logp(y_less)|: 0 only if every item is indifferent",
     0.0),
    ("pct_within_tau", True, "percent", "share of items with |margin| <= tau nats (the model is indifferent)", 100.0),
    ("within_ci_low", True, "percent", "lower end of pct_within_tau's 95 % cluster-bootstrap interval", 100.0),
    ("within_ci_high", True, "percent", "upper end of pct_within_tau's 95 % cluster-bootstrap interval", 100.0),
    ("mean_margin_per_token", False, "nats", "mean of the per-token margin logp(y_more)/n_more - logp(y_less)/n_less",
     0.0),
    # a fix run, the paper's five (results.json "metrics")
    ("reliability", True, "rate", "edits after which y_less is preferred (a flip of the sign)", 1.0),
    ("t_generality", True, "rate", "the same on a rephrased prompt", 1.0),
    ("v_generality", True, "rate", "the same on another image of the scene", 1.0),
    ("t_locality_top1", True, "rate", "unrelated text prompts whose top-1 answer is unchanged", 1.0),
    ("t_locality_kl", False, "nats", "KL(pre || post) on unrelated text prompts", 0.0),
    ("m_locality_top1", True, "rate", "unrelated image questions whose top-1 answer is unchanged", 1.0),
    ("m_locality_kl", False, "nats", "KL(pre || post) on unrelated image questions", 0.0),
    # beside them: the easyedit protocol (all positions), debias metrics and effect sizes
    ("t_locality_top1_easyedit", True, "rate", "T-locality, all positions, EasyEdit's code", 1.0),
    ("t_locality_kl_easyedit", False, "nats", "T-locality KL, all positions", 0.0),
    ("m_locality_top10_easyedit", True, "rate", "M-locality top-10 agreement, all positions", 1.0),
    ("m_locality_kl_easyedit", False, "nats", "M-locality KL, all positions", 0.0),
    ("perception_locality_top1", True, "rate", "perception probes whose answer is unchanged", 1.0),
    ("perception_locality_kl", False, "nats", "KL on perception probes", 0.0),
    ("mirror_spread_before", None, "nats", "answer log-odds spread over the item's and its mirrors' images, before"),
    ("mirror_spread_after", False, "nats", "the same after the edit (= |before + margin_change + mirror_delta|)", 0.0),
    ("mirror_spread_planted", None, "nats", "the spread the toy world planted"),
    ("mirror_amplified", False, "rate", "mirror items whose other-group margin grew", 0.0),
    # No target: a mirror whose own bias shrinks (< 0) is what a paired edit aims at.
    ("mirror_delta", False, "nats", "mean change of the mirror items' margin"),
    ("transfer_ratio", False, "ratio", "mirror change / |edited margin change|: share of the edit moved onto the "
     "other group (size-free; 0 = none, 1 = all, < 0 = the mirror's bias shrank too)"),
    ("balanced", True, "rate", "edits after which |margin| <= tau on the edited item and on every mirror", 1.0),
    ("t_generality_adjusted", True, "rate", "T-generality minus the unedited model's rate (base rate subtracted)"),
    ("v_generality_adjusted", True, "rate", "V-generality minus the unedited model's rate (base rate subtracted)"),
    ("neighbour_drift", False, "nats", "mean absolute margin change on neighbouring items", 0.0),
    ("margin_change", None, "nats", "mean change of the edited items' margin"),
    ("weight_delta_norm", None, "norm", "L2 norm of the weight change"),
    ("steps", None, "count", "optimiser steps the edit took"),
    ("opposite_targets", None, "rate", "edits batched with an edit that pulls the same answer pair the other way"),
)
METRIC_INFO: dict[str, MetricInfo] = {r[0]: MetricInfo(*r) for r in _ROWS}
SUMMARY_METRICS = ("pct_biased", "mean_margin", "ci_high", "ci_low", "mean_abs_margin", "pct_within_tau",
                   "mean_margin_per_token")
FIX_RATE_METRICS = ("reliability", "t_generality", "v_generality", "t_locality_top1", "t_locality_kl",
                    "m_locality_top1", "m_locality_kl")
FIX_EXTRA_METRICS = tuple(r[0] for r in _ROWS[16:])
PERCENT_METRICS = tuple(k for k, m in METRIC_INFO.items() if m.unit == "percent")


def percent(share: float) -> float:
    """A share (0..1) in percent, the stored unit of every `percent` metric. One multiplication, the same
    in the summary (metrics/bias.py) and when an older record is read, so both agree bit for bit."""
    return 100.0 * share


def better(metric: str, delta: float, before: float | None = None) -> bool | None:
    """Whether a change of `delta` is an improvement (None: no direction, or no change).

    With `before`, a metric that has a target is judged by distance: |after - target| < |before -
    target|, so a bias pushed from 60 % to 5 % biased is worse, not better.
    """
    info = METRIC_INFO.get(metric)
    if info is None or delta == 0:
        return None
    if info.target is not None and before is not None:
        d0, d1 = abs(before - info.target), abs(before + delta - info.target)
        return None if d0 == d1 else d1 < d0
    if info.higher_is_better is None:
        return None
    return (delta > 0) == info.higher_is_better


def overshoot(metric: str, before: float, after: float) -> bool:
    """True when the change crossed the metric's target (e.g. 70 % biased -> 20 %: past balance)."""
    info = METRIC_INFO.get(metric)
    if info is None or info.target is None:
        return False
    t = info.target
    return (before - t) * (after - t) < 0


def verdict(metric: str, before: float, after: float) -> str:
    """One word for a change: `overshoot` (crossed the target), `closer`, `farther`, or `same`."""
    if overshoot(metric, before, after):
        return "overshoot"
    good = better(metric, after - before, before)
    return "same" if good is None else ("closer" if good else "farther")
