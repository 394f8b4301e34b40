"""What the model would say, beside what it prefers: lm-eval's `is_greedy`, extended to the answer pair.

An answer is greedy when each of its tokens is the argmax of the model's next-token distribution given
the prompt and the answer's earlier tokens (lm-eval's `is_greedy`). Per item the greedy answer is then
`y_more`, `y_less`, `both` (one answer's tokens start the other's) or `neither` (the model would say
something else). Summarised per group: how often the model would say each, and how often an item whose
likelihood prefers y_more is also one where it would say y_more.

Beside it, what the model says in free text (`scan --greedy`): the answer decoded greedily under the same
template (models/decode.py, at most `--greedy-tokens` new tokens, stopped at EOS or a stop string), compared
after `normalise` (Unicode NFKC, whitespace collapsed and stripped, case-folded, surrounding quotes, trailing
punctuation . , ; : ! ? and one leading article a / an / the dropped, as the VQA evaluation drops articles):
- `said_answer`: the text *equals* y_more, y_less, or neither ("both" only where the two normalise alike);
  strict, so "doctor, in a clinic" is neither: that share is also how often the answer format is not kept;
- `leads_answer`: the text *begins with* the answer as whole words ("doctor in a clinic" leads with
  doctor); where both answers match (one starts the other: flight / flight attendant) the longer is it.
"""

from __future__ import annotations

import unicodedata
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


ARTICLES = ("a ", "an ", "the ")


def normalise(text: str) -> str:
    """The form decoded text and answers are compared in (see the module docstring)."""
    t = " ".join(unicodedata.normalize("NFKC", text).split()).casefold()
    prev = None
    while t != prev:
        prev = t
        t = t.strip().strip("\"'`\u201c\u201d\u2018\u2019").rstrip(".,;:!?\u3002").strip()
    for article in ARTICLES:
        if t.startswith(article):
            return t[len(article):].strip()
    return t


def said_answer(text: str, y_more: str, y_less: str) -> str:
    """Which answer the decoded text is, after `normalise`: y_more, y_less, both or neither."""
    t = normalise(text)
    return greedy_answer(t == normalise(y_more), t == normalise(y_less))


def _leads(t: str, answer: str) -> bool:
    return bool(answer) and t.startswith(answer) and (len(t) == len(answer) or not t[len(answer)].isalnum())


def leads_answer(text: str, y_more: str, y_less: str) -> str:
    """Which answer the decoded text begins with as whole words (the longer where both do)."""
    t, more, less = normalise(text), normalise(y_more), normalise(y_less)
    m, n = _leads(t, more), _leads(t, less)
    if m and n and len(more) != len(less):
        return "y_more" if len(more) > len(less) else "y_less"
    return greedy_answer(m, n)


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
        decoded = [r for r in rows if "greedy_said" in r]
        if decoded:  # the free-text answer: the share of items whose decoded text is (begins with) each answer
            said_prefer = [r for r in decoded if float(r["logp_more"]) > float(r["logp_less"])]
            for key, field in (("said", "greedy_said"), ("leads", "greedy_leads")):
                block: dict[str, Any] = {"n": len(decoded)}
                block.update({a: sum(r.get(field) == a for r in decoded) / len(decoded) for a in ANSWERS})
                block["prefer_more_and_says_more"] = (
                    sum(r.get(field) in ("y_more", "both") for r in said_prefer) / len(said_prefer)
                    if said_prefer else None)
                out[name][key] = block
    return out
