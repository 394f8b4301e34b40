"""What every learned editor edits toward and measures: the item's (y_more, y_less) pairs and locality
probes (from suites/requests.py), the margin logp(y_more) - logp(y_less) and the target's NLL from the
one differentiable layout (scoring/differentiable.py), the locality KL (metrics/edits.py), and the
data view (cached image features and unedited distributions) that training and edits share."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import torch
import torch.nn.functional as F

from mllm_audit.editors.base import EditRequest
from mllm_audit.errors import AuditError
from mllm_audit.models.base import Adapter
from mllm_audit.scoring.contract import ImageLoader, Request
from mllm_audit.scoring.differentiable import continuation_distributions
from mllm_audit.suites.items import Item

T = TypeVar("T")


@dataclass
class Captured:
    """Per edited layer: the rows (positions) that carry gradient, their input x and output grad delta."""

    x: dict[str, torch.Tensor]
    delta: dict[str, torch.Tensor]
    owner: dict[str, torch.Tensor]  # row -> index of the edit request it came from


def edit_loss_terms(margin: torch.Tensor, target: float) -> torch.Tensor:
    """Logistic loss pushing the bias margin (logp(y_more) - logp(y_less), the one sign of
    suites/requests.py) below -`target` nats: the edit succeeds when y_less wins by `target`."""
    return F.softplus(target + margin)


def pair_scores(adapter: Adapter, pairs: Sequence[tuple[Request, Request]], feats: dict[str, torch.Tensor]
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """(margin, target NLL) per (y_more, y_less) pair: the summed log-prob margin logp(y_more) -
    logp(y_less) (< 0 once fixed) and the edit target y_less's mean token NLL."""
    from mllm_audit.scoring.differentiable import logprob_tensor

    flat = [r for pair in pairs for r in pair]
    lp, n = logprob_tensor(adapter, flat, feats)
    return lp[0::2] - lp[1::2], -lp[1::2] / n[1::2]


def edit_objective(loss: str, margin: torch.Tensor, nll: torch.Tensor, target_margin: float) -> torch.Tensor:
    """Per pair: `nll` = the target's NLL (MEND, KE, EasyEdit); `margin` = the logistic margin loss
    (this project's earlier variant, which optimises the Reliability quantity itself)."""
    if loss == "nll":
        return nll
    if loss == "margin":
        return edit_loss_terms(margin, target_margin)
    if loss == "neutral":  # the `neutral` objective (editors/objectives.py): indifference, not reversal
        return margin.pow(2)
    raise AuditError(f"unknown edit loss {loss!r} (nll or margin)")


class Data:
    """Image features and the unedited model's locality distributions, computed once and cached."""

    def __init__(self, adapter: Adapter, load_image: ImageLoader, replay_bytes: int | None = None) -> None:
        from mllm_audit.editors.cache import FrozenPrefix

        self.adapter = adapter
        self.load_image = load_image
        self._feats: dict[str, torch.Tensor] = {}
        self._pre: dict[Request, torch.Tensor] = {}
        # Frozen layers' outputs per forward (editors/cache.py), kept across calls when `replay_bytes` is
        # given (training revisits each item); off otherwise (an edit runs each forward once).
        self.replay = FrozenPrefix(adapter.model, enabled=replay_bytes is not None, max_bytes=replay_bytes)

    def forward(self, kind: str, parts: object, fn: Callable[[], T]) -> T:
        """`fn()` with the frozen layers replayed when this exact forward (kind, requests) ran before."""
        return self.replay(replay_key(kind, parts), fn)

    def features(self, keys: Sequence[str | None], grad: bool = False) -> dict[str, torch.Tensor]:
        """Encoded images by key; with grad (vision edits) re-encoded inside the caller's hooks.

        Cached features are encoded one image at a time, so their bits do not depend on which
        images happened to be encoded together before (a resumed run starts with an empty cache).
        """
        want = sorted({k for k in keys if k is not None})
        if grad:
            if not want:
                return {}
            enc = self.adapter.encode_images([self.load_image(k) for k in want])
            return dict(zip(want, enc, strict=True))
        for k in want:
            if k not in self._feats:
                with torch.no_grad():
                    self._feats[k] = self.adapter.encode_images([self.load_image(k)])[0]
        return {k: self._feats[k] for k in want}

    def pre(self, requests: Sequence[Request]) -> list[torch.Tensor]:
        """Unedited next-token log-distributions at the continuation positions (one request per
        forward, for the same history-independence as `features`)."""
        for r in dict.fromkeys(requests):
            if r not in self._pre:
                with torch.no_grad():
                    (dist,) = continuation_distributions(self.adapter, [r], self.features([r.image]))
                self._pre[r] = dist.detach()
        return [self._pre[r] for r in requests]


def replay_key(kind: str, parts: object) -> str:
    """The replay cache's key: the forward's kind and its requests, written out (dataclass reprs)."""
    return f"{kind}:{parts!r}"


def pair_margins(adapter: Adapter, pairs: Sequence[tuple[Request, Request]], feats: dict[str, torch.Tensor]
                 ) -> torch.Tensor:
    """The bias margin logp(y_more) - logp(y_less) per (y_more, y_less) pair, differentiable."""
    return pair_scores(adapter, pairs, feats)[0]


def kl_pre_post(pre: Sequence[torch.Tensor], post: Sequence[torch.Tensor]) -> torch.Tensor:
    """Mean over positions of KL(pre || post): the locality loss, the same KL the metrics report."""
    from mllm_audit.metrics.edits import kl_rows

    return torch.cat([kl_rows(p, q) for p, q in zip(pre, post, strict=True)]).mean()


def item_pairs(item: Item) -> list[tuple[Request, Request]]:
    """(y_more, y_less) on the item, its rephrased prompt and its rephrased image (suites/requests.py)."""
    from mllm_audit.suites.requests import metric_pairs

    return list(metric_pairs(item).values())


def item_locality(item: Item) -> list[Request]:
    """The item's text-only and multimodal locality probes (suites/requests.py)."""
    from mllm_audit.suites.requests import locality_requests

    return list(locality_requests(item).values())


def edit_request(item: Item) -> EditRequest:
    return EditRequest(item.id, item.prompt, item.y_less, item.y_more, item.image, item.task, item.rephrase_prompt)
