"""The generation-bias statistic itself (Liu et al.; see metrics/generation.py), in a module of its own so
that generation.py (the metrics) and gen_intervals.py (their intervals and the fix's control checks) both
use this one definition without importing each other."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def pairwise_bias(counts: Sequence[float] | np.ndarray) -> float:
    """Mean over ordered pairs i != j of |freq_i - freq_j|; NaN when there is nothing to count."""
    c = np.asarray(counts, dtype=float)
    k, n = c.size, c.sum()
    if k < 2 or n <= 0:
        return float("nan")
    f = c / n
    return float(np.abs(f[:, None] - f[None, :]).sum() / (k * (k - 1)))


def normalised_bias(counts: Sequence[float] | np.ndarray) -> float:
    """`pairwise_bias / (2 / K)`: 0 for a balanced prompt, 1 when every image is one class."""
    return pairwise_bias(counts) * len(counts) / 2.0
