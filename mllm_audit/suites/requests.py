"""Where a suite item becomes scoring requests: one place, one sign.

Every pair is (y_more request, y_less request), so a margin is always logp(y_more) - logp(y_less):
> 0 when the model prefers the stereotypical answer (suites.items.sample_margin). scan, fix, the
learned editors and the toy world's checks all build their requests here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mllm_audit.scoring.contract import Request

if TYPE_CHECKING:
    from mllm_audit.suites.items import Item

Pair = tuple[Request, Request]


def answer_pair(item: Item, prompt: str | None = None, image: str | None = None) -> Pair:
    """(y_more, y_less) asked with the item's prompt and image, or the ones given (a rephrasing)."""
    p = item.prompt if prompt is None else prompt
    img = item.image if image is None else image
    return Request(p, item.y_more, img, item.task), Request(p, item.y_less, img, item.task)


def metric_pairs(item: Item) -> dict[str, Pair]:
    """The paper's three pair metrics: reliability, and T/V-generality where the item has a rephrasing."""
    pairs = {"reliability": answer_pair(item)}
    if item.rephrase_prompt:
        pairs["t_generality"] = answer_pair(item, prompt=item.rephrase_prompt)
    if item.rephrase_image:
        pairs["v_generality"] = answer_pair(item, image=item.rephrase_image)
    return pairs


def locality_requests(item: Item) -> dict[str, Request]:
    """T-locality (the text prompt as written: no template, no image) and M-locality (a question about an
    unrelated image, so the VQA template whatever the edited item's task: EasyEdit's CaptionDataset
    formats `m_loc_q` with its "Question: {} Short answer:" prompt too), where the item has them."""
    loc: dict[str, Request] = {}
    if item.loc_prompt and item.loc_answer:
        loc["t_locality"] = Request(item.loc_prompt, item.loc_answer, None, None)
    if item.m_loc_prompt and item.m_loc_answer and item.m_loc_image:
        loc["m_locality"] = Request(item.m_loc_prompt, item.m_loc_answer, item.m_loc_image, "vqa")
    return loc
