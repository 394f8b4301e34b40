"""How many decimals a number is printed with, from the unit metrics/catalog.py declares for its metric:
rates 0..1 and nats to 3, percents to 1, counts whole. Tables, headlines and HTML share it, so one metric
never reads 0.9973958333333334 in one place and 0.997 in another."""

from __future__ import annotations

from typing import Any

DECIMALS = {"rate": 3, "nats": 3, "norm": 3, "ratio": 3, "percent": 1, "count": 0}


def decimals(metric: str) -> int:
    from mllm_audit.metrics.catalog import METRIC_INFO

    info = METRIC_INFO.get(metric)
    return DECIMALS.get(info.unit, 3) if info is not None else 3


def fmt_metric(metric: str, value: Any, signed: bool = False, missing: str = "—") -> str:
    """`value` of `metric` at its unit's precision, in its stored unit (a percent metric is stored in percent)."""
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return missing
    v = float(value)
    return f"{v:{'+' if signed else ''}.{decimals(metric)}f}"
