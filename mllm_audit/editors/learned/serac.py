# Over 350 lines: SERAC's scope classifier, counterfactual model and routing train and route together.
"""SERAC: an edit memory, a scope classifier, and a counterfactual model; base weights never change.

- Memory: the edits themselves (prompt, image, target, avoided answer).
- Scope classifier: an embedding of a request built from the model's own parts (mean input-token
  embeddings of the formatted prompt, mean of the image's encoded features; zeros when text-only),
  standardised and projected by a learned linear map; score exp(-||e_mem - e_x||^2), max over
  the memory; in scope when the score passes `threshold`. Trained contrastively on train-split
  triples: the edit against its in-scope rephrases (prompt and image) and out-of-scope probes
  (text-only and multimodal locality, other items whose target differs).
- Counterfactual model: low-rank adapters (LoRA-style, our own, on the language model's Linear
  layers), switched on only for in-scope requests, which the counterfactual model answers with the
  memory entry in front of them ("New Fact: <prompt> <target>\\nPrompt: <query>", IKE's layout).
  Trained on the train split to prefer the edit's target on in-scope inputs. The adapters sit on
  the base model itself (`counterfactual: lora`, the default) or on a separate, usually smaller
  model of the same family (`counterfactual: <card or folder>`), whose own weights stay frozen.

Routing (`routing`, an option of `fix`: `--serac-routing`): `soft` (default, as EasyEdit's
multimodal SERAC runs with `supervised: False`) mixes the two models' next-token distributions by
the scope score s = max over memory: p = (1 - s) p_base + s p_cf at every position, so every input
is moved a little toward the counterfactual model, however far from the memory; `hard` (the
project's earlier SERAC, and SERAC's paper) sends an input to the counterfactual model only when s
passes `threshold`, leaving out-of-scope inputs exactly as the base model answers them.
Training (scope classifier and counterfactual model apart) is the same for both. Evaluation
reaches the counterfactual model through `Edited.score`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from mllm_audit.editors.base import EditContext, Edited, EditRequest
from mllm_audit.editors.ike import ike_prompt
from mllm_audit.editors.learned.base import LearnedEditor
from mllm_audit.editors.learned.objective import Data, edit_loss_terms, item_locality, item_pairs, pair_margins
from mllm_audit.errors import AuditError

if TYPE_CHECKING:
    from mllm_audit.models.base import Adapter
    from mllm_audit.scoring.contract import ImageLoader, Request
    from mllm_audit.suites.items import Item


ROUTINGS = ("soft", "hard")


def lm_linears(adapter: Adapter) -> dict[str, torch.nn.Linear]:
    """The language model's Linear layers except the output head (the LoRA targets)."""
    lm = adapter.language_model()
    head = lm.get_output_embeddings() if hasattr(lm, "get_output_embeddings") else None
    return {n: m for n, m in lm.named_modules() if isinstance(m, torch.nn.Linear) and m is not head}


class SeracNet(torch.nn.Module):
    """Scope projection (+ feature standardisation) and the counterfactual model's low-rank adapters."""

    def __init__(self, d_feat: int, d_scope: int, shapes: dict[str, tuple[int, int]], rank: int) -> None:
        super().__init__()
        self.register_buffer("feat_mean", torch.zeros(d_feat))
        self.register_buffer("feat_std", torch.ones(d_feat))
        self.register_buffer("feat_n", torch.zeros(()))
        self.proj = torch.nn.Linear(d_feat, d_scope, bias=False)
        torch.nn.init.normal_(self.proj.weight, 0.0, 1.0 / math.sqrt(d_feat))
        self.names = sorted(shapes)
        self.lora_a = torch.nn.ParameterList()
        self.lora_b = torch.nn.ParameterList()
        for n in self.names:
            d_out, d_in = shapes[n]
            self.lora_a.append(torch.nn.Parameter(torch.randn(rank, d_in) / math.sqrt(d_in)))
            self.lora_b.append(torch.nn.Parameter(torch.zeros(d_out, rank)))

    def embed(self, feats: torch.Tensor) -> torch.Tensor:
        """Scope embeddings [N, d_scope] of request features [N, d_feat]."""
        if float(self.feat_n) == 0:  # untrained: standardise with this batch's own statistics
            z = (feats - feats.mean(0)) / (feats.std(0, unbiased=False) + 1e-6)
        else:
            z = (feats - self.feat_mean) / (self.feat_std + 1e-6)
        return self.proj(z)


