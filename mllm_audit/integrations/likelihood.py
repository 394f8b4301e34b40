"""What every harness bridge answers a `loglikelihood` request with: (logp, is_greedy) from the contract.

logp is scoring.contract's summed continuation log-probability; is_greedy says whether every
continuation token is the argmax of the same distribution (lm-eval's and lmms-eval's second field).
Both come from one `next_token_logprobs` pass, taken in chunks so the per-position distributions of a
large benchmark are never all held at once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from mllm_audit.models.cards import DEFAULT_MODEL

if TYPE_CHECKING:
    from mllm_audit.models.base import Adapter
    from mllm_audit.scoring.contract import Request

CHUNK = 256  # requests whose per-position distributions are held at once


def loglikelihoods(adapter: Adapter, requests: Sequence[Request], load_image: Callable[[str], Any],
                   batch_size: int = 16) -> list[tuple[float, bool]]:
    """(summed log-probability of the continuation, whether it is the greedy path), in input order."""
    import torch

    from mllm_audit.scoring.contract import next_token_logprobs, tokenize

    out: list[tuple[float, bool]] = []
    for start in range(0, len(requests), CHUNK):
        part = list(requests[start : start + CHUNK])
        dists = next_token_logprobs(adapter, part, load_image, batch_size)
        for req, dist in zip(part, dists, strict=True):
            cont = torch.tensor(tokenize(adapter, req)[1], dtype=torch.long)
            lps = dist.gather(-1, cont.unsqueeze(-1)).squeeze(-1)
            out.append((float(lps.sum()), bool((dist.argmax(-1) == cont).all())))
    return out


def one_image(visuals: Any, where: str) -> Any | None:
    """The request's image from a harness's visual list (none or one: the contract takes one image)."""
    from mllm_audit.errors import AuditError

    found = [v for v in (visuals or []) if v is not None]
    if len(found) > 1:
        raise AuditError(f"{where}: {len(found)} images in one request; the likelihood contract takes one")
    return found[0] if found else None


class BridgeModel:
    """What a harness model of this tool holds, whichever harness: the adapter (loaded from `pretrained`,
    a card name, card path or model folder, or given), the scoring batch size, the template task for
    docs without `mllm_audit_task`, and the generation length. Mixed in before the harness's base class."""

    def __init__(self, pretrained: str = DEFAULT_MODEL, device: str = "cpu", dtype: str = "fp32",
                 batch_size: int | str = 16, card: str | None = None, prompt_task: str | None = None,
                 max_new_tokens: int | str = 32, adapter: Any = None, **kwargs: Any) -> None:
        super().__init__()
        if adapter is None:
            from mllm_audit.models import load_model
            from mllm_audit.models.base import LoadOptions

            adapter = load_model(str(pretrained), LoadOptions(dtype=dtype, device=device, card=card))
        self.adapter = adapter
        self.batch_size = int(batch_size)
        self.prompt_task = prompt_task
        self.max_new_tokens = int(max_new_tokens)
