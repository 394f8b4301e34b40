"""Greedy decoding through the adapter protocol: the one decoder `scan --greedy` and the harness bridges'
`generate_until` (integrations/generate.py) share, for every family.

The family gives the prefill and one cached step (`Adapter.greedy_start`: the scorer's prompt ids, image
features and positions; the generic family overrides it with the processor's own inputs and transformers'
cache, as its scoring does); the loop, the stop rules and the text are here. It stops at an end-of-sequence
token (the tokenizer's and the model's generation_config's, as `generate` does), after `max_new_tokens`, or
once the decoded text contains a stop string (the caller's, the card's `generation.stop_strings`, the
model's generation_config `stop_strings`); the text is cut before the first stop string.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mllm_audit.models.base import Adapter


def eos_ids(adapter: Adapter) -> set[int]:
    """End-of-sequence ids: the tokenizer's, plus the model's generation_config's (an int or a list)."""
    ids: set[int] = set()
    for value in (adapter.tokenizer.eos_token_id,
                  getattr(getattr(adapter.model, "generation_config", None), "eos_token_id", None)):
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, (list, tuple)):
            ids.update(int(v) for v in value)
    return ids


def stop_strings(adapter: Adapter, until: Sequence[str] = ()) -> list[str]:
    """The caller's stop strings, then the card's `generation.stop_strings`, then the model's."""
    card = adapter.card.generation.get("stop_strings") or []
    model = getattr(getattr(adapter.model, "generation_config", None), "stop_strings", None) or []
    out: list[str] = []
    for s in [*until, *([card] if isinstance(card, str) else card), *([model] if isinstance(model, str) else model)]:
        if isinstance(s, str) and s and s not in out:
            out.append(s)
    return out


# The stop check decodes the last (longest stop string + TAIL_MARGIN) tokens and wants nearly as many characters
# before the last one: a decoder's effects at the start of a decoded slice (a leading space dropped, a split
# UTF-8 character, spaces cleaned before punctuation) reach a character or two, never this far.
TAIL_MARGIN = 8


def _completes_stop(tok: Any, ids: list[int], stops: Sequence[str], width: int) -> bool:
    """Does the last token complete a stop string? Looked for in the text of the last `width` tokens (the
    whole answer only when their text is too short to hold one before the last token, or to confirm a hit),
    not in the whole answer decoded again at every step."""
    whole = len(ids) <= width
    tail = str(tok.decode(ids[-width:], skip_special_tokens=True))
    if not whole and len(tail) - len(tok.decode(ids[-1:], skip_special_tokens=True)) < width - 1:
        whole, tail = True, str(tok.decode(ids, skip_special_tokens=True))  # special tokens, split characters
    if not any(s in tail for s in stops):
        return False
    return whole or any(s in tok.decode(ids, skip_special_tokens=True) for s in stops)


def greedy_ids(adapter: Adapter, prompt: str, task: str | None, image: Any | None, max_new_tokens: int,
               until: Sequence[str] = ()) -> list[int]:
    """Token ids of the greedy continuation (EOS not included)."""
    stops = stop_strings(adapter, until)
    width = max((len(s) for s in stops), default=0) + TAIL_MARGIN
    eos = eos_ids(adapter)
    out: list[int] = []
    if max_new_tokens < 1:
        return out
    logits, step = adapter.greedy_start(prompt, task, image)
    while True:
        nxt = int(logits.argmax())
        if nxt in eos:
            break
        out.append(nxt)
        if len(out) == max_new_tokens or (stops and _completes_stop(adapter.tokenizer, out, stops, width)):
            break
        logits = step(nxt)
    return out


def cut_at_stop(text: str, stops: Sequence[str]) -> str:
    """`text` before its first stop string."""
    cut = min((text.index(s) for s in stops if s and s in text), default=len(text))
    return text[:cut]


def greedy_text(adapter: Adapter, prompt: str, task: str | None, image: Any | None, max_new_tokens: int = 32,
                until: Sequence[str] = ()) -> str:
    """The greedy continuation as text (special tokens dropped), cut before the first stop string."""
    ids = greedy_ids(adapter, prompt, task, image, max_new_tokens, until)
    return cut_at_stop(str(adapter.tokenizer.decode(ids, skip_special_tokens=True)), stop_strings(adapter, until))
