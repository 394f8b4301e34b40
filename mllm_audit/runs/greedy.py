"""`scan --greedy`'s free-text answer per item: decoded greedily under the same template (models/decode.py,
the decoder the harness bridges' generate_until use), stored per sample and classified against y_more and
y_less (metrics/greedy.said_answer). One decode per item: y_more and y_less share the prompt."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from mllm_audit.errors import AuditError

if TYPE_CHECKING:
    from mllm_audit.models.base import Adapter
    from mllm_audit.suites.items import Item

DEFAULT_TOKENS = 8  # a short answer's worth: the suites' answers are a word or two
MAX_TOKENS = 256


def check_greedy_tokens(n: int) -> None:
    """--greedy-tokens: a whole number in 1..MAX_TOKENS (checked before torch is imported)."""
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_TOKENS:
        raise AuditError(f"--greedy-tokens must be a whole number from 1 to {MAX_TOKENS}, got {n!r}")


def add_decoded_answers(adapter: Adapter, items: list[Item], samples: list[dict[str, Any]],
                        load: Callable[[str], Any], max_new_tokens: int) -> None:
    """Each sample gets `greedy_text` (the decoded answer), `greedy_said` (which answer it equals: y_more, y_less,
    both, neither) and `greedy_leads` (which it begins with), as metrics/greedy.py defines them."""
    from mllm_audit.metrics.greedy import leads_answer, said_answer
    from mllm_audit.models.decode import greedy_text

    for item, rec in zip(items, samples, strict=True):
        image = load(item.image) if item.image is not None else None
        text = greedy_text(adapter, item.prompt, item.task, image, max_new_tokens)
        rec["greedy_text"] = text
        rec["greedy_said"] = said_answer(text, item.y_more, item.y_less)
        rec["greedy_leads"] = leads_answer(text, item.y_more, item.y_less)
