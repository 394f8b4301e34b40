"""FT-L and FT-V: fine-tune part of the model on the NLL of the target answer.

Default (`variant: easyedit`, as EasyEdit's FT and its multimodal port): AdamW on the target's mean
token NLL for at most `steps` (15) steps at lr 2e-4, skipping the step and stopping once the loss
is below `stop_loss` (1e-2). `norm_constraint: EPS` clamps each weight after every step to
within EPS of its original value (EasyEdit's norm clamp, 5e-4 in its constrained FT configs; off
by default, as in EasyEdit's multimodal FT configs). FT-L tunes the *whole* last
decoder layer (the paper: "the 31st decoder layer"), FT-V the vision side the card names
(Q-Former, queries, projection).

`variant: margin` is this project's earlier FT, kept by option: the card's text modules only (the
last layer's MLP), lr 1e-3, up to 30 steps, stopping as soon as every edit prefers its target by
`stop_margin` (0.5) nats. That stop is the Reliability test itself, so its Reliability says little.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch

from mllm_audit.editors.base import EditContext, Edited, Editor, EditRequest, select_parameters
from mllm_audit.errors import AuditError

if TYPE_CHECKING:
    from mllm_audit.models.base import Adapter

VARIANTS: dict[str, dict[str, Any]] = {
    "easyedit": {"steps": 15, "lr": 2e-4, "stop_loss": 1e-2, "stop_margin": None, "norm_constraint": None,
                 "weight_decay": 0.0, "text_scope": "last_layer"},
    "margin": {"steps": 30, "lr": 1e-3, "stop_loss": None, "stop_margin": 0.5, "norm_constraint": None,
               "weight_decay": 0.0, "text_scope": "card"},
}
DEFAULT_VARIANT = "easyedit"
DEFAULTS = VARIANTS[DEFAULT_VARIANT]


def hyperparameters(adapter: Adapter, options: dict[str, Any]) -> dict[str, Any]:
    """Variant defaults < the card's `edit.ft` < the caller's options (the card may pick a variant)."""
    card = dict(adapter.card.edit.get("ft", {}) or {})
    variant = options.get("variant") or card.get("variant") or DEFAULT_VARIANT
    if variant not in VARIANTS:
        raise AuditError(f"ft variant must be one of {', '.join(VARIANTS)}, got {variant!r}")
    return {**VARIANTS[variant], **card, **options, "variant": variant}


class FineTune(Editor):
    """Fine-tune the modules of one scope ("text" or "vision")."""

    def __init__(self, scope: str, name: str) -> None:
        self.scope = scope
        self.name = name

    def modules(self, adapter: Adapter, hp: dict[str, Any]) -> list[str]:
        from mllm_audit.editors.layers import whole_last_layer

        if hp.get("modules"):
            return list(hp["modules"])
        names = adapter.module_names(self.scope)  # type: ignore[arg-type]
        if self.scope == "text" and hp.get("text_scope") == "last_layer":
            return whole_last_layer(adapter, names)
        return names

    def apply(self, adapter: Adapter, requests: Sequence[EditRequest], ctx: EditContext) -> Edited:
        from mllm_audit.editors.cache import FrozenPrefix
        from mllm_audit.scoring.contract import Request
        from mllm_audit.scoring.differentiable import logprob_tensor

        hp = hyperparameters(adapter, ctx.options)
        params = select_parameters(adapter, self.modules(adapter, hp))
        edited = Edited(adapter, {n: p.detach().clone() for n, p in params.items()})
        flags = {n: p.requires_grad for n, p in adapter.model.named_parameters()}
        for p in adapter.model.parameters():
            p.requires_grad_(False)
        for p in params.values():
            p.requires_grad_(True)
        # Fused AdamW (one kernel over all tensors): same update to float rounding, 2x faster a step on CPU.
        fused = all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in params.values())
        opt = torch.optim.AdamW(list(params.values()), lr=float(hp["lr"]), weight_decay=float(hp["weight_decay"]),
                                fused=fused or None)
        from mllm_audit.editors import objectives

        objective = objectives.objective_of(hp)
        requests = objectives.expand(requests, objective, ctx.train_items, ctx.items)
        target = [Request(r.prompt, r.target, r.image, r.task) for r in requests]
        avoid = [Request(r.prompt, r.avoid, r.image, r.task) for r in requests]
        keys = sorted({r.image for r in requests if r.image is not None})
        images = [ctx.load_image(k) for k in keys]
        vision = self.scope == "vision"
        eps = hp.get("norm_constraint")
        stop_loss, stop_margin = hp.get("stop_loss"), hp.get("stop_margin")
        was_training = adapter.model.training
        self.steps_taken = 0
        # Frozen layers (the vision tower, the decoder layers below the edited one) run once per edit.
        replay = FrozenPrefix(adapter.model, enabled=bool(hp.get("cache_frozen", True)))
        try:
            frozen = None if vision else _features(adapter, keys, images, grad=False)
            for _ in range(int(hp["steps"])):
                def forward(frozen: Any = frozen) -> tuple[Any, torch.Tensor, torch.Tensor]:
                    f = _features(adapter, keys, images, grad=True) if vision else frozen
                    return (f, *logprob_tensor(adapter, target, f or {}))

                feats, lp_t, n_t = replay("target", forward)

                def avoided(f: Any = feats) -> tuple[torch.Tensor, torch.Tensor]:
                    return logprob_tensor(adapter, avoid, f or {})  # type: ignore[no-any-return]

                lp_n = replay("neutral", avoided)[0] if objective == "neutral" else None
                loss = objectives.edit_loss(objective, lp_t, n_t, lp_n).mean()
                if stop_margin is not None:
                    with torch.no_grad():  # the neutral objective has just scored the avoided answer
                        lp_a = lp_n.detach() if lp_n is not None else replay("avoid", avoided)[0]
                    if bool(((lp_t - lp_a) > float(stop_margin)).all()):
                        break
                if stop_loss is not None and float(loss.detach()) < float(stop_loss):
                    break  # EasyEdit: no step below the threshold, and the loop ends
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                self.steps_taken += 1
                if eps is not None:
                    with torch.no_grad():
                        for n, p in params.items():
                            orig = edited._saved[n]
                            p.copy_(torch.minimum(torch.maximum(p, orig - float(eps)), orig + float(eps)))
        finally:
            for n, p in adapter.model.named_parameters():
                p.requires_grad_(flags[n])
            adapter.model.train(was_training)
            opt.zero_grad(set_to_none=True)
        edited.steps = self.steps_taken  # type: ignore[attr-defined]  # edits.jsonl `steps` (edit_effects reads it)
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
