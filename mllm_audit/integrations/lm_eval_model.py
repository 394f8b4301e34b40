"""An lm-eval model whose `loglikelihood` is this tool's contract, images included.

lm-eval's `hf-multimodal` refuses loglikelihood requests that carry images; this model answers them
(lm-eval passes `(context, continuation, {"visual": [image]})` for a task with `doc_to_image`), so the
task files `suites export --format lm-eval` writes run in lm-eval itself. lm-eval has no entry-point
group for models: importing this module registers `mllm_audit` with lm-eval's own `register_model`,
and the Python API takes an instance:

    lm_eval.simple_evaluate(model=MllmAuditLM(pretrained="toy"), tasks=[...], task_manager=...)
"""

from __future__ import annotations

from typing import Any

from lm_eval.api.instance import Instance
from lm_eval.api.model import LM
from lm_eval.api.registry import register_model

from mllm_audit.integrations.likelihood import BridgeModel


@register_model("mllm_audit")
class MllmAuditLM(BridgeModel, LM):
    """lm-eval's `LM` over any model this tool loads (`pretrained` = card name, card path or folder)."""

    MULTIMODAL = True  # lm-eval's flag: tasks with doc_to_image may run on this model

    def _parts(self, inst: Instance, k: int) -> tuple[Any, Any, str | None]:
        """(argument k, the request's image, its template task) of an lm-eval instance."""
        from mllm_audit.integrations.likelihood import one_image

        args = inst.args
        extra = args[2] if len(args) > 2 and isinstance(args[2], dict) else {}
        doc = inst.doc if isinstance(inst.doc, dict) else {}
        where = f"{inst.task_name}/{inst.doc_id}"
        return args[k], one_image(extra.get("visual"), where), (doc.get("mllm_audit_task") or self.prompt_task)

    def loglikelihood(self, requests: list[Instance], disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        from mllm_audit.integrations.likelihood import loglikelihoods
        from mllm_audit.scoring.contract import Request

        reqs: list[Request] = []
        images: dict[str, Any] = {}
        for inst in requests:
            cont, image, task = self._parts(inst, 1)
            key = None
            if image is not None:
                key = f"{inst.task_name}\x00{inst.doc_id}"
                images.setdefault(key, image)
            reqs.append(Request(prompt=str(inst.args[0]), continuation=str(cont), image=key, task=task))
        return loglikelihoods(self.adapter, reqs, images.__getitem__, self.batch_size)

    def loglikelihood_rolling(self, requests: list[Instance], disable_tqdm: bool = False) -> list[float]:
        raise NotImplementedError("mllm_audit scores continuations given a prompt, not whole documents")

    def generate_until(self, requests: list[Instance], disable_tqdm: bool = False) -> list[str]:
        from mllm_audit.integrations.generate import greedy_text

        out = []
        for inst in requests:
            gen_kwargs, image, task = self._parts(inst, 1)
            until = gen_kwargs.get("until") or []
            until = [until] if isinstance(until, str) else list(until)
            n = int(gen_kwargs.get("max_gen_toks") or gen_kwargs.get("max_new_tokens") or self.max_new_tokens)
            out.append(greedy_text(self.adapter, str(inst.args[0]), task, image, n, until))
        return out
