"""`control-shift`: a negative control, NOT an editor to use. It edits one bias vector only.

It fine-tunes the bias of the language model's last MLP output projection (by default the last
`nn.Linear` among the card's text modules) on the target's NLL, as FT-L does, until every edit
prefers its target by `stop_margin` nats. A bias adds the same vector to the residual stream at
every position of every input: the edit cannot depend on the image, so it "flips" the edited item
by moving the answer for everyone. Reliability and the answer-protocol locality can still look
good; parity, mirror amplification and neighbour drift must show it. The tests and
benchmarks/editor_table.py use it to check that those metrics can fail (issue 17).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

from mllm_audit.editors.base import EditContext, Edited, Editor, EditRequest

if TYPE_CHECKING:
    from mllm_audit.models.base import Adapter

DEFAULTS = {"steps": 40, "lr": 0.05, "stop_margin": 0.5}


def shift_parameter(adapter: Adapter) -> str:
    """Name of the one bias vector the control edits: the last text-module Linear's bias."""
    from mllm_audit.editors.learned.base import linear_modules

    names = [n for n, m in linear_modules(adapter, "text").items() if m.bias is not None]
    if not names:
        from mllm_audit.errors import AuditError

        raise AuditError(f"card {adapter.card.name!r}: no text-module Linear with a bias for control-shift")
    return f"{names[-1]}.bias"


class ShiftControl(Editor):
    """Input-independent shift: one bias vector fine-tuned on the target (a negative control)."""

    name = "control-shift"

    def apply(self, adapter: Adapter, requests: Sequence[EditRequest], ctx: EditContext) -> Edited:
        from mllm_audit.scoring.contract import Request
        from mllm_audit.scoring.differentiable import logprob_tensor

        hp = {**DEFAULTS, **ctx.options}
        name = str(hp.get("parameter") or shift_parameter(adapter))
        param = dict(adapter.model.named_parameters())[name]
        edited = Edited(adapter, {name: param.detach().clone()})
        flags = {n: p.requires_grad for n, p in adapter.model.named_parameters()}
        for p in adapter.model.parameters():
            p.requires_grad_(False)
        param.requires_grad_(True)
        opt = torch.optim.Adam([param], lr=float(hp["lr"]))
        target = [Request(r.prompt, r.target, r.image, r.task) for r in requests]
        avoid = [Request(r.prompt, r.avoid, r.image, r.task) for r in requests]
        keys = sorted({r.image for r in requests if r.image is not None})
        steps = 0
        try:
            with torch.no_grad():
                feats = dict(zip(keys, adapter.encode_images([ctx.load_image(k) for k in keys]), strict=True))
            for _ in range(int(hp["steps"])):
                lp_t, n_t = logprob_tensor(adapter, target, feats)
                with torch.no_grad():
                    lp_a, _ = logprob_tensor(adapter, avoid, feats)
                if bool(((lp_t - lp_a) > float(hp["stop_margin"])).all()):
                    break
                loss = (-lp_t / n_t).mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                steps += 1
        finally:
            for n, p in adapter.model.named_parameters():
                p.requires_grad_(flags[n])
            opt.zero_grad(set_to_none=True)
        edited.steps = steps  # type: ignore[attr-defined]
        return edited
