"""What the learned editors (MEND, KE, SERAC) share: differentiable edit maths, training, state I/O.

A learned editor is a small network trained once per model on a suite's `train` split
(`mllm-audit train-editor`) and then applied at `fix` time like any other editor. Training meta-
learns the edit: for a batch of train items the editor makes its edit, and the loss asks the
edited model to prefer y_less over y_more on the item, its rephrased prompt and its rephrased
image (edit + generality; a logistic loss on the summed log-probability margin, the quantity
Reliability reads), while keeping the next-token distributions of text-only and multimodal
locality probes where the unedited model had them (KL(pre || post)).

Weight-editing editors never write the base weights while training: a forward hook adds
`x @ dW^T` to the output of each edited nn.Linear, which is W + dW exactly and keeps dW in the
autograd graph. At `fix` time the same dW is written into the weights and restored bit for bit.

State on disk: `state.safetensors` (the editor's tensors), `config.json` (editor, hyperparameters,
the identity of the model it was trained for, training history), and while training
`checkpoint.pt` (everything needed to resume exactly: net, optimizer, sampler state, best state).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from mllm_audit.editors.base import Editor
from mllm_audit.editors.learned.objective import (
    Data,
)
from mllm_audit.errors import AuditError

if TYPE_CHECKING:
    from mllm_audit.models.base import Adapter
    from mllm_audit.suites.items import Item

STATE_SCHEMA = "mllm-audit/editor-state/v1"
STATE_FILE = "state.safetensors"
CONFIG_FILE = "config.json"


# ---- the modules an editor edits ----------------------------------------------------------------


def linear_modules(adapter: Adapter, scope: str, text_layers: int = 1, vision_layers: int = 1
                   ) -> dict[str, torch.nn.Linear]:
    """The nn.Linear layers a weight editor edits, by module name.

    text: the card's text modules (the last LM layer's MLP), repeated over the last `text_layers`
    layers (EasyEdit's MEND: 3). vision: the Linear layers of the query MLP of the last
    `vision_layers` Q-Former layers (the card's vision modules name the Q-Former as a whole, far too
    much for a hyper-network; EasyEdit's vision MEND: 2), falling back to all Linears of those layers.
    """
    from mllm_audit.editors.layers import last_layers

    model = adapter.model
    names = adapter.module_names(scope)
    if scope == "text" and text_layers > 1:
        names = last_layers(adapter, names, text_layers)
    found: dict[str, torch.nn.Linear] = {}
    for prefix in names:
        try:
            mod = model.get_submodule(prefix)
        except AttributeError:
            continue  # a parameter such as query_tokens, not a module
        if isinstance(mod, torch.nn.Linear):
            found[prefix] = mod
        else:
            for n, m in mod.named_modules():
                if isinstance(m, torch.nn.Linear):
                    found[f"{prefix}.{n}"] = m
    if scope == "vision":
        layered = {n: m for n, m in found.items() if re.search(r"\.layer\.(\d+)\.", n)}
        if layered:
            idx = {n: int(re.search(r"\.layer\.(\d+)\.", n).group(1)) for n in layered}  # type: ignore[union-attr]
            last = max(idx.values())
            tail = {n: m for n, m in layered.items() if idx[n] > last - max(1, vision_layers)}
            mlp = {n: m for n, m in tail.items() if "_query." in n and ("intermediate" in n or "output" in n)}
            found = mlp or tail
    if not found:
        raise AuditError(f"card {adapter.card.name!r}: no nn.Linear layers among its {scope} modules")
    return found


@contextmanager
def added_deltas(modules: dict[str, torch.nn.Linear], deltas: dict[str, torch.Tensor]) -> Iterator[None]:
    """Run the model as if W + dW: each hooked Linear adds x @ dW^T (differentiable in dW)."""
    handles = []
    for name, dw in deltas.items():
        def hook(mod: torch.nn.Module, args: tuple, out: torch.Tensor, dw: torch.Tensor = dw) -> torch.Tensor:
            return out + F.linear(args[0], dw.to(out.dtype))

        handles.append(modules[name].register_forward_hook(hook))
    try:
        yield
    finally:
        for h in handles:
            h.remove()


# ---- the learned-editor base --------------------------------------------------------------------


class LearnedEditor(Editor):
    """An editor with a trained network: `build` it, `train_loss` to train it, `apply` to edit."""

    needs_state = True
    has_state = True
    defaults: dict[str, Any] = {}
    # name -> hyperparameters over `defaults`; the first is the default (the original's settings)
    variants: dict[str, dict[str, Any]] = {}
    legacy_variant: str | None = None  # what a saved state without a "variant" was trained as
    train_defaults: dict[str, Any] = {}  # schedule overrides of TRAIN_DEFAULTS for this editor

    def __init__(self) -> None:
        self.scope = "text"
        self.net: torch.nn.Module | None = None
        self.hp: dict[str, Any] = {}
        self.state_config: dict[str, Any] = {}
        self.partner_pool: list[Any] = []  # train-split items the paired/neutral objectives draw partners from

    # -- to implement
    def build(self, adapter: Adapter, hp: dict[str, Any]) -> torch.nn.Module:
        raise NotImplementedError

    def train_loss(self, adapter: Adapter, items: Sequence[Item], data: Data) -> tuple[torch.Tensor, dict[str, float]]:
        raise NotImplementedError

    # -- shared
    def setup(self, adapter: Adapter, overrides: dict[str, Any] | None = None) -> None:
        """Build an untrained network for this model (hyperparameters: defaults < card < overrides)."""
        card = dict(adapter.card.edit.get(self.name, {}) or {})
        overrides = dict(overrides or {})
        self.hp = {**self.defaults, **card, **overrides}
        if self.variants:
            variant = overrides.get("variant") or card.get("variant") or next(iter(self.variants))
            if variant not in self.variants:
                raise AuditError(f"{self.name} variant must be one of {', '.join(self.variants)}, got {variant!r}")
            self.hp = {**self.defaults, **self.variants[variant], **card, **overrides, "variant": variant}
        self.net = self.build(adapter, self.hp)

    def save_state(self, out: Path, adapter: Adapter, extra: dict[str, Any]) -> None:
        from safetensors.torch import save_file

        from mllm_audit.util.files import atomic_write_json

        assert self.net is not None
        out.mkdir(parents=True, exist_ok=True)
        tensors = {k: v.detach().cpu().contiguous() for k, v in self.net.state_dict().items()}
        save_file(tensors, str(out / STATE_FILE))
        config = {
            "schema": STATE_SCHEMA,
            "editor": self.name,
            "scope": self.scope,
            "hparams": self.hp,
            "model": adapter.identity(),
            **extra,
        }
        atomic_write_json(out / CONFIG_FILE, config)

    def load_state(self, state_dir: Path | str, adapter: Adapter) -> None:
        """Load a trained state; refuse one trained for another editor or another model."""
        from safetensors.torch import load_file

        state_dir = Path(state_dir)
        cfg_path = state_dir / CONFIG_FILE
        if not cfg_path.is_file() or not (state_dir / STATE_FILE).is_file():
            raise AuditError(f"editor state {state_dir}: no {CONFIG_FILE} + {STATE_FILE} (train-editor writes them)")
        try:
            config = json.loads(cfg_path.read_text(encoding="utf-8"))
        except (ValueError, RecursionError) as e:
            raise AuditError(f"editor state {cfg_path}: not JSON ({str(e)[:80] or type(e).__name__})") from None
        from mllm_audit.util.guards import check_editor_config, safetensors_header

        if isinstance(config, dict) and config.get("schema") == STATE_SCHEMA and config.get("editor") != self.name:
            raise AuditError(f"editor state {state_dir} is for editor {config.get('editor')!r}, not {self.name!r}")
        check_editor_config(cfg_path, config, self.defaults)
        safetensors_header(state_dir / STATE_FILE)  # a corrupt or truncated state names its file
        if config.get("schema") != STATE_SCHEMA or config.get("editor") != self.name:
            raise AuditError(f"editor state {state_dir} is for editor {config.get('editor')!r}, not {self.name!r}")
        check_same_model(config.get("model") or {}, adapter.identity(), state_dir)
        self.scope = config.get("scope", "text")
        self.hp = dict(config.get("hparams") or {})
        if self.variants and "variant" not in self.hp and self.legacy_variant:
            self.hp = {**self.defaults, **self.variants[self.legacy_variant], **self.hp,
                       "variant": self.legacy_variant}
        self.net = self.build(adapter, self.hp)
        try:
            self.net.load_state_dict(load_file(str(state_dir / STATE_FILE)))
        except (RuntimeError, ValueError, TypeError) as e:
            raise AuditError(f"editor state {state_dir} does not fit this model: {str(e).splitlines()[0]}") from None
        self.net.eval()
        self.state_config = config

    def require_net(self) -> torch.nn.Module:
        if self.net is None:
            raise AuditError(f"editor {self.name!r} has no state: pass --editor-state DIR (train-editor)")
        return self.net


def check_same_model(trained: dict[str, Any], current: dict[str, Any], where: Path) -> None:
    """A state is tied to the weights it was trained on: same family and revision (or source)."""
    def key(ident: dict[str, Any]) -> tuple[Any, ...]:
        rev = ident.get("revision")
        return (ident.get("family"), rev) if rev else (ident.get("family"), ident.get("source"))

    if key(trained) != key(current):
        raise AuditError(
            f"editor state {where} was trained for model {trained.get('name')!r} "
            f"({trained.get('revision') or trained.get('source')}), not {current.get('name')!r} "
            f"({current.get('revision') or current.get('source')})"
        )


