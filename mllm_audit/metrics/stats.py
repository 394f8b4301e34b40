"""Intervals and paired tests that respect clustering.

Items that share an image or scenario are not independent, so intervals resample whole clusters
(the item's `cluster`, else its image). The seed is fixed: the same data gives the same interval,
so a rescored run reproduces its summary bit for bit and a release gate never flips on a reroll.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from mllm_audit.suites.items import sample_margin

N_BOOT = 2000
SEED = 20240901
# Rows of the (replicate x cluster) multiplicity matrix built at once: bounds memory on big suites.
_CELLS_PER_CHUNK = 4_000_000
PAIRED_METRICS = ("pct_biased", "mean_margin")


def _cluster_index(clusters: Sequence[str]) -> tuple[np.ndarray, int]:
    _, inv = np.unique(np.asarray(clusters, dtype=object).astype(str), return_inverse=True)
    inv = inv.ravel()
    return inv, int(inv.max()) + 1 if len(inv) else 0


def cluster_replicates(
    values: Sequence[float],
    clusters: Sequence[str] | None = None,
    n_boot: int = N_BOOT,
    seed: int = SEED,
) -> np.ndarray:
    """Bootstrap replicates of the mean of `values`, resampling whole clusters with replacement.

    Each replicate draws as many clusters as there are and takes the mean over all items of the
    drawn clusters (a ratio estimator, exact for equal cluster sizes). Draws are made in chunks of
    replicates from one generator, which yields the same stream as drawing them all at once.
    """
    v = np.asarray(values, dtype=float)
    if v.size == 0:
        return np.full(n_boot, np.nan)
    if clusters is None:
        clusters = [str(i) for i in range(v.size)]
    if len(clusters) != v.size:
        raise ValueError(f"{len(clusters)} cluster labels for {v.size} values")
    inv, k = _cluster_index(clusters)
    sums = np.bincount(inv, weights=v, minlength=k)
    counts = np.bincount(inv, minlength=k).astype(float)
    rng = np.random.default_rng(seed)
    out = np.empty(n_boot)
    step = max(1, _CELLS_PER_CHUNK // k)
    for start in range(0, n_boot, step):
        rows = min(step, n_boot - start)
        draws = rng.integers(0, k, size=(rows, k))
        # Row-wise numpy sums, not BLAS: the result must not depend on threads, chunking or the
        # machine's BLAS, or `rescore` could not reproduce a stored interval bit for bit.
        total = sums[draws].sum(axis=1)
        size = counts[draws].sum(axis=1)
        out[start : start + rows] = total / np.maximum(size, 1e-12)
    return out


def cluster_bootstrap(
    values: Sequence[float],
    clusters: Sequence[str] | None = None,
    n_boot: int = N_BOOT,
    seed: int = SEED,
    level: float = 0.95,
) -> tuple[float, float]:
    """Percentile interval of the mean of `values`, resampling clusters with replacement."""
    if len(values) == 0:
        return (float("nan"), float("nan"))
    means = cluster_replicates(values, clusters, n_boot, seed)
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(means, [alpha, 1.0 - alpha])
    return (float(lo), float(hi))


@dataclass(frozen=True)
class PairedDiff:
    """Run B minus run A on the items both scored; the interval and p-value resample clusters."""

    n: int
    n_clusters: int
    mean_a: float
    mean_b: float
    diff: float
    ci_low: float
    ci_high: float
    p_value: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def paired_bootstrap(
    a: Sequence[float],
    b: Sequence[float],
    clusters: Sequence[str] | None = None,
    n_boot: int = N_BOOT,
    seed: int = SEED,
    level: float = 0.95,
) -> PairedDiff:
    """Paired cluster bootstrap of mean(b) - mean(a) with a two-sided p-value for "no change".

    Pairing matters: both runs answer the same items, so per-item differences cancel the item
    difficulty that dominates each run's own variance. The p-value comes from the replicates
    re-centred on zero (the null): p = (1 + #{|d* - d| >= |d|}) / (1 + n_boot), never exactly 0.
    """
    va = np.asarray(a, dtype=float)
    vb = np.asarray(b, dtype=float)
    if va.shape != vb.shape:
        raise ValueError(f"paired samples differ in length: {va.size} vs {vb.size}")
    if va.size == 0:
        nan = float("nan")
        return PairedDiff(0, 0, nan, nan, nan, nan, nan, nan)
    if clusters is None:
        clusters = [str(i) for i in range(va.size)]
    d = vb - va
    obs = float(d.mean())
    reps = cluster_replicates(d, clusters, n_boot, seed)
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(reps, [alpha, 1.0 - alpha])
    # Tolerance so that a run compared with itself (all differences 0) gives p = 1, not noise.
    tol = 1e-12 * max(1.0, float(np.abs(d).max()))
    extreme = int(np.count_nonzero(np.abs(reps - obs) >= abs(obs) - tol))
    p = (1 + extreme) / (1 + n_boot)
    return PairedDiff(
        n=int(va.size),
        n_clusters=len(set(map(str, clusters))),
        mean_a=float(va.mean()),
        mean_b=float(vb.mean()),
        diff=obs,
        ci_low=float(lo),
        ci_high=float(hi),
        p_value=float(min(1.0, p)),
    )


def sample_value(sample: Mapping[str, Any], metric: str) -> float:
    """The per-item quantity whose mean is `metric`: biased (100 or 0, so that means and paired
    differences of pct_biased are in percent and percentage points, its stored unit) or the margin."""
    margin = sample_margin(sample)
    if metric == "pct_biased":
        return 100.0 if margin > 0 else 0.0
    if metric == "mean_margin":
        return margin
    raise ValueError(f"no paired comparison for metric {metric!r} (use {', '.join(PAIRED_METRICS)})")


def paired_runs(
    samples_a: Sequence[Mapping[str, Any]],
    samples_b: Sequence[Mapping[str, Any]],
    metric: str,
    n_boot: int = N_BOOT,
    seed: int = SEED,
) -> PairedDiff:
    """Compare two runs' sample records on their shared items (matched by `item_id`).

    Clusters are taken from run A's records (the same suite gives the same clusters); items only
    one run scored are ignored, so callers should report how many were shared.
    """
    by_id_b = {str(s["item_id"]): s for s in samples_b}
    va: list[float] = []
    vb: list[float] = []
    clusters: list[str] = []
    for s in samples_a:
        other = by_id_b.get(str(s["item_id"]))
        if other is None:
            continue
        va.append(sample_value(s, metric))
        vb.append(sample_value(other, metric))
        clusters.append(str(s.get("cluster") or s["item_id"]))
    return paired_bootstrap(va, vb, clusters, n_boot=n_boot, seed=seed)


def is_finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
