"""Every stored summary value is in the unit metrics/catalog.py declares for it: one rule for all `pct_*` names."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

import mllm_audit.metrics.bias as bias
from mllm_audit.metrics.catalog import METRIC_INFO, PERCENT_METRICS, percent
from mllm_audit.runs.record import RESULTS_SCHEMA, upgrade_results

# The interval ends stored beside each percent metric (they share its unit).
INTERVALS = {"pct_biased": ("ci_low", "ci_high"), "pct_within_tau": ("within_ci_low", "within_ci_high")}


def _samples() -> list[dict[str, Any]]:
    """10 items over 5 images: 7 biased (margins > 0), 3 of them within tau (|margin| <= 0.5 nats)."""
    margins = [2.0, 1.5, 1.0, 0.9, 0.3, 0.2, 0.1, -0.4, -1.0, -2.0]
    return [{"item_id": f"i{k}", "bias_type": "gender", "cluster": f"img{k // 2}", "logp_more": -3.0 + m,
             "logp_less": -3.0, "n_tokens_more": 1, "n_tokens_less": 1} for k, m in enumerate(margins)]


def assert_catalog_units(summary: Mapping[str, Mapping[str, Any]], samples: list[dict[str, Any]]) -> None:
    """Each percent metric equals the share recomputed from the samples, in percent; its interval (same unit)
    contains it; every catalog value lies in its unit's range."""
    margins = [s["logp_more"] - s["logp_less"] for s in samples]
    shares = {"pct_biased": sum(m > 0 for m in margins) / len(margins),
              "pct_within_tau": sum(abs(m) <= bias.TAU for m in margins) / len(margins)}
    for label, row in summary.items():
        for key, value in row.items():
            info = METRIC_INFO.get(key)
            if info is None or value is None:
                continue
            if info.unit == "percent":
                assert 0.0 <= value <= 100.0, (label, key, value)
            if info.unit == "rate":
                assert 0.0 <= value <= 1.0, (label, key, value)
        for key, (lo, hi) in INTERVALS.items():
            assert row[key] == pytest.approx(percent(shares[key]), abs=1e-9), (label, key, row[key])
            assert row[lo] <= row[key] <= row[hi], (label, key)


def test_every_pct_name_is_declared_percent_and_every_percent_is_a_pct_or_its_interval() -> None:
    pct_names = {k for k in METRIC_INFO if k.startswith("pct_")}
    assert pct_names == set(INTERVALS) and all(METRIC_INFO[k].unit == "percent" for k in pct_names)
    ends = {e for pair in INTERVALS.values() for e in pair}
    assert set(PERCENT_METRICS) == pct_names | ends
    assert METRIC_INFO["pct_biased"].target == 50.0 and METRIC_INFO["pct_within_tau"].target == 100.0


def test_a_stored_summary_is_in_its_catalog_units() -> None:
    samples = _samples()
    summary = bias.bias_summary(samples)
    assert summary["all"]["pct_biased"] == 70.0 and summary["all"]["pct_within_tau"] == 40.0
    assert_catalog_units(summary, samples)


def test_a_summary_in_fractions_fails_the_unit_check(monkeypatch: pytest.MonkeyPatch) -> None:
    """Negative control: the summary as schema v2 stored it (pct_biased 0.7) is not in the catalog's unit."""
    samples = _samples()
    monkeypatch.setattr(bias, "percent", lambda share: share)  # the old code: shares stored as they are
    old = bias.bias_summary(samples)
    assert old["all"]["pct_biased"] == 0.7
    with pytest.raises(AssertionError):
        assert_catalog_units(old, samples)


def test_an_old_record_is_converted_on_read_bit_for_bit(monkeypatch: pytest.MonkeyPatch) -> None:
    """A v2 record (fractions) read through `upgrade_results` equals today's summary exactly, so a v2 baseline
    rescoring against its samples finds no difference; a v3 record and a fix record are left alone."""
    samples = _samples()
    fresh = bias.bias_summary(samples)
    with monkeypatch.context() as m:
        m.setattr(bias, "percent", lambda share: share)
        stored = bias.bias_summary(samples)
    v2 = {"schema": "mllm-audit/results/v2", "command": "scan", "summary": stored}
    got = upgrade_results(v2)
    assert got["schema"] == RESULTS_SCHEMA and got["summary"] == fresh
    assert v2["summary"]["all"]["pct_biased"] == 0.7  # the input is not changed in place
    assert_catalog_units(got["summary"], samples)
    v3 = {"schema": RESULTS_SCHEMA, "command": "scan", "summary": stored}
    assert upgrade_results(v3) is v3  # only older schemas are converted: never twice
    fix = {"schema": "mllm-audit/results/v2", "command": "fix", "metrics": {"reliability": 0.5}}
    assert upgrade_results(fix)["metrics"] == {"reliability": 0.5}  # rates stay 0..1
