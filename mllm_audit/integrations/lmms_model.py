"""An lmms-eval model whose `loglikelihood` is this tool's exact likelihood contract.

lmms-eval's own VLM models score a multiple-choice answer by the mean loss over the prompt-and-answer
forward (its LLaVA model: issue #370), so their choices are not log-probabilities. This model answers
every `loglikelihood` request with scoring.contract: the summed log-probability of the continuation
tokens given the image and the prompt, each image encoded once, prefixes shared through the KV cache,
for whatever family loads (`pretrained` = a card name, card path or model folder, as `--model`).
`generate_until` decodes greedily through the same adapter (integrations/generate.py).

Registered through lmms-eval's entry-point group `lmms_eval.models` (pyproject.toml), so

    lmms-eval --model mllm_audit --model_args pretrained=toy,batch_size=16 --tasks ...

A request's prompt template: the doc's `mllm_audit_task` field (the exported suites carry it,
integrations/harness_tasks.py), else the `prompt_task` model argument, else the card's default.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lmms_eval.api.instance import Instance
from lmms_eval.api.model import lmms

from mllm_audit.integrations.likelihood import BridgeModel


class MllmAuditLMM(BridgeModel, lmms):
    """lmms-eval's `lmms` over any model this tool loads."""

    is_simple = True

    # ---- what lmms-eval hands a simple model ------------------------------------------------------
    def _doc(self, task: str, split: str, doc_id: int) -> Any:
        return self.task_dict[task][split][doc_id]

    def _image(self, doc_to_visual: Callable[[Any], Any] | None, doc: Any, where: str) -> Any | None:
        from mllm_audit.integrations.likelihood import one_image

        return one_image(doc_to_visual(doc) if doc_to_visual is not None else None, where)

    def _template_task(self, doc: Any) -> str | None:
        task = doc.get("mllm_audit_task") if isinstance(doc, dict) else None
        return str(task) if task else self.prompt_task

    def requests_of(self, instances: list[Instance]) -> tuple[list[Any], dict[str, Any]]:
        """The contract's requests for lmms-eval loglikelihood instances, and their images by key."""
        from mllm_audit.scoring.contract import Request

        reqs, images = [], {}
        for inst in instances:
            context, target, doc_to_visual, doc_id, task, split = inst.args[:6]
            doc = self._doc(task, split, doc_id)
            continuation = target if isinstance(target, str) else str(target(doc))
            key = f"{task}\x00{split}\x00{doc_id}"
            if key not in images:
                images[key] = self._image(doc_to_visual, doc, f"{task}/{split}/{doc_id}")
            image = key if images[key] is not None else None
            reqs.append(Request(prompt=context, continuation=continuation, image=image, task=self._template_task(doc)))
        return reqs, images

    # ---- the three request types ------------------------------------------------------------------------
    def loglikelihood(self, requests: list[Instance]) -> list[tuple[float, bool]]:
        """(summed log-probability of the continuation, whether it is the greedy path), per request."""
        from mllm_audit.integrations.likelihood import loglikelihoods

        reqs, images = self.requests_of(requests)
        return loglikelihoods(self.adapter, reqs, images.__getitem__, self.batch_size)

    def generate_until(self, requests: list[Instance]) -> list[str]:
        """Greedy answers through the adapter (no sampling: a harness run is then reproducible)."""
        from mllm_audit.integrations.generate import greedy_text

        out = []
        for inst in requests:
            context, gen_kwargs, doc_to_visual, doc_id, task, split = inst.args[:6]
            doc = self._doc(task, split, doc_id)
            until = gen_kwargs.get("until") or []
            until = [until] if isinstance(until, str) else list(until)
            n = int(gen_kwargs.get("max_new_tokens") or self.max_new_tokens)
            image = self._image(doc_to_visual, doc, f"{task}/{split}/{doc_id}")
            out.append(greedy_text(self.adapter, context, self._template_task(doc), image, n, until))
        return out

    def generate_until_multi_round(self, requests: list[Instance]) -> list[str]:
        raise NotImplementedError("mllm_audit answers single-round requests (loglikelihood, generate_until)")
