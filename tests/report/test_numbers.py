"""Numbers print at the precision of the unit the catalog declares for their metric (issue 25: raw reprs
such as `fidelity 0.9973958333333334`)."""

from __future__ import annotations

from mllm_audit.report.numbers import fmt_metric


def test_each_unit_has_its_precision() -> None:
    assert fmt_metric("pct_biased", 82.03125) == "82.0"  # percent, stored 0..100
    assert fmt_metric("mean_margin", 1.10012) == "1.100"  # nats
    assert fmt_metric("reliability", 0.9973958333333334) == "0.997"  # rate
    assert fmt_metric("steps", 15.0) == "15"  # count
    assert fmt_metric("mirror_delta", 3.9451, signed=True) == "+3.945"
    assert fmt_metric("reliability", None) == "—"


def test_every_catalog_unit_has_a_declared_precision() -> None:
    """A unit the catalog declares but DECIMALS does not know would fall back silently; every metric of
    the catalog prints a long float at its own unit's precision (it failed on `transfer_ratio`, unit "ratio")."""
    from mllm_audit.metrics.catalog import METRIC_INFO
    from mllm_audit.report import numbers

    assert {info.unit for info in METRIC_INFO.values()} <= set(numbers.DECIMALS)
    for name in METRIC_INFO:
        assert len(fmt_metric(name, 0.9973958333333334).partition(".")[2]) == numbers.decimals(name) <= 3
