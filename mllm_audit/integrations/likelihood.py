"""What every harness bridge answers a `loglikelihood` request with: (logp, is_greedy) from the contract.

logp is scoring.contract's summed continuation log-probability; is_greedy says whether every
continuation token is the argmax of the same distribution (lm-eval's and lmms-eval's second field).
Both come from one `next_token_logprobs` pass, taken in chunks so the per-position distributions of a
large benchmark are never all held at once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

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
