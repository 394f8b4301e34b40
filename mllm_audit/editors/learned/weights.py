"""Learned weight editors (MEND, KE): the rank-1 gradient factors of the edit loss captured at the
edited layers, and the meta-loss (edit + locality) their networks are trained on."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from mllm_audit.editors.base import EditContext, Edited, EditRequest
from mllm_audit.editors.learned.base import LearnedEditor, added_deltas, linear_modules
from mllm_audit.editors.learned.objective import (
    Captured,
    Data,
    edit_objective,
    edit_request,
    item_locality,
    item_pairs,
    kl_pre_post,
    pair_scores,
)
from mllm_audit.models.base import Adapter
from mllm_audit.scoring.contract import Request
from mllm_audit.scoring.differentiable import continuation_distributions
from mllm_audit.suites.items import Item


def capture(
    adapter: Adapter, modules: dict[str, torch.nn.Linear], requests: Sequence[EditRequest], data: Data, vision: bool,
    loss_kind: str = "margin",
) -> tuple[Captured, torch.Tensor]:
    """Layer inputs x and output gradients delta of the edit loss, per edited layer (rank-1 factors).

    A zero tensor that requires grad is added to each hooked output, so the gradient w.r.t. that
    output is read with autograd.grad without touching any parameter's .grad. Only rows with a
    non-zero gradient are kept (the positions the loss reaches). `loss_kind`: the edit loss whose
    gradient is decomposed (`nll` of the target, or the `margin` loss). Returns the margins too.
    """

    xs: dict[str, torch.Tensor] = {}
    zs: dict[str, torch.Tensor] = {}
    handles = []
    for name, mod in modules.items():
        def hook(m: torch.nn.Module, args: tuple, out: torch.Tensor, name: str = name) -> torch.Tensor:
            xs[name] = args[0].detach()
            zs[name] = torch.zeros_like(out, requires_grad=True)
            return out + zs[name]

        handles.append(mod.register_forward_hook(hook))
    pairs = [(Request(r.prompt, r.avoid, r.image, r.task), Request(r.prompt, r.target, r.image, r.task))
             for r in requests]
    keys = [r.image for r in requests]
    cached = {} if vision else data.features(keys)  # text edits: features from Data's own cache (unused for vision)

    def forward() -> tuple[torch.Tensor, torch.Tensor]:
        return pair_scores(adapter, pairs, data.features(keys, grad=True) if vision else cached)

    try:
        with torch.enable_grad():
            margin, nll = data.forward("capture", (pairs, vision), forward)
            loss = edit_objective(loss_kind, margin, nll, 0.0).sum()
            names = list(zs)
            grads = torch.autograd.grad(loss, [zs[n] for n in names], allow_unused=True)
    finally:
        for h in handles:
            h.remove()
    cap = Captured({}, {}, {})
    for name, g in zip(names, grads, strict=True):
        x = xs[name]
        g = torch.zeros_like(zs[name]) if g is None else g
        # Rows are (sequence, position) or (image, query) flattened; some models (OPT) flatten the
        # batch themselves, so rows per sequence come from the count of sequences. Text sequences
        # alternate y_less / y_more per request; vision rows belong to an image, i.e. to a request.
        x2, g2 = x.reshape(-1, x.shape[-1]), g.reshape(-1, g.shape[-1])
        if vision:
            keys = sorted({r.image for r in requests if r.image is not None})
            first = torch.tensor([next(i for i, r in enumerate(requests) if r.image == k) for k in keys])
            owner = first[torch.arange(x2.shape[0]) // (x2.shape[0] // len(keys))]
        else:
            owner = torch.arange(x2.shape[0]) // (x2.shape[0] // (2 * len(requests))) // 2
        keep = g2.abs().sum(-1) > 0
        cap.x[name], cap.delta[name], cap.owner[name] = x2[keep].float(), g2[keep].float(), owner[keep]
    return cap, margin.detach()


class WeightEditor(LearnedEditor):
    """MEND and KE: the network maps an edit's gradient to a weight change dW per edited layer."""

    def modules(self, adapter: Adapter) -> dict[str, torch.nn.Linear]:
        names = self.hp.get("modules")
        all_lin = {n: m for n, m in adapter.model.named_modules() if isinstance(m, torch.nn.Linear)}
        if names:
            return {n: all_lin[n] for n in names}
        return linear_modules(adapter, self.scope, int(self.hp.get("text_layers", 1)),  # type: ignore[arg-type]
                              int(self.hp.get("vision_layers", 1)))

    def captured(self, adapter: Adapter, requests: Sequence[EditRequest], data: Data) -> tuple[Captured, torch.Tensor]:
        """The rank-1 gradient factors of this editor's edit loss at its edited layers."""
        return capture(adapter, self.modules(adapter), requests, data, self.scope == "vision", self.loss_kind())

    def loss_kind(self) -> str:
        """The edit loss: the variant's (nll or margin), or the squared margin under `objective: neutral`."""
        return "neutral" if self.hp.get("objective") == "neutral" else str(self.hp.get("loss", "margin"))

    def deltas(self, adapter: Adapter, requests: Sequence[EditRequest], data: Data) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def train_loss(self, adapter: Adapter, items: Sequence[Item], data: Data) -> tuple[torch.Tensor, dict[str, float]]:
        """Mean over the items of the loss of editing each one alone (as `fix` single mode does)."""
        parts = [self._edit_loss(adapter, it, data) for it in items]
        loss = torch.stack([p[0] for p in parts]).mean()
        stats = {k: sum(p[1][k] for p in parts) / len(parts) for k in parts[0][1]}
        return loss, stats

    def _edit_loss(self, adapter: Adapter, item: Item, data: Data) -> tuple[torch.Tensor, dict[str, float]]:
        from mllm_audit.editors.learned.objectives import objective_requests, request_pair

        mods = self.modules(adapter)
        reqs = objective_requests(self, [edit_request(item)], {item.id: item})
        dws = self.deltas(adapter, reqs, data)
        pairs = item_pairs(item) + [request_pair(r) for r in reqs[1:]]  # + the partner image (paired, neutral)
        pairs += self.unseen_pairs(item, reqs)
        loc = item_locality(item)
        pre = data.pre(loc)
        vision = self.scope == "vision"
        keys = [r.image for p in pairs for r in p] + [r.image for r in loc]
        with added_deltas(mods, dws):  # one pass per replayed forward: the frozen layers replay (Data.forward)
            feats = (data.forward("features", keys, lambda: data.features(keys, grad=True)) if vision
                     else data.features(keys))
            margin, nll = data.forward("pairs", (pairs, vision), lambda: pair_scores(adapter, pairs, feats))
            post = (data.forward("locality", (loc, vision), lambda: continuation_distributions(adapter, loc, feats))
                    if loc else [])
        l_edit = edit_objective(self.loss_kind(), margin, nll, float(self.hp.get("target_margin", 1.0))).mean()
        l_loc = kl_pre_post(pre, post) if loc else torch.zeros(())
        loss = float(self.hp.get("c_edit", 1.0)) * l_edit + self.locality_term(l_loc)
        stats = {"edit": float(l_edit.detach()), "loc": float(l_loc.detach()), "rel": float(margin[0] < 0),
                 "acc": float((margin < 0).float().mean())}
        return loss, stats

    def unseen_pairs(self, item: Item, reqs: Sequence[EditRequest]) -> list[tuple[Request, Request]]:
        """Pairs the meta-loss scores that the edit never sees: none here (KE adds one under neutral)."""
        return []

    def locality_term(self, l_loc: torch.Tensor) -> torch.Tensor:
        """How the locality KL enters the meta-loss: a fixed weight c_loc (MEND); KE overrides it."""
        return float(self.hp.get("c_loc", 1.0)) * l_loc

    def apply(self, adapter: Adapter, requests: Sequence[EditRequest], ctx: EditContext) -> Edited:
        """Write W + dW into the edited layers (originals kept for an exact restore)."""
        from mllm_audit.editors.learned.objectives import check_state_objective, objective_requests

        net = self.require_net()
        check_state_objective(self, ctx.options)
        requests = objective_requests(self, requests, ctx.items, ctx.train_items)
        net.eval()
        mods = self.modules(adapter)
        data = Data(adapter, ctx.load_image)
        with torch.no_grad():
            dws = self.deltas(adapter, list(requests), data)
        saved = {f"{n}.weight": mods[n].weight.detach().clone() for n in dws}
        edited = Edited(adapter, saved)
        with torch.no_grad():
            for n, dw in dws.items():
                mods[n].weight.add_(dw.to(mods[n].weight.dtype))
        return edited
