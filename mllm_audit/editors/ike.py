"""IKE: in-context editing. No weight changes; the edited model is asked with demonstrations.

Default (`variant: easyedit`): for each edit, up to `k` = 32 training facts nearest to the edit's
whole fact string ("New Fact: <prompt> <target>", compared with each training item's fact string,
as EasyEdit's index does) give demonstrations, as many as fit the model's context window with the
image tokens and a reserve for the query. Similarity is the cosine of the model's own mean-pooled
input-token embeddings (EasyEdit uses a sentence-transformer; no second model is loaded here).
`variant: prompt` is this project's earlier IKE: retrieval by the edit prompt alone, k = 4 (the
card may lower it). Demonstrations come in three kinds: copy (the fact restated), update (a
rephrased prompt with the new answer) and retain (a locality prompt with its usual answer). Items
asking the very same prompt with another answer are skipped: in debiasing, the same question has a
different target on another image, and such a demonstration contradicts the new fact. Every request
to the edited model then reads

    New Fact: <p1> <t1>\\nPrompt: <x1> <y1>\\n\\n ... New Fact: <p> <target>\\nPrompt: <request prompt>

with the image (if any) in front of the whole text, as the model's processor places it. The index
is built once per run (EasyEdit rebuilds it on every edit).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import torch

from mllm_audit.editors.base import EditContext, Edited, Editor, EditRequest
from mllm_audit.errors import AuditError

if TYPE_CHECKING:
    from mllm_audit.models.base import Adapter
    from mllm_audit.scoring.contract import Request

VARIANTS: dict[str, dict[str, Any]] = {
    "easyedit": {"k": 32, "retrieve": "fact", "fit_context": True, "reserve": 32},
    "prompt": {"k": 4, "retrieve": "prompt", "fit_context": True, "reserve": 32},
}
DEFAULT_VARIANT = "easyedit"
DEFAULT_K = VARIANTS[DEFAULT_VARIANT]["k"]


def fact_line(prompt: str, answer: str) -> str:
    return f"New Fact: {prompt} {answer}"


Demo = tuple[str, str, str, str]  # (fact prompt, fact answer, demo prompt, demo answer)


def ike_prompt(demos: Sequence[Demo], fact: tuple[str, str], query: str) -> str:
    """The text IKE asks the edited model: demonstrations, the new fact, then the query.

    All prompts are already in the model's template; the toy world trains on this exact text.
    """
    blocks = [f"{fact_line(p, t)}\nPrompt: {x} {y}" for p, t, x, y in demos]
    blocks.append(f"{fact_line(*fact)}\nPrompt: {query}")
    return "\n\n".join(blocks)


def embed_texts(adapter: Adapter, texts: Sequence[str]) -> torch.Tensor:
    """Unit-norm mean-pooled input-token embeddings [N, H]: cheap, deterministic, model-own."""
    table = adapter.input_embeddings().weight.detach().float()
    rows = []
    for t in texts:
        ids = adapter.continuation_ids(t) or [adapter.pad_id]
        rows.append(table[torch.tensor(ids, device=table.device)].mean(0))
    return torch.nn.functional.normalize(torch.stack(rows), dim=-1).cpu()


class IKEEdited(Edited):
    def __init__(self, adapter: Adapter, facts: list[tuple[EditRequest, list[Demo]]], fact_emb: torch.Tensor) -> None:
        super().__init__(adapter)
        self.facts = facts
        self.fact_emb = fact_emb

    @staticmethod
    def combine(handles: Sequence[Edited]) -> Callable[[Request], Request]:
        """Accumulated in-context edits form one memory; a request sees only its nearest fact."""
        ike = [h for h in handles if isinstance(h, IKEEdited)]
        merged = IKEEdited(ike[0].adapter, [f for h in ike for f in h.facts], torch.cat([h.fact_emb for h in ike]))
        return merged.transform

    def transform(self, request: Request) -> Request:
        """Wrap the request in the context of the nearest edit (the only one in single mode)."""
        k = 0
        if len(self.facts) > 1:
            k = int((embed_texts(self.adapter, [request.prompt]) @ self.fact_emb.T).argmax())
        edit, demos = self.facts[k]
        fmt = self.adapter.format_prompt
        text = ike_prompt(demos, (fmt(edit.prompt, edit.task), edit.target), fmt(request.prompt, request.task))
        return replace(request, prompt=text, task=None)


def hyperparameters(adapter: Adapter, options: dict[str, Any]) -> dict[str, Any]:
    """Variant defaults < the card's `edit.ike` < options. A card's `k` applies to the variant it names
    (or, without one, to `prompt`, the variant such card values were written for)."""
    card = dict(adapter.card.edit.get("ike", {}) or {})
    variant = options.get("variant") or card.get("variant") or DEFAULT_VARIANT
    if variant not in VARIANTS:
        raise AuditError(f"ike variant must be one of {', '.join(VARIANTS)}, got {variant!r}")
    if card.get("variant", "prompt") != variant:
        card = {}
    return {**VARIANTS[variant], **card, **options, "variant": variant}


def _fact_text(prompt: str, answer: str, fmt: Callable[[str, str | None], str], task: str | None) -> str:
    return fact_line(fmt(prompt, task), answer)


class IKE(Editor):
    name = "ike"

    def __init__(self) -> None:
        self._index: tuple[Any, torch.Tensor, list[Any]] | None = None
        self.last_k: list[int] = []  # demonstrations used per edit of the last apply (reports, tests)

    def _build_index(self, adapter: Adapter, train_items: Sequence[Any], by: str) -> tuple[torch.Tensor, list[Any]]:
        key = (id(adapter), tuple(getattr(it, "id", i) for i, it in enumerate(train_items)), by)
        if self._index is None or self._index[0] != key:
            items = list(train_items)
            fmt = adapter.format_prompt
            texts = [_fact_text(it.prompt, it.y_less, fmt, it.task) if by == "fact" else it.prompt for it in items]
            emb = embed_texts(adapter, texts) if items else torch.zeros(0, 1)
            self._index = (key, emb, items)
        return self._index[1], self._index[2]

    def apply(self, adapter: Adapter, requests: Sequence[EditRequest], ctx: EditContext) -> Edited:
        hp = hyperparameters(adapter, ctx.options)
        k = int(hp["k"])
        by = str(hp["retrieve"])
        emb, items = self._build_index(adapter, ctx.train_items, by)
        fmt = adapter.format_prompt
        budget = None
        if hp.get("fit_context") and adapter.max_positions:
            budget = adapter.max_positions - int(getattr(adapter, "n_image_tokens", 0) or 0) - int(hp["reserve"])
        facts = []
        self.last_k = []
        for r in requests:
            demos: list[Demo] = []
            if items and k > 0:
                query = _fact_text(r.prompt, r.target, fmt, r.task) if by == "fact" else r.prompt
                sims = embed_texts(adapter, [query]) @ emb.T
                own = fmt(r.prompt, r.task)
                for j in sims[0].argsort(descending=True).tolist():
                    it = items[j]
                    p, t = fmt(it.prompt, it.task), it.y_less
                    if p == own and t != r.target:
                        # The same question answered otherwise (another image's debiased answer):
                        # a demonstration that contradicts the new fact teaches nothing but doubt.
                        continue
                    if len(demos) == k:
                        break
                    kind = len(demos) % 3
                    if kind == 1 and it.rephrase_prompt:
                        demo = (p, t, fmt(it.rephrase_prompt, it.task), t)
                    elif kind == 2 and it.loc_prompt:
                        demo = (p, t, it.loc_prompt, it.loc_answer)
                    else:
                        demo = (p, t, p, t)
                    if budget is not None:
                        text = ike_prompt([*demos, demo], (own, r.target), own)
                        if len(adapter.continuation_ids(text)) + 1 > budget:
                            break  # the context window is full
                    demos.append(demo)
            self.last_k.append(len(demos))
            facts.append((r, demos))
        fact_emb = embed_texts(adapter, [r.prompt for r in requests])
        return IKEEdited(adapter, facts, fact_emb)
