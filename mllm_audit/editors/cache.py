"""Frozen-prefix caching for editors that step an optimiser: frozen layers run once per edit.

FT-L edits the last decoder layer, yet each of its ~15 steps ran the vision tower and every lower
decoder layer again, on the same requests with the same frozen weights. Here the first call of each
kind (`key`) runs normally while forward hooks watch every numbered layer stack (a ModuleList, e.g.
`decoder.layers`, `encoder.layer`); the leading layers of a stack whose outputs do not depend on any
trainable parameter (their output does not require grad) are *frozen*. Later calls with the same key
make each of those layers hand back its own recorded output without computing (its `forward` is
swapped on the instance, so the module, its class and any hooks transformers keys on stay, and a model
that reads an inner layer's hidden state, as LLaVA reads the vision tower's penultimate layer, gets
it), so only the edited part and what follows it (the head) run. FT-V likewise skips the vision
tower's layers.

Exact: the layers after the cut see the same input tensor they would have computed (tests check the
edited weights to 1e-6 against the uncached path). Caching is off in training mode (dropout would
differ between steps) and for a stack whose layer runs more than once per call. MEND and KE training
(editors/learned) keys it by the requests of each forward, so an item's frozen layers run once per
training run, not once per step that draws it (within `max_bytes`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import torch

T = TypeVar("T")


def _stacks(model: torch.nn.Module) -> list[torch.nn.ModuleList]:
    """Every numbered layer stack: a ModuleList of at least two modules named `layers` or `layer`."""
    return [m for name, m in model.named_modules()
            if isinstance(m, torch.nn.ModuleList) and name.rsplit(".", 1)[-1] in ("layers", "layer") and len(m) > 1]


def _needs_grad(out: Any) -> bool:
    if isinstance(out, torch.Tensor):
        return out.requires_grad
    if isinstance(out, (tuple, list)):
        return any(_needs_grad(o) for o in out)
    return bool(getattr(out, "requires_grad", False)) or any(_needs_grad(v) for v in getattr(out, "values", list)())


def _replay(out: Any) -> Callable[..., Any]:
    """A layer's forward that hands back its recorded output `out` without computing."""

    def forward(*_args: Any, **_kwargs: Any) -> Any:
        return out

    return forward


class FrozenPrefix:
    """Per key: the recorded outputs at each stack's cut; `__call__` records once, then replays."""

    def __init__(self, model: torch.nn.Module, enabled: bool = True, max_bytes: int | None = None) -> None:
        self.model = model
        self.enabled = enabled and not model.training
        self.cuts: dict[str, list[tuple[torch.nn.ModuleList, list[Any]]]] = {}
        # A cache that lives across many keys (learned-editor training: one per item) holds at most this
        # much; a key recorded past it keeps no cut and runs whole each time (same numbers, no saving).
        self.max_bytes = max_bytes
        self.held = 0

    def __call__(self, key: str, fn: Callable[[], T]) -> T:
        if not self.enabled:
            return fn()
        if key not in self.cuts:
            return self._record(key, fn)
        patched: list[torch.nn.Module] = []
        try:
            for stack, outs in self.cuts[key]:
                for j, out in enumerate(outs):
                    stack[j].forward = _replay(out)  # type: ignore[method-assign]
                    patched.append(stack[j])
            return fn()
        finally:
            for layer in patched:
                del layer.forward  # the class's forward again

    def _record(self, key: str, fn: Callable[[], T]) -> T:
        seen: dict[int, list[tuple[int, Any]]] = {}
        hooks = []
        stacks = _stacks(self.model)
        for s, stack in enumerate(stacks):
            for j, layer in enumerate(stack):
                hooks.append(layer.register_forward_hook(
                    lambda _m, _a, out, s=s, j=j: seen.setdefault(s, []).append((j, out))))
        try:
            with torch.enable_grad():  # what depends on a trainable parameter shows as requires_grad
                result = fn()
        finally:
            for h in hooks:
                h.remove()
        cuts = []
        for s, calls in seen.items():
            order = [j for j, _ in calls]
            if order != list(range(len(order))):  # a layer ran twice, or out of order: leave this stack alone
                continue
            k = 0
            while k < len(calls) and not _needs_grad(calls[k][1]):
                k += 1
            if k > 0:
                cuts.append((stacks[s], [out for _, out in calls[:k]]))
        size = sum(_nbytes(out) for _, outs in cuts for out in outs)
        if self.max_bytes is not None and self.held + size > self.max_bytes:
            cuts = []
        self.held += size if cuts else 0
        self.cuts[key] = cuts
        return result


def _nbytes(out: Any) -> int:
    if isinstance(out, torch.Tensor):
        return out.numel() * out.element_size()
    if isinstance(out, (tuple, list)):
        return sum(_nbytes(o) for o in out)
    return sum(_nbytes(v) for v in getattr(out, "values", list)())

