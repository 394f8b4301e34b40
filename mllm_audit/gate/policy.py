"""A release policy read from YAML: a list of checks, each a bound on one number of one summary row
(or a fix metric), or a bound on the paired change against a saved baseline run. Percent metrics
are bounded in percent, their stored unit (metrics/catalog.py); a bound between 0 and 1 is refused with the fix."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mllm_audit.errors import AuditError
from mllm_audit.gate.verify import PIN_KEYS
from mllm_audit.metrics.bias import ALL, FIX_METRICS
from mllm_audit.metrics.catalog import PERCENT_METRICS, SUMMARY_METRICS
from mllm_audit.metrics.stats import PAIRED_METRICS
from mllm_audit.util.text import clipped

# Bounds on percent metrics are written in percent (and `max_increase` in percentage points), the unit
# results.json stores and every table shows. A bound between 0 and 1 is refused as a likely fraction.
METRICS = SUMMARY_METRICS + FIX_METRICS


_TOP_KEYS = ("suite", "description", "checks", "accept_subset", "suite_hash", *PIN_KEYS, "baseline_may_differ")


_CHECK_KEYS = ("name", "bias_type", "metric", "max", "min", "baseline", "max_increase", "alpha", "target",
               "max_deviation")


@dataclass(frozen=True)
class Check:
    """One policy line: a bound on a metric of one row, or on its paired change vs a baseline."""

    name: str
    metric: str
    bias_type: str | None = None
    max: float | None = None
    min: float | None = None
    baseline: Path | None = None
    max_increase: float | None = None
    alpha: float | None = None
    # Two-sided: |value - target| <= max_deviation (balance is a target; a `max:` alone passes a reversal).
    target: float | None = None
    max_deviation: float | None = None

    @property
    def row(self) -> str:
        return self.bias_type or ALL

    @property
    def unit(self) -> str:
        return " %" if self.metric in PERCENT_METRICS else ""

    def bound_text(self) -> str:
        u = " pp" if self.metric in PERCENT_METRICS else ""
        if self.baseline is not None:
            text = f"increase <= {self.max_increase:g}{u}"
            return text + (f" (if p < {self.alpha:g})" if self.alpha is not None else "")
        if self.target is not None:
            return f"{self.target:g} +- {self.max_deviation:g}{self.unit} (two-sided)"
        if self.max is not None and self.min is not None:
            return f"{self.min:g} <= x <= {self.max:g}{self.unit}"
        return f"<= {self.max:g}{self.unit}" if self.max is not None else f">= {self.min:g}{self.unit}"


@dataclass(frozen=True)
class Policy:
    path: Path
    checks: list[Check]
    suite: str | None = None
    description: str = ""
    accept_subset: bool = False  # a run scored on part of the suite (--limit, --split) may be gated
    suite_hash: str | None = None  # pinned content hash of the suite's items
    pins: dict[str, str] = field(default_factory=dict)  # model_revision, templates_hash (gate/verify.py)
    baseline_may_differ: bool = False  # compare with a baseline of other suite content or coverage


def _number(where: str, key: str, value: Any) -> float:
    try:  # a YAML integer can be too large for a float (OverflowError)
        ok = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(float(value))
    except OverflowError:
        ok = False
    if not ok:
        shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:40] + "..."
        raise AuditError(f"{where}: {key!r} must be a finite number, got {shown}")
    return float(value)


def _text(where: str, key: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise AuditError(f"{where}: {key!r} must be a non-empty string, got {clipped(value)}")
    return value


def _parse_check(obj: Any, where: str, policy_dir: Path) -> Check:
    if not isinstance(obj, dict):
        raise AuditError(f"{where}: a check must be a mapping, got {type(obj).__name__}")
    if "name" in obj:
        where = f"{where} ({_text(where, 'name', obj['name'])!r})"
    unknown = [k for k in obj if k not in _CHECK_KEYS]
    if unknown:
        raise AuditError(f"{where}: unknown key {unknown[0]!r} (allowed: {', '.join(_CHECK_KEYS)})")
    if "metric" not in obj:
        raise AuditError(f"{where}: missing 'metric'")
    metric = _text(where, "metric", obj["metric"])
    if metric not in METRICS:
        raise AuditError(f"{where}: unknown metric {metric!r} (allowed: {', '.join(METRICS)})")
    bias_type = _text(where, "bias_type", obj["bias_type"]) if obj.get("bias_type") is not None else None
    if bias_type is not None and metric in FIX_METRICS:
        raise AuditError(f"{where}: fix metric {metric!r} is run-wide; drop 'bias_type'")
    nums = {k: _number(where, k, obj[k]) for k in ("max", "min", "max_increase", "alpha", "target", "max_deviation")
            if k in obj}
    _check_target(where, nums)
    if metric in PERCENT_METRICS:
        for key in ("max", "min", "max_increase", "target", "max_deviation"):
            v = nums.get(key)
            if v is not None and 0 < abs(v) < 1:
                unit = "percentage points" if key in ("max_increase", "max_deviation") else "percent"
                raise AuditError(
                    f"{where}: {metric} is in {unit}, as results.json and the tables show: "
                    f"write {100 * v:g} for {100 * v:g} % "
                    f"(got {key}: {v:g}; fractions are refused)"
                )
            if v is not None and key not in ("max_increase", "max_deviation") and not 0 <= v <= 100:
                raise AuditError(f"{where}: {metric} is a percentage; {key!r} must be within 0..100, got {v:g}")
    baseline = None
    if "baseline" in obj:
        raw = Path(_text(where, "baseline", obj["baseline"])).expanduser()
        baseline = raw if raw.is_absolute() else policy_dir / raw
        if metric not in PAIRED_METRICS:
            allowed = " or ".join(PAIRED_METRICS)
            raise AuditError(f"{where}: a baseline check compares {allowed}, not {metric!r}")
        if "max_increase" not in nums:
            raise AuditError(f"{where}: a baseline check needs 'max_increase'")
        if "max" in nums or "min" in nums:
            raise AuditError(f"{where}: a baseline check bounds the change; put 'max'/'min' in another check")
        if nums["max_increase"] < 0:
            raise AuditError(f"{where}: 'max_increase' must be >= 0")
        if "alpha" in nums and not 0 < nums["alpha"] < 1:
            raise AuditError(f"{where}: 'alpha' must be between 0 and 1")
        if not (baseline / "results.json").is_file():
            rel = "" if raw.is_absolute() else f"; relative paths are resolved from the policy's folder {policy_dir}"
            raise AuditError(f"{where}: baseline run not found: {baseline} (no results.json{rel})")
    else:
        for key in ("max_increase", "alpha"):
            if key in nums:
                raise AuditError(f"{where}: {key!r} needs a 'baseline' run")
        if "max" not in nums and "min" not in nums and "target" not in nums:
            raise AuditError(f"{where}: no bound; give 'max' and/or 'min', or 'target' with 'max_deviation'")
        if "max" in nums and "min" in nums and nums["min"] > nums["max"]:
            raise AuditError(f"{where}: 'min' ({nums['min']:g}) is above 'max' ({nums['max']:g})")
    default_name = f"{metric} {bias_type or ALL}" + (" vs baseline" if baseline is not None else "")
    return Check(
        name=str(obj.get("name") or default_name),
        metric=metric,
        bias_type=bias_type,
        max=nums.get("max"),
        min=nums.get("min"),
        baseline=baseline,
        max_increase=nums.get("max_increase"),
        alpha=nums.get("alpha"),
        target=nums.get("target"),
        max_deviation=nums.get("max_deviation"),
    )


def _check_target(where: str, nums: dict[str, float]) -> None:
    """`target` and `max_deviation` come together, alone (no max/min/baseline on the same check)."""
    if ("target" in nums) != ("max_deviation" in nums):
        have, need = ("target", "max_deviation") if "target" in nums else ("max_deviation", "target")
        raise AuditError(f"{where}: {have!r} needs {need!r} (a two-sided check: target: 50, max_deviation: 5)")
    if "target" in nums:
        if nums["max_deviation"] < 0:
            raise AuditError(f"{where}: 'max_deviation' must be >= 0")
        both = [k for k in ("max", "min", "max_increase") if k in nums]
        if both:
            raise AuditError(f"{where}: a target check bounds |value - target|; put {both[0]!r} in another check")


def load_policy(path: Path | str) -> Policy:
    """Read and strictly validate a policy YAML; every problem is one line naming file and check.

    Relative baseline paths resolve against the policy file's folder, so a policy means the same
    thing from whichever directory CI runs it.
    """
    from mllm_audit.util.files import read_yaml

    path = Path(path)
    if not path.exists():
        raise AuditError(f"policy file not found: {path}")
    data = read_yaml(path)
    if not isinstance(data, dict):
        raise AuditError(f"{path}: expected a mapping with 'checks' at the top level")
    unknown = [k for k in data if k not in _TOP_KEYS]
    if unknown:
        raise AuditError(f"{path}: unknown key {unknown[0]!r} (allowed: {', '.join(_TOP_KEYS)})")
    suite = _text(str(path), "suite", data["suite"]) if data.get("suite") is not None else None
    description = _text(str(path), "description", data["description"]) if data.get("description") else ""
    raw = data.get("checks")
    if not isinstance(raw, list) or not raw:
        raise AuditError(f"{path}: 'checks' must be a non-empty list")
    accept_subset = data.get("accept_subset", False)
    if not isinstance(accept_subset, bool):
        raise AuditError(f"{path}: 'accept_subset' must be true or false, got {accept_subset!r}")
    suite_hash = _text(str(path), "suite_hash", data["suite_hash"]) if data.get("suite_hash") is not None else None
    checks = [_parse_check(obj, f"{path}: checks[{i}]", path.parent) for i, obj in enumerate(raw)]
    seen: set[str] = set()
    for c in checks:
        if c.name in seen:
            raise AuditError(f"{path}: two checks are named {c.name!r}; names must be unique")
        seen.add(c.name)
    from mllm_audit.gate.verify import read_pins

    pins, may_differ = read_pins(data, path)
    return Policy(path=path, checks=checks, suite=suite, description=description, accept_subset=accept_subset,
                  suite_hash=suite_hash, pins=pins, baseline_may_differ=may_differ)


def _fmt(x: float | None) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "nan"
    return f"{x:.4g}"
