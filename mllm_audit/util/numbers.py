"""The one set of checks for numeric options, run before any suite or model is loaded.

Every command's counts (--limit, --batch-size, --images-per-prompt, --steps, ...) and seeds go
through these, so `fix --limit -1` fails the way `scan --limit -1` does: one line naming the option.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from mllm_audit.errors import AuditError

MAX_SEED = 2**32 - 1  # numpy's seed range; torch accepts more, the tool records what both can use


def at_least(option: str, value: int | None, low: int = 1) -> None:
    """`value` (None = not given) is an integer no smaller than `low`."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise AuditError(f"{option} must be a whole number, got {value!r}")
    if value < low:
        raise AuditError(f"{option} must be at least {low}, got {value}")


def seed_ok(option: str, value: int | None) -> None:
    """A seed every random generator the tool uses accepts: 0 .. 2**32-1."""
    at_least(option, value, 0)
    if value is not None and value > MAX_SEED:
        raise AuditError(f"{option} must be at most {MAX_SEED}, got {value}")


def check_counts(counts: Mapping[str, int | None], seed: int | None = None, low: int = 1) -> None:
    """Each of `counts` (option name -> value) at least `low`, and `seed` in range."""
    for option, value in counts.items():
        at_least(option, value, low)
    seed_ok("--seed", seed)


def finite_or_none(x: float) -> float | None:
    """JSON has no NaN or infinity: a number that is not finite is written as null."""
    return float(x) if math.isfinite(x) else None
