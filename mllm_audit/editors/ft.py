"""FT-L and FT-V: fine-tune a few modules on the NLL of the target answer.

FT-L tunes the language side (by default the last decoder layer's MLP, from the card), FT-V the
vision side (Q-Former, its queries and the projection). AdamW on the target's mean token NLL, as
EasyEdit does; unlike EasyEdit we stop early once every edit prefers its target by `stop_margin`
nats, because steps beyond that only add collateral change.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

from .base import EditContext, Edited, Editor, EditRequest, select_parameters

if TYPE_CHECKING:
    from ..models.base import Adapter

DEFAULTS = {"steps": 30, "lr": 1e-3, "stop_margin": 0.5, "weight_decay": 0.0}


class FineTune(Editor):
    """Fine-tune the modules of one scope ("text" or "vision")."""

    def __init__(self, scope: str, name: str) -> None:
        self.scope = scope
        self.name = name

    def apply(self, adapter: Adapter, requests: Sequence[EditRequest], ctx: EditContext) -> Edited:
        from ..scoring import Request, logprob_tensor

        hp = {**DEFAULTS, **adapter.card.edit.get("ft", {}), **ctx.options}
        modules = ctx.options.get("modules") or adapter.module_names(self.scope)
        params = select_parameters(adapter, modules)
        edited = Edited(adapter, {n: p.detach().clone() for n, p in params.items()})
        flags = {n: p.requires_grad for n, p in adapter.model.named_parameters()}
        for p in adapter.model.parameters():
            p.requires_grad_(False)
        for p in params.values():
            p.requires_grad_(True)
        opt = torch.optim.AdamW(list(params.values()), lr=float(hp["lr"]), weight_decay=float(hp["weight_decay"]))
        target = [Request(r.prompt, r.target, r.image, r.task) for r in requests]
        avoid = [Request(r.prompt, r.avoid, r.image, r.task) for r in requests]
        keys = sorted({r.image for r in requests if r.image is not None})
        images = [ctx.load_image(k) for k in keys]
        vision = self.scope == "vision"
        was_training = adapter.model.training
        try:
            frozen = None if vision else _features(adapter, keys, images, grad=False)
            for _ in range(int(hp["steps"])):
                feats = _features(adapter, keys, images, grad=True) if vision else frozen
                lp_t, n_t = logprob_tensor(adapter, target, feats)
                with torch.no_grad():
                    lp_a, _ = logprob_tensor(adapter, avoid, feats)
                if bool(((lp_t - lp_a) > float(hp["stop_margin"])).all()):
                    break
                loss = (-lp_t / n_t).mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
        finally:
            for n, p in adapter.model.named_parameters():
                p.requires_grad_(flags[n])
            adapter.model.train(was_training)
            opt.zero_grad(set_to_none=True)
        return edited


def _features(adapter: Adapter, keys: list[str], images: list, grad: bool) -> dict[str, torch.Tensor]:
    if not keys:
        return {}
    with torch.set_grad_enabled(grad):
        enc = adapter.encode_images(images)
    return dict(zip(keys, enc, strict=True))


def ft_l() -> FineTune:
    return FineTune("text", "ft-l")


def ft_v() -> FineTune:
    return FineTune("vision", "ft-v")
