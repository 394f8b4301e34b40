"""The editor protocol: apply edit requests to a model, and restore it exactly.

A debias edit asks the model to prefer `target` (the item's y_less) over `avoid` (its y_more) for
(image, prompt). Weight editors change parameters and keep the originals to copy back bit for bit;
in-context editors (IKE) change nothing and rewrite the requests the edited model is asked.
Either way the evaluation only talks to an `Edited` handle: its `transform` maps a request to
what the edited model really sees, and `restore()` gives back the original model. Editors that
route a request to another model (SERAC's counterfactual model) also set `score`: the evaluation
then asks the handle, not the adapter, for the next-token distributions.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from mllm_audit.errors import AuditError

if TYPE_CHECKING:
    from mllm_audit.models.base import Adapter
    from mllm_audit.scoring.contract import ImageLoader, Request


@dataclass(frozen=True)
class EditRequest:
    """Prefer `target` over `avoid` for (image, prompt)."""

    item_id: str
    prompt: str
    target: str
    avoid: str
    image: str | None
    task: str | None = None
    rephrase_prompt: str | None = None


@dataclass
class EditContext:
    """What an editor may draw on besides the model: images, the suite's training split, options."""

    load_image: ImageLoader
    train_items: Sequence[Any] = ()
    options: dict[str, Any] = field(default_factory=dict)
    items: dict[str, Any] = field(default_factory=dict)  # the edited suite items by id (objectives read meta)


class Edited:
    """A handle on an edited model. Weight editors restore saved tensors; the default is a no-op."""

    # Optional: (transformed requests, image loader, batch size) -> per request the [n, V]
    # log-softmax at its continuation positions, as scoring.next_token_logprobs; None = the adapter's.
    score: Callable[[Sequence[Request], ImageLoader, int], list[torch.Tensor]] | None = None

    def __init__(self, adapter: Adapter, touched: dict[str, torch.Tensor] | None = None) -> None:
        self.adapter = adapter
        self._saved = touched or {}

    @property
    def touched(self) -> list[str]:
        """Names of the parameters the edit changed (empty for in-context editors)."""
        return sorted(self._saved)

    def transform(self, request: Request) -> Request:
        """The request the edited model is really asked (identity for weight editors)."""
        return request

    @staticmethod
    def combine(handles: Sequence[Edited]) -> Callable[[Request], Request]:
        """The request transform of several accumulated edits (sequential mode): composed in order."""

        def transform(request: Request) -> Request:
            for h in handles:
                request = h.transform(request)
            return request

        return transform

    @staticmethod
    def combine_score(
        handles: Sequence[Edited],
    ) -> Callable[[Sequence[Request], ImageLoader, int], list[torch.Tensor]] | None:
        """The `score` of several accumulated edits (sequential mode); None = the adapter's."""
        return None

    def restore(self) -> None:
        """Put every touched parameter back, bit for bit."""
        params = dict(self.adapter.model.named_parameters())
        with torch.no_grad():
            for name, original in self._saved.items():
                params[name].copy_(original)
        self._saved = {}

    def delta(self) -> dict[str, torch.Tensor]:
        """Post-edit minus original for each touched parameter (for --save manifests)."""
        params = dict(self.adapter.model.named_parameters())
        return {n: (params[n].detach() - o) for n, o in self._saved.items()}


class Editor:
    """Base class: `name`, and `apply(adapter, requests, ctx) -> Edited`."""

    name = "editor"
    # Capabilities, declared rather than probed:
    needs_state = False  # fix refuses to run without --editor-state (learned editors)
    has_state = False  # `load_state(folder, adapter)` reads a trained state (learned editors, their controls)
    scope: str | None = None  # None: the editor picks its own modules; "text"/"vision": settable (--scope)

    def load_state(self, state_dir: Any, adapter: Adapter) -> None:
        raise AuditError(f"editor {self.name!r} has no trained state to load")

    def apply(self, adapter: Adapter, requests: Sequence[EditRequest], ctx: EditContext) -> Edited:
        raise NotImplementedError


def select_parameters(adapter: Adapter, prefixes: Sequence[str]) -> dict[str, torch.nn.Parameter]:
    """Parameters whose names equal or start with one of `prefixes` (module paths from the card)."""
    chosen = {
        n: p
        for n, p in adapter.model.named_parameters()
        if any(n == pre or n.startswith(pre + ".") for pre in prefixes)
    }
    if not chosen:
        raise ValueError(f"no parameters match {list(prefixes)}")
    return chosen
