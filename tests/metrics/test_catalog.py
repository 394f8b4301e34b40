"""Targets in the catalog: a change is judged by its distance to the target, not by its sign."""

from __future__ import annotations

from mllm_audit.metrics.catalog import FIX_EXTRA_METRICS, METRIC_INFO, better, overshoot, verdict


def test_targets_are_declared() -> None:
    t = {k: m.target for k, m in METRIC_INFO.items()}
    assert (t["pct_biased"], t["mean_margin"], t["reliability"], t["t_locality_kl"]) == (50.0, 0.0, 1.0, 0.0)
    assert t["margin_change"] is None and t["weight_delta_norm"] is None  # context: no target


def test_distance_not_direction() -> None:
    # 60 % -> 5 % is a drop, which the old "lower is better" called an improvement: it is farther from 50 %.
    assert better("pct_biased", -55) is True  # without `before`: direction only (the old answer)
    assert better("pct_biased", -55, 60) is False and overshoot("pct_biased", 60, 5)
    assert verdict("pct_biased", 60, 5) == "overshoot"
    assert better("pct_biased", -8, 60) is True and verdict("pct_biased", 60, 52) == "closer"
    assert verdict("mean_margin", -0.2, -1.0) == "farther" and verdict("mean_margin", 1.0, 1.0) == "same"
    assert not overshoot("reliability", 0.2, 1.0)  # a rate cannot pass 1


def test_fix_extras_include_the_balance_criteria() -> None:
    for k in ("balanced", "transfer_ratio", "t_generality_adjusted", "mirror_spread_after", "opposite_targets"):
        assert k in FIX_EXTRA_METRICS
    assert "parity_after" not in METRIC_INFO  # parity is the study's group-mean spread; fix's has its own name
