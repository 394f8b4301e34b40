"""Cluster-bootstrap intervals and the paired comparison, on data whose answer is known."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mllm_audit.metrics import stats
from mllm_audit.metrics.stats import cluster_bootstrap, cluster_replicates, paired_bootstrap, paired_runs


def _width(ci: tuple[float, float]) -> float:
    return ci[1] - ci[0]


def test_shared_images_widen_the_interval() -> None:
    """40 images x 10 items, the image mostly decides the answer: the clustered interval is wider."""
    rng = np.random.default_rng(1)
    image_biased = rng.random(40) < 0.5
    values = np.repeat(image_biased, 10).astype(float)
    flip = rng.random(values.size) < 0.1  # a little item-level noise
    values[flip] = 1.0 - values[flip]
    clusters = [f"img{i // 10}" for i in range(values.size)]
    clustered = cluster_bootstrap(values, clusters)
    naive = cluster_bootstrap(values)
    assert _width(clustered) > 2.0 * _width(naive)  # measured: 2.55
    assert clustered[0] < values.mean() < clustered[1]
    # Naive width is close to the binomial normal approximation 2 * 1.96 * sqrt(p(1-p)/n).
    p = values.mean()
    assert _width(naive) == pytest.approx(2 * 1.96 * math.sqrt(p * (1 - p) / values.size), rel=0.1)


def test_independent_items_agree_with_naive_interval() -> None:
    """Independent items put in arbitrary clusters of 4: clustering changes the width by < 12%."""
    rng = np.random.default_rng(2)
    values = (rng.random(800) < 0.3).astype(float)
    clusters = [f"c{i // 4}" for i in range(values.size)]
    clustered = cluster_bootstrap(values, clusters)
    naive = cluster_bootstrap(values)
    assert _width(clustered) == pytest.approx(_width(naive), rel=0.12)
    analytic = 2 * 1.96 * math.sqrt(0.3 * 0.7 / values.size)
    assert _width(naive) == pytest.approx(analytic, rel=0.12)


def test_fixed_seed_and_chunking_do_not_change_the_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(3)
    values = rng.normal(size=300)
    clusters = [str(i % 37) for i in range(300)]
    first = cluster_replicates(values, clusters)
    assert np.array_equal(first, cluster_replicates(values, clusters))
    monkeypatch.setattr(stats, "_CELLS_PER_CHUNK", 37 * 7)  # 7 replicates per chunk instead of all
    assert np.array_equal(first, cluster_replicates(values, clusters))
    lo, hi = cluster_bootstrap(values, clusters)
    alpha = (1 - 0.95) / 2
    assert (lo, hi) == tuple(np.quantile(first, [alpha, 1 - alpha]))


def test_empty_input_gives_nan() -> None:
    lo, hi = cluster_bootstrap([])
    assert math.isnan(lo) and math.isnan(hi)
    d = paired_bootstrap([], [])
    assert d.n == 0 and math.isnan(d.p_value)


def _paired_margins(shift: float, seed: int, n: int = 200) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Item difficulty (sd 2) dominates; runs differ by `shift` plus per-item noise (sd 0.3)."""
    rng = np.random.default_rng(seed)
    clusters = [f"img{i // 4}" for i in range(n)]
    item = np.repeat(rng.normal(0, 2, n // 4), 4) + rng.normal(0, 0.5, n)
    a = item + rng.normal(0, 0.3, n)
    b = item + shift + rng.normal(0, 0.3, n)
    return a, b, clusters


def test_paired_test_detects_a_shift() -> None:
    a, b, clusters = _paired_margins(shift=0.2, seed=4)
    d = paired_bootstrap(a, b, clusters)
    assert d.n == 200 and d.n_clusters == 50
    assert d.diff == pytest.approx(float(np.mean(b - a)))
    assert d.p_value < 0.01
    assert d.ci_low > 0 and d.ci_low < 0.2 < d.ci_high
    # Unpaired, the same shift is lost in the item difficulty: the two intervals overlap widely.
    ia, ib = cluster_bootstrap(a, clusters), cluster_bootstrap(b, clusters)
    assert ib[0] < ia[1]


def test_paired_test_does_not_fire_on_a_null() -> None:
    a, b, clusters = _paired_margins(shift=0.0, seed=5)
    d = paired_bootstrap(a, b, clusters)
    assert d.p_value > 0.05
    assert d.ci_low < 0 < d.ci_high


def test_paired_p_value_is_roughly_calibrated_under_the_null() -> None:
    """Across 100 null data sets about 5% should reach p < 0.05; accept 1%..12%."""
    hits = 0
    for seed in range(100):
        a, b, clusters = _paired_margins(shift=0.0, seed=100 + seed, n=80)
        hits += paired_bootstrap(a, b, clusters, n_boot=400).p_value < 0.05
    assert 1 <= hits <= 12


def test_identical_runs_give_zero_change_and_p_one() -> None:
    a, _, clusters = _paired_margins(shift=0.0, seed=6)
    d = paired_bootstrap(a, a, clusters)
    assert (d.diff, d.ci_low, d.ci_high, d.p_value) == (0.0, 0.0, 0.0, 1.0)


def _rec(item_id: str, margin: float, cluster: str) -> dict:
    return {"item_id": item_id, "logp_more": -3.0 + margin, "logp_less": -3.0, "cluster": cluster}


def test_paired_runs_matches_items_by_id() -> None:
    """Order does not matter, unshared items are ignored, pct_biased pairs the 100/0 outcomes
    (percent, its stored unit: the change is in percentage points)."""
    a = [_rec(f"i{k}", -1.0 if k < 10 else 1.0, f"c{k // 2}") for k in range(20)]
    b = [_rec(f"i{k}", 1.0, f"c{k // 2}") for k in range(20)]  # the 10 unbiased items flip
    b = b[::-1] + [_rec("only-in-b", -5.0, "x")]
    a = a + [_rec("only-in-a", 5.0, "y")]
    pct = paired_runs(a, b, "pct_biased")
    assert pct.n == 20 and pct.n_clusters == 10
    assert (pct.mean_a, pct.mean_b, pct.diff) == (50.0, 100.0, 50.0)
    assert pct.p_value < 0.01
    margin = paired_runs(a, b, "mean_margin")
    assert margin.diff == pytest.approx(1.0)
    with pytest.raises(ValueError):
        paired_runs(a, b, "ci_high")
