"""KE (Knowledge Editor, De Cao et al. 2021): a hyper-network conditioned on the edit.

The edit is encoded with the model's own parts, no extra model: the mean input-token embeddings
of the prompt, of the target and of the avoided answer, and the mean of the image's encoded
features, concatenated and mapped by an MLP to a condition vector c. Per edited weight matrix W
[out, in], a head maps c to two pairs of rank-1 factors and a gate eta:

    dW = -scale_l * sigmoid(eta) * (G (.) a1 b1^T + a2 b2^T)

with G the edit loss's gradient w.r.t. W (normalised to unit RMS; the learned scale sets the
size). At initialisation a1 b1^T = 1 and a2 = 0, so an untrained KE is a gated, normalised
gradient step. One edit gets one dW; a batch of edits sums theirs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch

from .learned import Data, WeightEditor, capture

if TYPE_CHECKING:
    from ..models.base import Adapter
    from .base import EditRequest


class KENet(torch.nn.Module):
    def __init__(self, shapes: dict[str, tuple[int, int]], d_cond_in: int, d_cond: int, init_scale: float) -> None:
        super().__init__()
        self.layers = sorted(shapes)
        self.shapes = shapes
        self.norm = torch.nn.LayerNorm(d_cond_in, elementwise_affine=False)
        self.encoder = torch.nn.Sequential(torch.nn.Linear(d_cond_in, d_cond), torch.nn.Tanh(),
                                           torch.nn.Linear(d_cond, d_cond), torch.nn.Tanh())
        self.heads = torch.nn.ModuleList()
        for n in self.layers:
            d_out, d_in = shapes[n]
            head = torch.nn.Linear(d_cond, 2 * d_out + 2 * d_in + 1)
            torch.nn.init.zeros_(head.weight)
            torch.nn.init.zeros_(head.bias)
            with torch.no_grad():  # b2 starts random so that a2 (zero) receives gradient
                head.bias[2 * d_out + d_in : 2 * d_out + 2 * d_in].normal_(0.0, 1.0 / math.sqrt(d_in))
            self.heads.append(head)
        self.log_scale = torch.nn.Parameter(torch.full((len(self.layers),), math.log(init_scale)))

    def delta(self, name: str, cond: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        """dW [out, in] for one edit: condition cond [d_cond_in], gradient grad [out, in]."""
        i = self.layers.index(name)
        d_out, d_in = self.shapes[name]
        c = self.encoder(self.norm(cond))
        h = self.heads[i](c)
        a1, b1 = 1 + h[:d_out], 1 + h[d_out : d_out + d_in]
        a2, b2 = h[d_out + d_in : 2 * d_out + d_in], h[2 * d_out + d_in : 2 * d_out + 2 * d_in]
        eta = h[-1]
        g = grad / (grad.pow(2).mean().sqrt() + 1e-12)
        return -self.log_scale[i].exp() * torch.sigmoid(eta) * (g * torch.outer(a1, b1) + torch.outer(a2, b2))


class KE(WeightEditor):
    name = "ke"
    defaults: dict[str, Any] = {"d_cond": 128, "init_scale": 1e-3, "target_margin": 1.0, "c_edit": 1.0,
                                "c_loc": 1.0}

    def build(self, adapter: Adapter, hp: dict[str, Any]) -> torch.nn.Module:
        mods = self.modules(adapter)
        shapes = {n: (m.out_features, m.in_features) for n, m in mods.items()}
        hidden = adapter.input_embeddings().weight.shape[1]
        return KENet(shapes, 4 * hidden, int(hp["d_cond"]), float(hp["init_scale"]))

    def condition(self, adapter: Adapter, requests: Sequence[EditRequest], data: Data) -> torch.Tensor:
        """[B, 4H]: mean token embeddings of prompt, target, avoided answer; mean image features."""
        from ..scoring import continuation_text

        table = adapter.input_embeddings().weight.detach().float()
        feats = data.features([r.image for r in requests])

        def mean_emb(ids: list[int]) -> torch.Tensor:
            ids = ids or [adapter.pad_id]
            return table[torch.tensor(ids, device=table.device)].mean(0).cpu()

        rows = []
        for r in requests:
            parts = [
                mean_emb(adapter.continuation_ids(adapter.format_prompt(r.prompt, r.task))),
                mean_emb(adapter.continuation_ids(continuation_text(r.target))),
                mean_emb(adapter.continuation_ids(continuation_text(r.avoid))),
                feats[r.image].float().mean(0).cpu() if r.image is not None else torch.zeros(table.shape[1]),
            ]
            rows.append(torch.cat(parts))
        return torch.stack(rows)

    def deltas(self, adapter: Adapter, requests: Sequence[EditRequest], data: Data) -> dict[str, torch.Tensor]:
        net: KENet = self.require_net()  # type: ignore[assignment]
        cap, _ = capture(adapter, self.modules(adapter), requests, data, self.scope == "vision")
        cond = self.condition(adapter, requests, data).to(next(net.parameters()).device)
        out: dict[str, torch.Tensor] = {}
        for name in net.layers:
            x, g, owner = cap.x[name], cap.delta[name], cap.owner[name]
            total = None
            for k in range(len(requests)):
                rows = owner == k
                if not bool(rows.any()):
                    continue
                grad = g[rows].T @ x[rows]
                dw = net.delta(name, cond[k], grad)
                total = dw if total is None else total + dw
            if total is not None:
                out[name] = total
        return out
