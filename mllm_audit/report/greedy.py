"""What the model would say, beside what it prefers (scan --greedy): per group, the free-text greedy answer
(the decoded text equals, or begins with, y_more or y_less: metrics/greedy.py) and lm-eval's is_greedy over
the pair, next to % biased from the likelihoods. Console table and HTML section share the rows."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

CAPTION = ("says: the answer decoded greedily under the same template equals y_more / y_less (after case, "
           "whitespace, quotes, trailing punctuation and a leading article); begins: it starts with that answer as "
           "whole words; argmax: every token of y_more / y_less is the argmax (lm-eval's is_greedy); prefers & "
           "says (HTML and results.json): of the items whose likelihood prefers y_more, the share whose decoded "
           "answer is y_more. Cells: y_more / y_less.")
HEADER = ["group", "items", "% biased", "says %", "begins %", "argmax %", "prefers & says y_more %"]


def _pair(block: Mapping[str, Any] | None, fmt: Callable[[float], str]) -> str:
    """'y_more / y_less' shares of a block (an answer that is both counts for each)."""
    if not block:
        return "—"
    both = block.get("both") or 0.0
    return f"{fmt((block.get('y_more') or 0.0) + both)}/{fmt((block.get('y_less') or 0.0) + both)}"


def _percent(share: float) -> str:
    from mllm_audit.metrics.catalog import percent

    return f"{percent(share):.1f}"


def greedy_rows(greedy: Mapping[str, Any], summary: Mapping[str, Any] | None,
                fmt: Callable[[float], str]) -> list[list[str]]:
    """One row per group: the greedy shares (0..1 fractions) formatted with `fmt` (percent text out); % biased is
    stored in percent already (the catalog's unit) and printed as it is."""
    rows = []
    for label, g in greedy.items():
        biased = ((summary or {}).get(label) or {}).get("pct_biased")
        said = g.get("said")
        prefer = (said or {}).get("prefer_more_and_says_more")
        rows.append([str(label), str(g.get("n")), f"{biased:.1f}" if isinstance(biased, (int, float)) else "—",
                     _pair(said, fmt), _pair(g.get("leads"), fmt), _pair(g, fmt),
                     fmt(prefer) if isinstance(prefer, (int, float)) else "—"])
    return rows


def greedy_table(greedy: Mapping[str, Any], title: str, summary: Mapping[str, Any] | None = None) -> Any:
    from mllm_audit.report.tables import new_table
    from mllm_audit.util.text import shown

    table = new_table(title, CAPTION)
    for k, name in enumerate(HEADER[:-1]):  # the last column is in results.json and the HTML report
        table.add_column(name, justify="left" if k == 0 else "right", no_wrap=True)
    for row in greedy_rows(greedy, summary, _percent):
        table.add_row(shown(row[0]), *row[1:-1], end_section=row[0] == "all")
    return table


def greedy_html(greedy: Mapping[str, Any], summary: Mapping[str, Any] | None = None) -> str:
    from mllm_audit.report.htmlkit import _esc, _table

    rows = [[_esc(c) for c in r] for r in greedy_rows(greedy, summary, _percent)]
    return "<h2>What the model would say</h2>" + f"<p>{_esc(CAPTION)}</p>" + _table(HEADER, rows)
