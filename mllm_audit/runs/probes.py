"""An item's probes (the requests its edit metrics need, built in suites/requests.py) and their
measurement on a model: margins for pairs, answer-position and all-position distributions for
locality. fix and the studies measure through here, before and after each edit."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from mllm_audit.models.base import Adapter
from mllm_audit.scoring.contract import Request
from mllm_audit.scoring.differentiable import all_position_logprobs
from mllm_audit.suites.items import Item


@dataclass(frozen=True)
class Probe:
    """The requests that measure one item's metrics."""

    pairs: dict[str, tuple[Request, Request]]  # metric -> (y_more request, y_less request)
    locality: dict[str, Request]  # metric -> request whose answer positions are compared
    full: dict[str, Request] = field(default_factory=dict)  # metric -> request compared at all positions


def probes_for(item: Item, neighbours: Sequence[Item] = ()) -> Probe:
    """The item's five-metric probes, plus its mirrors, neighbours and perception questions
    (`mirror:j`, `neighbour:j`, `perception:j`) where its meta names them."""
    from mllm_audit.scoring.contract import Request
    from mllm_audit.suites.requests import answer_pair, locality_requests, metric_pairs

    pairs = metric_pairs(item)
    for j, m in enumerate(item.meta.get("mirrors") or []):
        mirror = dataclasses.replace(item, y_more=m["y_more"], y_less=m["y_less"], image=m["image"])
        pairs[f"mirror:{j}"] = answer_pair(mirror)
    for j, nb in enumerate(neighbours):
        pairs[f"neighbour:{j}"] = answer_pair(nb)
    loc = locality_requests(item)
    for j, q in enumerate(item.meta.get("perception") or []):
        loc[f"perception:{j}"] = Request(q["prompt"], q["answer"], item.image, "vqa")
    full: dict[str, Request] = {k: loc[k] for k in ("t_locality", "m_locality") if k in loc}
    return Probe(pairs, loc, full)


def neighbours_of(item: Item, by_id: dict[str, Item]) -> list[Item]:
    """The items `meta.neighbours` names (ids missing from the suite are skipped)."""
    return [by_id[i] for i in item.meta.get("neighbours") or [] if i in by_id]


def evaluate(
    adapter: Adapter,
    probes: Sequence[Probe],
    load: Callable[[str], Any],
    transform: Callable[[Request], Request] | None,
    batch_size: int,
    scorer: Callable[[Sequence[Request], Callable[[str], Any], int], list[torch.Tensor]] | None = None,
    full_scorer: Callable[[Sequence[Request], Callable[[str], Any], int], list[tuple[torch.Tensor, int]]]
    | None = None,
) -> list[dict[str, Any]]:
    """Margins and locality distributions for many probes in one batched pass.

    `scorer` (an Edited handle's `score`) replaces the adapter for editors that route requests;
    `full_scorer` (its `full_score`) does the same for the all-position (easyedit) protocol. An
    editor that routes requests but has no `full_score` gets no easyedit locality (null).
    """
    from mllm_audit.scoring.contract import next_token_logprobs

    flat: list[Request] = []
    for p in probes:
        for more, less in p.pairs.values():
            flat += [more, less]
        flat += list(p.locality.values())
    asked = [transform(r) for r in flat] if transform else flat
    if scorer is not None:
        dists = scorer(asked, load, batch_size)
    else:
        dists = next_token_logprobs(adapter, asked, load, batch_size=batch_size)
    logps = [
        float(d.gather(-1, torch.tensor(_cont_ids(adapter, r)).unsqueeze(-1)).sum())
        for d, r in zip(dists, asked, strict=True)
    ]
    out, k = [], 0
    for p in probes:
        rec: dict[str, Any] = {}
        for name in p.pairs:
            rec[name] = logps[k] - logps[k + 1]  # margin = logp(y_more) - logp(y_less)
            k += 2
        for name in p.locality:
            rec[name] = dists[k]
            k += 1
        out.append(rec)
    if scorer is not None and full_scorer is None:
        return out
    full = [r for p in probes for r in p.full.values()]
    asked_full = [transform(r) for r in full] if transform else full
    if full_scorer is not None:
        fdists = full_scorer(asked_full, load, batch_size)
    else:
        fdists = all_position_logprobs(adapter, asked_full, load, batch_size)
    k = 0
    for p, rec in zip(probes, out, strict=True):
        for name in p.full:
            rec[f"{name}@all"] = fdists[k]
            k += 1
    return out


def _cont_ids(adapter: Adapter, req: Request) -> list[int]:
    from mllm_audit.scoring.contract import tokenize

    return tokenize(adapter, req)[1]
