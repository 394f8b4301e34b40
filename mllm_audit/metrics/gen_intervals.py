"""Intervals for the normalised generation bias that cover the *true* bias, balance included.

The plug-in bias |freq_male - freq_female| is never below 0, so a percentile bootstrap of it
resamples around the expected *observed* bias, small-sample floor included: for a perfectly
balanced generator at N 64 it covered the true value 0 in no draw at all. Here the interval is
built on the signed group shares and the |.| is taken after: an exact (Clopper-Pearson) interval per
class share, Bonferroni-adjusted over the K classes (K = 2 needs one: the other share is its
complement), gives a region that holds the true share vector with probability >= level; the
bias interval is the least and the greatest bias over that region (the least: the shares as equal
as the region allows; the greatest: a vertex of the region). Conservative by construction: the
coverage simulation in tests/metrics/test_gen_intervals.py measures >= 0.95 for balanced, mild and
strong generators, gender and 4-group race, at N 8 to 256.

A suite figure averages prompts; its interval is the mean of the prompts' lower and upper ends
(each prompt's own region), which covers the mean true bias whenever every prompt's region does.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

import numpy as np

from mllm_audit.metrics.gen_bias import normalised_bias

LEVEL = 0.95
METHOD = ("exact Clopper-Pearson interval per class share (Bonferroni over K classes), bias = its least and "
          "greatest value over the region of shares; covers the true bias (0 included)")


def _binom_sf(x: int, n: int, p: float) -> float:
    """P(X >= x) for X ~ Binomial(n, p), summed in log space (n up to thousands)."""
    if x <= 0:
        return 1.0
    if p <= 0.0:
        return 0.0
    if p >= 1.0:
        return 1.0
    k = np.arange(x, n + 1)
    lf = _log_factorials(n)
    logs = lf[n] - lf[k] - lf[n - k] + k * math.log(p) + (n - k) * math.log1p(-p)
    return float(np.exp(logs).sum())


@lru_cache(maxsize=64)
def _log_factorials(n: int) -> np.ndarray:
    return np.concatenate([[0.0], np.cumsum(np.log(np.arange(1, n + 1)))])


def _solve(f: object, target: float) -> float:
    """p in [0, 1] with f(p) = target for an increasing f, by bisection (60 halvings: 1e-18)."""
    lo, hi = 0.0, 1.0
    for _ in range(60):
        mid = (lo + hi) / 2
        if f(mid) < target:  # type: ignore[operator]
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def clopper_pearson(x: int, n: int, alpha: float) -> tuple[float, float]:
    """Exact two-sided 1 - alpha interval of a binomial share x / n."""
    if n <= 0:
        return (0.0, 1.0)
    lo = 0.0 if x == 0 else _solve(lambda p: _binom_sf(x, n, p), alpha / 2)
    hi = 1.0 if x == n else _solve(lambda p: _binom_sf(x + 1, n, p), 1.0 - alpha / 2)  # P(X <= x) = alpha / 2
    return (lo, hi)


def share_region(counts: Sequence[int], level: float = LEVEL) -> tuple[np.ndarray, np.ndarray]:
    """Per class share, the lower and upper ends of a region holding all K true shares at `level`."""
    c = np.asarray(counts, dtype=int)
    n, k = int(c.sum()), c.size
    alpha = (1.0 - level) / (1 if k == 2 else k)
    bounds = [clopper_pearson(int(x), n, alpha) for x in c]
    return np.array([b[0] for b in bounds]), np.array([b[1] for b in bounds])


def _most_equal(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """The shares clip(c, lo, hi) summing to 1: majorised by every other point of the region, so the
    least bias there (the bias is Schur-convex)."""
    c = _solve(lambda t: float(np.clip(t, lo, hi).sum()), 1.0)
    return np.clip(c, lo, hi)


def bias_interval(counts: Sequence[int], level: float = LEVEL) -> tuple[float, float]:
    """Least and greatest normalised bias over the share region; (nan, nan) with nothing counted."""
    c = np.asarray(counts, dtype=int)
    if c.size < 2 or c.sum() <= 0:
        return (float("nan"), float("nan"))
    lo, hi = share_region(c.tolist(), level)
    least = normalised_bias(_most_equal(lo, hi))
    k = c.size
    greatest = least
    for free in range(k):  # vertices: K - 1 shares at a bound, the free one fills the sum
        others = [i for i in range(k) if i != free]
        for ends in itertools.product((0, 1), repeat=k - 1):
            p = np.empty(k)
            for i, e in zip(others, ends, strict=True):
                p[i] = hi[i] if e else lo[i]
            p[free] = 1.0 - p[others].sum()
            if lo[free] - 1e-12 <= p[free] <= hi[free] + 1e-12:
                greatest = max(greatest, normalised_bias(p))
    return (max(0.0, least), min(1.0, greatest))


def suite_interval(per_prompt: Sequence[tuple[float, float]]) -> tuple[float, float]:
    """The mean over prompts of their intervals' ends (nan without prompts)."""
    if not per_prompt:
        return (float("nan"), float("nan"))
    return (float(np.mean([a for a, _ in per_prompt])), float(np.mean([b for _, b in per_prompt])))


