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


def write_exact_match_state(trained: Any, adapter: Any, out: Any, sharpen: float = 30.0) -> Any:
    """A trained SERAC state whose scope is made an exact-match lookup: its projection scaled by
    `sharpen`, so the scope score exp(-||e_mem - e_x||^2) is 1 on the edit's own request and ~0 on
    anything else, a paraphrase included (the negative control of SERAC's T-generality, issue 26)."""
    from pathlib import Path

    import torch

    from mllm_audit.editors import make_editor

    ed = make_editor("serac")
    ed.load_state(Path(trained), adapter)  # type: ignore[attr-defined]
    with torch.no_grad():
        ed.net.proj.weight.mul_(sharpen)  # type: ignore[attr-defined]
    ed.save_state(Path(out), adapter, {"exact_match_of": str(trained), "sharpen": sharpen})  # type: ignore[attr-defined]
    return Path(out)


def image_position_top10(adapter: Any, editor: str, items: Sequence[Item], load_image: Callable[[str], Any],
                         train_items: Sequence[Item], state: Any = None, k: int = 10) -> dict[str, list[float]]:
    """Per single edit of `items`: easyedit's rank-by-rank top-k agreement on the item's multimodal
    locality probe, split into its image positions and its text positions (the metric
    m_locality_top10_easyedit pools both). Weight editors only (they edit the adapter in place)."""
    from mllm_audit.editors import make_editor
    from mllm_audit.editors.base import EditContext, EditRequest
    from mllm_audit.scoring.differentiable import all_position_logprobs

    ed = make_editor(editor)
    if state is not None:
        ed.load_state(state, adapter)  # type: ignore[attr-defined]
    ctx = EditContext(load_image=load_image, train_items=list(train_items))
    ctx.items = {it.id: it for it in items}  # type: ignore[attr-defined]
    out: dict[str, list[float]] = {"image": [], "text": []}
    for it in items:
        probe = [Request(it.m_loc_prompt, it.m_loc_answer, it.m_loc_image, "vqa")]  # type: ignore[arg-type]
        (pre, n_img), = all_position_logprobs(adapter, probe, load_image, 8)
        edited = ed.apply(adapter, [EditRequest(it.id, it.prompt, it.y_less, it.y_more, it.image, it.task,
                                                it.rephrase_prompt)], ctx)
        try:
            (post, _), = all_position_logprobs(adapter, probe, load_image, 8)
        finally:
            edited.restore()
        same = (pre.topk(k, dim=-1).indices == post.topk(k, dim=-1).indices).float()
        out["image"].append(float(same[:n_img].mean()))
        out["text"].append(float(same[n_img:].mean()) if same.shape[0] > n_img else float("nan"))
    return out