def scope_scores(mem: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """exp(-||e_mem - e_x||^2) [N_x, N_mem]."""
    return torch.exp(-torch.cdist(x, mem).pow(2))


class SERACEdited(Edited):
    """The memory of edits; scores requests itself, routing in-scope ones to the counterfactual model."""

    def __init__(self, adapter: Adapter, editor: SERAC, memory: list[EditRequest], mem_emb: torch.Tensor,
                 load_image: ImageLoader, routing: str = "soft") -> None:
        super().__init__(adapter)
        self.editor = editor
        self.memory = memory
        self.mem_emb = mem_emb
        self.load_image = load_image
        self.routing = routing
        self.routed: list[bool] = []  # in-scope decisions of the last scored batch (for reports, tests)
        self.weights: list[float] = []  # scope scores s of the last scored batch (soft routing's mix)
        self.score = self._score
        self.full_score = self._full_score

    @staticmethod
    def combine_score(handles: Sequence[Edited]) -> Callable[[Sequence[Request], Any, int], list[torch.Tensor]]:
        """Accumulated edits form one memory; each request sees its nearest entry."""
        s = [h for h in handles if isinstance(h, SERACEdited)]
        merged = SERACEdited(s[0].adapter, s[0].editor, [m for h in s for m in h.memory],
                             torch.cat([h.mem_emb for h in s]), s[0].load_image, s[0].routing)
        return merged._score

    def _score(self, requests: Sequence[Request], load: Any, batch_size: int) -> list[torch.Tensor]:
        from mllm_audit.scoring.contract import next_token_logprobs

        data = Data(self.adapter, load)
        with torch.no_grad():
            emb = self.editor.embed_requests(self.adapter, requests, data)
            scores = scope_scores(self.mem_emb, emb)
        best, which = scores.max(-1)
        inside = (best > float(self.editor.hp["threshold"])).tolist()
        self.routed = inside
        self.weights = best.tolist()
        if self.routing == "soft":
            return self._mix(requests, load, batch_size, best, which)
        out: list[torch.Tensor | None] = [None] * len(requests)
        base_idx = [i for i, ok in enumerate(inside) if not ok]
        cf_idx = [i for i, ok in enumerate(inside) if ok]
        if base_idx:
            for i, d in zip(base_idx, next_token_logprobs(self.adapter, [requests[i] for i in base_idx], load,
                                                          batch_size=batch_size), strict=True):
                out[i] = d
        if cf_idx:
            cf = self.editor.cf_model(self.adapter)
            asked = [self.editor.cf_request(cf, self.memory[int(which[i])], requests[i]) for i in cf_idx]
            with self.editor.counterfactual(self.adapter):
                dists = next_token_logprobs(cf, asked, load, batch_size=batch_size)
            for i, d in zip(cf_idx, dists, strict=True):
                out[i] = d
        return [d for d in out if d is not None]

    def _mix(self, requests: Sequence[Request], load: Any, batch_size: int, s: torch.Tensor, which: torch.Tensor
             ) -> list[torch.Tensor]:
        """Soft routing: log((1 - s) p_base + s p_cf + eps) per position; the counterfactual model reads
        each request with its nearest memory entry in front (EasyEdit's eps: float32 machine epsilon)."""
        from mllm_audit.scoring.contract import next_token_logprobs

        base = next_token_logprobs(self.adapter, list(requests), load, batch_size=batch_size)
        cf = self.editor.cf_model(self.adapter)
        asked = [self.editor.cf_request(cf, self.memory[int(which[i])], r) for i, r in enumerate(requests)]
        with self.editor.counterfactual(self.adapter):
            alt = next_token_logprobs(cf, asked, load, batch_size=batch_size)
        eps = torch.finfo(torch.float32).eps
        out = []
        for i, (b, a) in enumerate(zip(base, alt, strict=True)):
            w = float(s[i])
            out.append(torch.log((1 - w) * b.float().exp() + w * a.float().exp() + eps))
        return out

    def _full_score(self, requests: Sequence[Request], load: Any, batch_size: int) -> list[tuple[torch.Tensor, int]]:
        """All-position log-probabilities (the easyedit locality protocol, runs/fix.py), routed as `_score`:
        soft routing mixes the two models at every position of the request's own sequence."""
        from mllm_audit.scoring.differentiable import all_position_logprobs

        data = Data(self.adapter, load)
        with torch.no_grad():
            best, which = scope_scores(self.mem_emb, self.editor.embed_requests(self.adapter, requests, data)).max(-1)
        if self.routing == "soft":
            return self._full_mix(requests, load, batch_size, best, which)
        inside = (best > float(self.editor.hp["threshold"])).tolist()
        out: list[Any] = [None] * len(requests)
        base_idx = [i for i, ok in enumerate(inside) if not ok]
        for i, d in zip(base_idx, all_position_logprobs(self.adapter, [requests[i] for i in base_idx], load,
                                                        batch_size), strict=True):
            out[i] = d
        cf_idx = [i for i, ok in enumerate(inside) if ok]
        if cf_idx:
            cf = self.editor.cf_model(self.adapter)
            asked = [self.editor.cf_request(cf, self.memory[int(which[i])], requests[i]) for i in cf_idx]
            with self.editor.counterfactual(self.adapter):
                for i, d in zip(cf_idx, all_position_logprobs(cf, asked, load, batch_size), strict=True):
                    out[i] = d
        return out

    def _full_mix(self, requests: Sequence[Request], load: Any, batch_size: int, s: torch.Tensor,
                  which: torch.Tensor) -> list[tuple[torch.Tensor, int]]:
        """Soft routing over all positions: the counterfactual model's longer sequence (memory entry in
        front) is aligned as easyedit_locality aligns it (image positions from the front, text from
        the end), then mixed by s as `_mix` mixes the answer positions."""
        from mllm_audit.scoring.differentiable import all_position_logprobs

        base = all_position_logprobs(self.adapter, list(requests), load, batch_size)
        cf = self.editor.cf_model(self.adapter)
        asked = [self.editor.cf_request(cf, self.memory[int(which[i])], r) for i, r in enumerate(requests)]
        with self.editor.counterfactual(self.adapter):
            alt = all_position_logprobs(cf, asked, load, batch_size)
        eps = torch.finfo(torch.float32).eps
        out: list[tuple[torch.Tensor, int]] = []
        for i, ((b, n_img), (a, _)) in enumerate(zip(base, alt, strict=True)):
            n_text = b.shape[0] - n_img
            a = torch.cat([a[:n_img], a[a.shape[0] - n_text :]]) if n_text else a[:n_img]
            w = float(s[i])
            out.append((torch.log((1 - w) * b.exp() + w * a.exp() + eps), n_img))
        return out


class SERAC(LearnedEditor):
    name = "serac"
    defaults: dict[str, Any] = {"d_scope": 32, "rank": 8, "threshold": 0.5, "target_margin": 2.0,
                                "c_scope": 1.0, "c_cf": 1.0}
    train_defaults: dict[str, Any] = {"lr": 1e-2, "batch": 8, "steps": 400, "patience": 6}

    def build(self, adapter: Adapter, hp: dict[str, Any]) -> torch.nn.Module:
        hidden = adapter.input_embeddings().weight.shape[1]
        self.hp = hp
        shapes = {n: (m.out_features, m.in_features) for n, m in lm_linears(self.cf_model(adapter)).items()}
        return SeracNet(2 * hidden, int(hp["d_scope"]), shapes, int(hp["rank"]))

    # -- the scope classifier
    def request_features(self, adapter: Adapter, requests: Sequence[Request], data: Data) -> torch.Tensor:
        """[N, 2H]: mean input-token embedding of the formatted prompt; mean image features (or 0)."""
        table = adapter.input_embeddings().weight.detach().float()
        if not requests:  # a suite without locality probes has no negatives: an empty [0, 2H], not a crash
            return torch.zeros((0, 2 * table.shape[1]))
        feats = data.features([r.image for r in requests])
        rows = []
        for r in requests:
            ids = adapter.continuation_ids(adapter.format_prompt(r.prompt, r.task)) or [adapter.pad_id]
            text = table[torch.tensor(ids, device=table.device)].mean(0).cpu()
            img = feats[r.image].float().mean(0).cpu() if r.image is not None else torch.zeros_like(text)
            rows.append(torch.cat([text, img]))
        return torch.stack(rows)

    def embed_requests(self, adapter: Adapter, requests: Sequence[Request], data: Data) -> torch.Tensor:
        net: SeracNet = self.require_net()  # type: ignore[assignment]
        return net.embed(self.request_features(adapter, requests, data))

    # -- the counterfactual model
    def cf_model(self, adapter: Adapter) -> Adapter:
        """The model that answers in-scope requests: the base (LoRA on it) or a separate one."""
        spec = self.hp.get("counterfactual", "lora")
        if spec in (None, "lora"):
            return adapter
        cached = getattr(self, "_cf", None)
        if cached is None or cached[0] != spec:
            from mllm_audit.models import load_model
            from mllm_audit.models.base import LoadOptions

            other = load_model(str(spec), LoadOptions(dtype=adapter.options.dtype, device=str(adapter.device)))
            for p in other.model.parameters():
                p.requires_grad_(False)
            self._cf = cached = (spec, other, Data(other, lambda k: None))
        return cached[1]

    def cf_data(self, adapter: Adapter, data: Data) -> Data:
        """Image features as the counterfactual model encodes them (its own vision side)."""
        cf = self.cf_model(adapter)
        if cf is adapter:
            return data
        cf_data: Data = self._cf[2]
        cf_data.load_image = data.load_image
        return cf_data

    def cf_request(self, adapter: Adapter, edit: EditRequest, request: Request) -> Request:
        """The in-scope request as the counterfactual model reads it: the memory entry in front
        (`cf_context`), or as is when the counterfactual model answers from the input alone."""
        if not self.hp.get("cf_context", True):
            return request
        fmt = adapter.format_prompt
        text = ike_prompt([], (fmt(edit.prompt, edit.task), edit.target), fmt(request.prompt, request.task))
        return replace(request, prompt=text, task=None)

    @contextmanager
    def counterfactual(self, adapter: Adapter) -> Iterator[None]:
        """The base model with the low-rank adapters on (x @ A^T @ B^T added to each Linear's output)."""
        net: SeracNet = self.require_net()  # type: ignore[assignment]
        mods = lm_linears(self.cf_model(adapter))
        handles = []
        for k, n in enumerate(net.names):
            a, b = net.lora_a[k], net.lora_b[k]

            def hook(m: torch.nn.Module, args: tuple, out: torch.Tensor, a: Any = a, b: Any = b) -> torch.Tensor:
                return out + F.linear(F.linear(args[0], a.to(out.dtype)), b.to(out.dtype))

            handles.append(mods[n].register_forward_hook(hook))
        try:
            yield
        finally:
            for h in handles:
                h.remove()

    # -- training
    def train_loss(self, adapter: Adapter, items: Sequence[Item], data: Data) -> tuple[torch.Tensor, dict[str, float]]:
        from mllm_audit.scoring.contract import Request

        net: SeracNet = self.require_net()  # type: ignore[assignment]
        # Scope: anchors are the edits; positives their rephrases; negatives locality probes and
        # other items of the batch whose target differs (sharing a target, routing is harmless).
        anchors = [Request(it.prompt, it.y_less, it.image, it.task) for it in items]
        pos, pos_of = [], []
        for k, it in enumerate(items):
            for _, less in item_pairs(it):
                pos.append(less)
                pos_of.append(k)
        negs = [r for it in items for r in item_locality(it)]
        feats = self.request_features(adapter, anchors + pos + negs, data)
        if net.training:
            with torch.no_grad():
                m, s, n = net.feat_mean, net.feat_std, net.feat_n
                k = feats.shape[0]
                tot = n + k
                bm = feats.mean(0)
                new_mean = m + (bm - m) * (k / tot)
                new_var = (s.pow(2) * n + feats.var(0, unbiased=False) * k + (bm - m).pow(2) * n * k / tot) / tot
                m.copy_(new_mean)
                s.copy_(new_var.sqrt())
                n.copy_(tot)
        emb = net.embed(feats)
        e_a, e_p, e_n = emb[: len(anchors)], emb[len(anchors) : len(anchors) + len(pos)], emb[len(anchors) + len(pos) :]
        d_pos = (e_p - e_a[torch.tensor(pos_of)]).pow(2).sum(-1)
        neg_d = [torch.cdist(e_n, e_a).pow(2).flatten()] if len(negs) else []
        targets = [it.y_less for it in items]
        cross = torch.tensor([[targets[i] != targets[j] for j in range(len(items))] for i in range(len(items))])
        pd = torch.cdist(e_p, e_a).pow(2)[cross[torch.tensor(pos_of)]]
        if pd.numel():
            neg_d.append(pd)
        d_neg = torch.cat(neg_d) if neg_d else torch.zeros(0)
        l_scope = d_pos.mean()
        if d_neg.numel():  # -log(1 - exp(-d^2)): pushes negatives out of the threshold's reach
            l_scope = l_scope + (-torch.log(-torch.expm1(-d_neg.clamp(min=1e-4)))).mean()
        thr = float(self.hp["threshold"])
        s_pos, s_neg = torch.exp(-d_pos.detach()), torch.exp(-d_neg.detach())
        scope_acc = float(torch.cat([(s_pos > thr).float(), (s_neg <= thr).float()]).mean())
        # Counterfactual: each in-scope input read with its edit in front prefers the target.
        cf = self.cf_model(adapter)
        cf_pairs = []
        for it in items:
            edit = EditRequest(it.id, it.prompt, it.y_less, it.y_more, it.image, it.task)
            for more, less in item_pairs(it):
                cf_pairs.append((self.cf_request(cf, edit, more), self.cf_request(cf, edit, less)))
        with self.counterfactual(adapter):
            feats = self.cf_data(adapter, data).features([r.image for p in cf_pairs for r in p])
            margin = pair_margins(cf, cf_pairs, feats)
        l_cf = edit_loss_terms(margin, float(self.hp["target_margin"])).mean()
        loss = float(self.hp["c_scope"]) * l_scope + float(self.hp["c_cf"]) * l_cf
        stats = {"scope": float(l_scope.detach()), "cf": float(l_cf.detach()), "scope_acc": scope_acc,
                 "acc": float((margin < 0).float().mean())}
        return loss, stats

    def apply(self, adapter: Adapter, requests: Sequence[EditRequest], ctx: EditContext) -> Edited:
        """Store the edits in memory; nothing in the model changes."""
        from mllm_audit.scoring.contract import Request

        routing = str(ctx.options.get("routing") or self.hp.get("routing") or "soft")
        if routing not in ROUTINGS:
            raise AuditError(f"--serac-routing must be one of {', '.join(ROUTINGS)}, got {routing!r}")
        self.require_net().eval()
        data = Data(adapter, ctx.load_image)
        with torch.no_grad():
            mem = self.embed_requests(adapter, [Request(r.prompt, r.target, r.image, r.task) for r in requests], data)
        return SERACEdited(adapter, self, list(requests), mem, ctx.load_image, routing)

