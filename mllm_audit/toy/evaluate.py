"""Read the toy model's beliefs back through the scoring contract (what the tests check)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from mllm_audit.scoring.contract import Request, next_token_logprobs, score
from mllm_audit.suites.items import Item


def margins(
    adapter: Any, items: Sequence[Item], load_image: Callable[[str], Any], rephrased: bool = False
) -> list[float]:
    """log p(y_more) - log p(y_less) per item, scored exactly as `scan` scores it."""
    reqs: list[Request] = []
    for it in items:
        prompt = it.rephrase_prompt if rephrased and it.rephrase_prompt else it.prompt
        image = it.rephrase_image if rephrased and it.rephrase_image else it.image
        reqs += [Request(prompt, it.y_more, image, it.task), Request(prompt, it.y_less, image, it.task)]
    s = score(adapter, reqs, load_image, batch_size=64)
    return [s[2 * i].logp - s[2 * i + 1].logp for i in range(len(items))]


def top1_rate(adapter: Any, requests: Sequence[Request], load_image: Callable[[str], Any] | None) -> float:
    """Share of requests whose every answer token is the model's top-1 next token."""
    dists = next_token_logprobs(adapter, requests, load_image, batch_size=64)
    ok = 0
    for r, d in zip(requests, dists, strict=True):
        ids = adapter.continuation_ids(" " + r.continuation)
        ok += int(all(int(d[t].argmax()) == ids[t] for t in range(len(ids))))
    return ok / max(1, len(requests))


def locality_requests(items: Sequence[Item]) -> tuple[list[Request], list[Request]]:
    """Text (loc_prompt as written, no template) and multimodal (vqa template) locality probes."""
    text = {(it.loc_prompt, it.loc_answer) for it in items if it.loc_prompt and it.loc_answer}
    mm = {(it.m_loc_image, it.m_loc_prompt, it.m_loc_answer) for it in items if it.m_loc_image}
    return (
        [Request(p, a) for p, a in sorted(text)],
        [Request(q, a, img, "vqa") for img, q, a in sorted(mm)],  # type: ignore[arg-type]
    )


def write_untrained_state(editor: str, adapter: Any, out: Any) -> Any:
    """Save a learned editor's *untrained* state (its initialisation: MEND and KE start from an
    identity map, SERAC from zero adapters and a random scope projection): a negative control that
    must fail the bars a trained state passes (issue 17)."""
    from pathlib import Path

    from mllm_audit.editors import make_editor

    ed = make_editor(editor)
    ed.setup(adapter)  # type: ignore[attr-defined]
    ed.save_state(Path(out), adapter, {"untrained": True, "history": []})  # type: ignore[attr-defined]
    return Path(out)