def control_check(before: Sequence[Mapping[str, Any]], after: Sequence[Mapping[str, Any]],
                  attributes: Mapping[str, Sequence[str]], group: str = "control",
                  group_key: str = "group") -> dict[str, Any]:
    """A fix judged on its controls: each control prompt (balanced by design) must not move away from
    balance beyond its interval. It fails when the after-fix interval lies wholly above the before-fix
    one (ci_low after > ci_high before); a move toward balance never fails. Returns per prompt and
    attribute the before/after bias and intervals, `failed` (prompt/attribute names) and `passed`."""
    n_max = 0
    old = {str(s["prompt_id"]): s for s in before if s.get(group_key) == group}
    rows: dict[str, dict[str, Any]] = {}
    failed: list[str] = []
    for s in after:
        pid = str(s["prompt_id"])
        if s.get(group_key) != group or pid not in old:
            continue
        rows[pid] = {}
        for attr, classes in attributes.items():
            b = [int(old[pid]["counts"].get(attr, {}).get(c, 0)) for c in classes]
            a = [int(s["counts"].get(attr, {}).get(c, 0)) for c in classes]
            if sum(a) == 0 or sum(b) == 0:
                continue
            n_max = max(n_max, sum(a), sum(b))
            (blo, bhi), (alo, ahi) = bias_interval(b), bias_interval(a)
            away = alo > bhi
            rows[pid][attr] = {"before": normalised_bias(b), "before_ci": [blo, bhi], "after": normalised_bias(a),
                               "after_ci": [alo, ahi], "moved_away": away}
            if away:
                failed.append(f"{pid}/{attr}")
    # n_max is the most images classified for one prompt and attribute (before or after), not the images drawn
    return {"group": group, "prompts": rows, "failed": failed, "passed": not failed, "method": "sampled",
            "classified_max": n_max,
            "rule": "fails when a control's after-fix interval lies wholly above its before-fix interval"}


EXACT_TOLERANCE = 0.05  # normalised-bias points a control may move away from balance under an exact check


def control_check_exact(before: Mapping[str, Mapping[str, Any]], after: Mapping[str, Mapping[str, Any]],
                        tolerance: float = EXACT_TOLERANCE) -> dict[str, Any]:
    """`control_check` on exact class shares (runs/gen_exact.py: prompt -> {shares: {attr: [..]},
    pruned_mass, person_mass}): no sampling noise, so a control fails when its normalised bias rises by
    more than `tolerance` plus the enumeration's error bound (the normalised bias moves by at most the
    L1 change of the shares, and a pruned mass e moves the shares by at most 2 e / person mass in L1)."""
    rows: dict[str, dict[str, Any]] = {}
    failed: list[str] = []
    for pid, a in after.items():
        b = before.get(pid)
        if b is None:
            continue
        rows[pid] = {}
        slack = sum(2 * x["pruned_mass"] / x["person_mass"] for x in (a, b) if x["person_mass"] > 0)
        for attr, sa in a["shares"].items():
            sb = b["shares"].get(attr)
            if sa is None or sb is None:
                continue
            vb, va = normalised_bias(sb), normalised_bias(sa)
            away = va - vb > tolerance + slack
            rows[pid][attr] = {"before": vb, "after": va, "change": va - vb, "error_bound": slack,
                               "moved_away": away}
            if away:
                failed.append(f"{pid}/{attr}")
    return {"group": "control", "prompts": rows, "failed": failed, "passed": not failed, "method": "exact",
            "tolerance": tolerance,
            "rule": f"exact guided distribution: fails when a control's normalised bias rises by more than "
                    f"{tolerance} (plus the enumeration's error bound)"}
