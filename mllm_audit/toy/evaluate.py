"""Read the toy model's beliefs back through the scoring contract (what the tests check)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from mllm_audit.scoring.contract import Request, continuation_text, next_token_logprobs, score
from mllm_audit.suites.items import Item
from mllm_audit.suites.requests import answer_pair
from mllm_audit.suites.requests import locality_requests as item_locality


def margins(
    adapter: Any, items: Sequence[Item], load_image: Callable[[str], Any], rephrased: bool = False
) -> list[float]:
    """log p(y_more) - log p(y_less) per item, scored exactly as `scan` scores it."""
    reqs: list[Request] = []
    for it in items:
        prompt = it.rephrase_prompt if rephrased and it.rephrase_prompt else it.prompt
        image = it.rephrase_image if rephrased and it.rephrase_image else it.image
        reqs += answer_pair(it, prompt, image)
    s = score(adapter, reqs, load_image, batch_size=64)
    return [s[2 * i].logp - s[2 * i + 1].logp for i in range(len(items))]


def top1_rate(adapter: Any, requests: Sequence[Request], load_image: Callable[[str], Any] | None) -> float:
    """Share of requests whose every answer token is the model's top-1 next token."""
    dists = next_token_logprobs(adapter, requests, load_image, batch_size=64)
    ok = 0
    for r, d in zip(requests, dists, strict=True):
        ids = adapter.continuation_ids(continuation_text(r.continuation))
        ok += int(all(int(d[t].argmax()) == ids[t] for t in range(len(ids))))
    return ok / max(1, len(requests))


def locality_requests(items: Sequence[Item]) -> tuple[list[Request], list[Request]]:
    """Text and multimodal locality probes of the items (suites.requests), each distinct one once."""
    text: dict[tuple[str, str], Request] = {}
    mm: dict[tuple[str, str, str], Request] = {}
    for it in items:
        for kind, r in item_locality(it).items():
            if kind == "t_locality":
                text.setdefault((r.prompt, r.continuation), r)
            else:
                mm.setdefault((str(r.image), r.prompt, r.continuation), r)
    return [text[k] for k in sorted(text)], [mm[k] for k in sorted(mm)]


def write_untrained_state(editor: str, adapter: Any, out: Any, objective: str | None = None) -> Any:
    """Save a learned editor's *untrained* state (its initialisation: MEND and KE start from an
    identity map, SERAC from zero adapters and a random scope projection): a negative control that
    must fail the bars a trained state passes (issue 17). `objective` (MEND, KE): the edit objective
    the state is recorded under, to compare with a state trained under it."""
    from pathlib import Path

    from mllm_audit.editors import make_editor

    ed = make_editor(editor)
    ed.setup(adapter, {"objective": objective} if objective else None)  # type: ignore[attr-defined]
    ed.save_state(Path(out), adapter, {"untrained": True, "history": []})  # type: ignore[attr-defined]
    return Path(out)
