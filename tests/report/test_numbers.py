"""Numbers print at the precision of the unit the catalog declares for their metric (issue 25: raw reprs
such as `fidelity 0.9973958333333334`)."""

from __future__ import annotations

from mllm_audit.report.numbers import fmt_metric


def test_each_unit_has_its_precision() -> None:
    assert fmt_metric("pct_biased", 0.8203125) == "82.0"  # percent, stored 0..1
    assert fmt_metric("mean_margin", 1.10012) == "1.100"  # nats
    assert fmt_metric("reliability", 0.9973958333333334) == "0.997"  # rate
    assert fmt_metric("steps", 15.0) == "15"  # count
    assert fmt_metric("mirror_delta", 3.9451, signed=True) == "+3.945"
    assert fmt_metric("reliability", None) == "—"


def test_a_raw_repr_is_not_what_is_printed() -> None:
    """Negative control: the old output (str of the float) differs from what the tables now print."""
    assert str(0.9973958333333334) != fmt_metric("reliability", 0.9973958333333334)
