"""What the model would say, beside what it prefers: lm-eval's `is_greedy`, extended to the answer pair.

An answer is greedy when each of its tokens is the argmax of the model's next-token distribution given
the prompt and the answer's earlier tokens (lm-eval's `is_greedy`). Per item the greedy answer is then
`y_more`, `y_less`, `both` (one answer's tokens start the other's) or `neither` (the model would say
something else). Summarised per group: how often the model would say each, and how often an item whose
likelihood prefers y_more is also one where it would say y_more.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

ANSWERS = ("y_more", "y_less", "both", "neither")


def is_greedy(distributions: Any, tokens: Sequence[int]) -> bool:
    """Every token is the argmax of its position's distribution ([n, V], log-probabilities or logits)."""
    return bool(distributions.argmax(-1).tolist() == list(tokens))


def greedy_answer(more_is_greedy: bool, less_is_greedy: bool) -> str:
    if more_is_greedy and less_is_greedy:
        return "both"
    return "y_more" if more_is_greedy else "y_less" if less_is_greedy else "neither"


def greedy_summary(samples: Iterable[Mapping[str, Any]], group_by: str | None = None) -> dict[str, Any]:
    """Per group (as the bias summary groups, plus "all"): fractions of each greedy answer, and among the
    items whose likelihood prefers y_more, the fraction whose greedy answer is y_more."""
    from mllm_audit.metrics.bias import group_label

    groups: dict[str, list[Mapping[str, Any]]] = {}
    for s in samples:
        if "greedy" not in s:
            continue
        groups.setdefault(group_label(s, group_by), []).append(s)
        groups.setdefault("all", []).append(s)
    out: dict[str, Any] = {}
    for name, rows in sorted(groups.items()):
        prefer = [r for r in rows if float(r["logp_more"]) > float(r["logp_less"])]
        out[name] = {
            "n": len(rows),
            **{a: sum(r["greedy"] == a for r in rows) / len(rows) for a in ANSWERS},
            "n_prefer_more": len(prefer),
            "prefer_more_and_says_more": (sum(r["greedy"] in ("y_more", "both") for r in prefer) / len(prefer)
                                          if prefer else None),
        }
    return out
