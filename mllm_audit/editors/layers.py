"""Which layers an editor touches, derived from the card's module names (no per-family tables).

Cards name the text modules of the last decoder layer (e.g. `...decoder.layers.31.fc1`). The
originals edit other sets: EasyEdit's FT-L the whole last layer, MEND the last three layers' MLP.
Both follow from the card's names by swapping the layer index, so any family with numbered layers
(`layers.N` or `layer.N`) works without new card fields.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

from mllm_audit.errors import AuditError

if TYPE_CHECKING:
    from mllm_audit.models.base import Adapter

_LAYER = re.compile(r"^(?P<stack>.*\.layers?)\.(?P<idx>\d+)(?P<rest>\..*)?$")


def _split(name: str) -> tuple[str, int, str] | None:
    m = _LAYER.match(name)
    if m is None:
        return None
    return m["stack"], int(m["idx"]), m["rest"] or ""


def n_layers(adapter: Adapter, stack: str) -> int:
    """Number of numbered layers under `stack` (e.g. `language_model.model.decoder.layers`)."""
    mod = adapter.model.get_submodule(stack)
    return len(mod)  # type: ignore[arg-type]


def whole_last_layer(adapter: Adapter, names: Sequence[str]) -> list[str]:
    """The module path of the last layer that the card's module names point into (FT-L's scope)."""
    out: list[str] = []
    for name in names:
        parts = _split(name)
        if parts is None:
            raise AuditError(f"card {adapter.card.name!r}: module {name!r} is not inside a numbered layer")
        stack = parts[0]
        path = f"{stack}.{n_layers(adapter, stack) - 1}"
        if path not in out:
            out.append(path)
    return out


def last_layers(adapter: Adapter, names: Sequence[str], count: int) -> list[str]:
    """The card's per-layer module names repeated over the last `count` layers (fewer if the model
    has fewer): `...layers.31.fc1` with count 3 -> layers 29, 30, 31."""
    out: list[str] = []
    for name in names:
        parts = _split(name)
        if parts is None:
            if name not in out:
                out.append(name)
            continue
        stack, _, rest = parts
        total = n_layers(adapter, stack)
        for i in range(max(0, total - count), total):
            cand = f"{stack}.{i}{rest}"
            if cand not in out:
                out.append(cand)
    return out
