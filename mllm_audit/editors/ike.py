"""IKE: in-context editing. No weight changes; the edited model is asked with demonstrations.

For each edit, the `k` training items nearest to the edit prompt (cosine over the model's own
mean-pooled token embeddings, so no extra embedding model is needed) give demonstrations of three
kinds: copy (the fact restated), update (a rephrased prompt with the new answer) and retain (a
locality prompt with its usual answer). Items asking the very same prompt with another answer are
skipped: in debiasing, the same question has a different target on another image, and such a
demonstration contradicts the new fact. Every request to the edited model then reads

    New Fact: <p1> <t1>\\nPrompt: <x1> <y1>\\n\\n ... New Fact: <p> <target>\\nPrompt: <request prompt>

with the image (if any) in front of the whole text, as the model's processor places it. The index
is built once per run (EasyEdit rebuilds it on every edit).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import torch

from .base import EditContext, Edited, Editor, EditRequest

if TYPE_CHECKING:
    from ..models.base import Adapter
    from ..scoring import Request

DEFAULT_K = 4


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


class IKE(Editor):
    name = "ike"

    def __init__(self) -> None:
        self._index: tuple[Any, torch.Tensor, list[Any]] | None = None

    def _build_index(self, adapter: Adapter, train_items: Sequence[Any]) -> tuple[torch.Tensor, list[Any]]:
        key = (id(adapter), len(train_items))
        if self._index is None or self._index[0] != key:
            items = list(train_items)
            emb = embed_texts(adapter, [it.prompt for it in items]) if items else torch.zeros(0, 1)
            self._index = (key, emb, items)
        return self._index[1], self._index[2]

    def apply(self, adapter: Adapter, requests: Sequence[EditRequest], ctx: EditContext) -> Edited:
        k = int(ctx.options.get("k", adapter.card.edit.get("ike", {}).get("k", DEFAULT_K)))
        emb, items = self._build_index(adapter, ctx.train_items)
        fmt = adapter.format_prompt
        facts = []
        for r in requests:
            demos: list[Demo] = []
            if items and k > 0:
                sims = embed_texts(adapter, [r.prompt]) @ emb.T
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
                        demos.append((p, t, fmt(it.rephrase_prompt, it.task), t))
                    elif kind == 2 and it.loc_prompt:
                        demos.append((p, t, it.loc_prompt, it.loc_answer))
                    else:
                        demos.append((p, t, p, t))
            facts.append((r, demos))
        fact_emb = embed_texts(adapter, [r.prompt for r in requests])
        return IKEEdited(adapter, facts, fact_emb)
