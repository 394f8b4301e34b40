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
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from ..errors import AuditError
from .base import EditContext, Edited, Editor, EditRequest

if TYPE_CHECKING:
    from ..models.base import Adapter
    from ..scoring import ImageLoader, Request
    from ..suites import Item

STATE_SCHEMA = "mllm-audit/editor-state/v1"
STATE_FILE = "state.safetensors"
CONFIG_FILE = "config.json"
CHECKPOINT_FILE = "checkpoint.pt"
TRAIN_DEFAULTS: dict[str, Any] = {
    "steps": 300,
    "batch": 4,
    "lr": 1e-3,
    "val_every": 25,
    "patience": 4,
    "ckpt_every": 25,
    "clip": 1.0,
}


# ---- the modules an editor edits ----------------------------------------------------------------


def linear_modules(adapter: Adapter, scope: str, text_layers: int = 1, vision_layers: int = 1
                   ) -> dict[str, torch.nn.Linear]:
    """The nn.Linear layers a weight editor edits, by module name.

    text: the card's text modules (the last LM layer's MLP), repeated over the last `text_layers`
    layers (EasyEdit's MEND: 3). vision: the Linear layers of the query MLP of the last
    `vision_layers` Q-Former layers (the card's vision modules name the Q-Former as a whole, far too
    much for a hyper-network; EasyEdit's vision MEND: 2), falling back to all Linears of those layers.
    """
    from .layers import last_layers

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


@dataclass
class Captured:
    """Per edited layer: the rows (positions) that carry gradient, their input x and output grad delta."""

    x: dict[str, torch.Tensor]
    delta: dict[str, torch.Tensor]
    owner: dict[str, torch.Tensor]  # row -> index of the edit request it came from


def edit_loss_terms(margin: torch.Tensor, target: float) -> torch.Tensor:
    """Logistic loss pushing margin = logp(y_less) - logp(y_more) above `target` nats."""
    return F.softplus(target - margin)


def pair_scores(adapter: Adapter, pairs: Sequence[tuple[Request, Request]], feats: dict[str, torch.Tensor]
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """(margin, target NLL) per (less, more) pair: summed log-prob margin and the y_less mean token NLL."""
    from ..scoring import logprob_tensor

    flat = [r for pair in pairs for r in pair]
    lp, n = logprob_tensor(adapter, flat, feats)
    return lp[0::2] - lp[1::2], -lp[0::2] / n[0::2]


def edit_objective(loss: str, margin: torch.Tensor, nll: torch.Tensor, target_margin: float) -> torch.Tensor:
    """Per pair: `nll` = the target's NLL (MEND, KE, EasyEdit); `margin` = the logistic margin loss
    (this project's earlier variant, which optimises the Reliability quantity itself)."""
    if loss == "nll":
        return nll
    if loss == "margin":
        return edit_loss_terms(margin, target_margin)
    raise AuditError(f"unknown edit loss {loss!r} (nll or margin)")


# ---- the data view training and edits share ------------------------------------------------------


class Data:
    """Image features and the unedited model's locality distributions, computed once and cached."""

    def __init__(self, adapter: Adapter, load_image: ImageLoader) -> None:
        self.adapter = adapter
        self.load_image = load_image
        self._feats: dict[str, torch.Tensor] = {}
        self._pre: dict[Request, torch.Tensor] = {}

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
                    (dist,) = continuation_logprobs(self.adapter, [r], self.features([r.image]))
                self._pre[r] = dist.detach()
        return [self._pre[r] for r in requests]


def continuation_logprobs(
    adapter: Adapter, requests: Sequence[Request], features: dict[str, torch.Tensor]
) -> list[torch.Tensor]:
    """Differentiable log-softmax [n, V] at each continuation position (scoring.logprob_tensor's layout)."""
    from ..scoring import tokenize

    toks = [tokenize(adapter, r) for r in requests]
    dev = adapter.device
    length = max(len(p) + len(c) for p, c in toks)
    ids = torch.full((len(toks), length), adapter.pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for b, (p, c) in enumerate(toks):
        ids[b, : len(p) + len(c)] = torch.tensor(p + c)
        mask[b, : len(p) + len(c)] = 1
    ids, mask = ids.to(dev), mask.to(dev)
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    emb = adapter.embed(ids, [features[r.image] if r.image is not None else None for r in requests])
    logits, _ = adapter.lm(emb, mask, pos)
    out = []
    for b, (p, c) in enumerate(toks):
        out.append(torch.log_softmax(logits[b, len(p) - 1 : len(p) + len(c) - 1], dim=-1))
    return out


def pair_margins(adapter: Adapter, pairs: Sequence[tuple[Request, Request]], feats: dict[str, torch.Tensor]
                 ) -> torch.Tensor:
    """logp(y_less) - logp(y_more) per (less, more) pair, summed token log-probs, differentiable."""
    from ..scoring import logprob_tensor

    flat = [r for pair in pairs for r in pair]
    lp, _ = logprob_tensor(adapter, flat, feats)
    return lp[0::2] - lp[1::2]


def kl_pre_post(pre: Sequence[torch.Tensor], post: Sequence[torch.Tensor]) -> torch.Tensor:
    """Mean over positions of KL(pre || post), the locality loss (and metric) of the paper."""
    terms = [(p.exp() * (p - q)).sum(-1) for p, q in zip(pre, post, strict=True)]
    return torch.cat(terms).mean()


def item_pairs(item: Item) -> list[tuple[Request, Request]]:
    """(y_less, y_more) requests on the item, its rephrased prompt and its rephrased image."""
    from ..scoring import Request

    def pair(prompt: str, image: str | None) -> tuple[Request, Request]:
        return Request(prompt, item.y_less, image, item.task), Request(prompt, item.y_more, image, item.task)

    out = [pair(item.prompt, item.image)]
    if item.rephrase_prompt:
        out.append(pair(item.rephrase_prompt, item.image))
    if item.rephrase_image:
        out.append(pair(item.prompt, item.rephrase_image))
    return out


def item_locality(item: Item) -> list[Request]:
    """The item's text-only and multimodal locality probes, as editing.probes_for builds them."""
    from ..scoring import Request

    out = []
    if item.loc_prompt and item.loc_answer:
        out.append(Request(item.loc_prompt, item.loc_answer, None, None))
    if item.m_loc_prompt and item.m_loc_answer and item.m_loc_image:
        out.append(Request(item.m_loc_prompt, item.m_loc_answer, item.m_loc_image, item.task))
    return out


def edit_request(item: Item) -> EditRequest:
    return EditRequest(item.id, item.prompt, item.y_less, item.y_more, item.image, item.task, item.rephrase_prompt)


# ---- the learned-editor base --------------------------------------------------------------------


class LearnedEditor(Editor):
    """An editor with a trained network: `build` it, `train_loss` to train it, `apply` to edit."""

    needs_state = True
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

        from ..report import atomic_write_json

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
        from ..guards import check_editor_config, safetensors_header

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


# ---- weight editors: gradient capture and the shared meta-loss ----------------------------------


def capture(
    adapter: Adapter, modules: dict[str, torch.nn.Linear], requests: Sequence[EditRequest], data: Data, vision: bool,
    loss_kind: str = "margin",
) -> tuple[Captured, torch.Tensor]:
    """Layer inputs x and output gradients delta of the edit loss, per edited layer (rank-1 factors).

    A zero tensor that requires grad is added to each hooked output, so the gradient w.r.t. that
    output is read with autograd.grad without touching any parameter's .grad. Only rows with a
    non-zero gradient are kept (the positions the loss reaches). `loss_kind`: the edit loss whose
    gradient is decomposed (`nll` of the target, or the `margin` loss). Returns the margins too.
    """
    from ..scoring import Request

    xs: dict[str, torch.Tensor] = {}
    zs: dict[str, torch.Tensor] = {}
    handles = []
    for name, mod in modules.items():
        def hook(m: torch.nn.Module, args: tuple, out: torch.Tensor, name: str = name) -> torch.Tensor:
            xs[name] = args[0].detach()
            zs[name] = torch.zeros_like(out, requires_grad=True)
            return out + zs[name]

        handles.append(mod.register_forward_hook(hook))
    pairs = [(Request(r.prompt, r.target, r.image, r.task), Request(r.prompt, r.avoid, r.image, r.task))
             for r in requests]
    try:
        with torch.enable_grad():
            feats = data.features([r.image for r in requests], grad=vision)
            margin, nll = pair_scores(adapter, pairs, feats)
            loss = edit_objective(loss_kind, margin, nll, 0.0).sum()
            names = list(zs)
            grads = torch.autograd.grad(loss, [zs[n] for n in names], allow_unused=True)
    finally:
        for h in handles:
            h.remove()
    cap = Captured({}, {}, {})
    for name, g in zip(names, grads, strict=True):
        x = xs[name]
        g = torch.zeros_like(zs[name]) if g is None else g
        # Rows are (sequence, position) or (image, query) flattened; some models (OPT) flatten the
        # batch themselves, so rows per sequence come from the count of sequences. Text sequences
        # alternate y_less / y_more per request; vision rows belong to an image, i.e. to a request.
        x2, g2 = x.reshape(-1, x.shape[-1]), g.reshape(-1, g.shape[-1])
        if vision:
            keys = sorted({r.image for r in requests if r.image is not None})
            first = torch.tensor([next(i for i, r in enumerate(requests) if r.image == k) for k in keys])
            owner = first[torch.arange(x2.shape[0]) // (x2.shape[0] // len(keys))]
        else:
            owner = torch.arange(x2.shape[0]) // (x2.shape[0] // (2 * len(requests))) // 2
        keep = g2.abs().sum(-1) > 0
        cap.x[name], cap.delta[name], cap.owner[name] = x2[keep].float(), g2[keep].float(), owner[keep]
    return cap, margin.detach()


class WeightEditor(LearnedEditor):
    """MEND and KE: the network maps an edit's gradient to a weight change dW per edited layer."""

    def modules(self, adapter: Adapter) -> dict[str, torch.nn.Linear]:
        names = self.hp.get("modules")
        all_lin = {n: m for n, m in adapter.model.named_modules() if isinstance(m, torch.nn.Linear)}
        if names:
            return {n: all_lin[n] for n in names}
        return linear_modules(adapter, self.scope, int(self.hp.get("text_layers", 1)),
                              int(self.hp.get("vision_layers", 1)))

    def captured(self, adapter: Adapter, requests: Sequence[EditRequest], data: Data) -> tuple[Captured, torch.Tensor]:
        """The rank-1 gradient factors of this editor's edit loss at its edited layers."""
        return capture(adapter, self.modules(adapter), requests, data, self.scope == "vision",
                       str(self.hp.get("loss", "margin")))

    def deltas(self, adapter: Adapter, requests: Sequence[EditRequest], data: Data) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def train_loss(self, adapter: Adapter, items: Sequence[Item], data: Data) -> tuple[torch.Tensor, dict[str, float]]:
        """Mean over the items of the loss of editing each one alone (as `fix` single mode does)."""
        parts = [self._edit_loss(adapter, it, data) for it in items]
        loss = torch.stack([p[0] for p in parts]).mean()
        stats = {k: sum(p[1][k] for p in parts) / len(parts) for k in parts[0][1]}
        return loss, stats

    def _edit_loss(self, adapter: Adapter, item: Item, data: Data) -> tuple[torch.Tensor, dict[str, float]]:
        mods = self.modules(adapter)
        dws = self.deltas(adapter, [edit_request(item)], data)
        pairs = item_pairs(item)
        loc = item_locality(item)
        pre = data.pre(loc)
        vision = self.scope == "vision"
        with added_deltas(mods, dws):
            feats = data.features([r.image for p in pairs for r in p] + [r.image for r in loc], grad=vision)
            margin, nll = pair_scores(adapter, pairs, feats)
            post = continuation_logprobs(adapter, loc, feats) if loc else []
        l_edit = edit_objective(str(self.hp.get("loss", "margin")), margin, nll,
                                float(self.hp.get("target_margin", 1.0))).mean()
        l_loc = kl_pre_post(pre, post) if loc else torch.zeros(())
        loss = float(self.hp.get("c_edit", 1.0)) * l_edit + self.locality_term(l_loc)
        stats = {"edit": float(l_edit.detach()), "loc": float(l_loc.detach()), "rel": float(margin[0] > 0),
                 "acc": float((margin > 0).float().mean())}
        return loss, stats

    def locality_term(self, l_loc: torch.Tensor) -> torch.Tensor:
        """How the locality KL enters the meta-loss: a fixed weight c_loc (MEND); KE overrides it."""
        return float(self.hp.get("c_loc", 1.0)) * l_loc

    def apply(self, adapter: Adapter, requests: Sequence[EditRequest], ctx: EditContext) -> Edited:
        """Write W + dW into the edited layers (originals kept for an exact restore)."""
        net = self.require_net()
        net.eval()
        mods = self.modules(adapter)
        data = Data(adapter, ctx.load_image)
        with torch.no_grad():
            dws = self.deltas(adapter, list(requests), data)
        saved = {f"{n}.weight": mods[n].weight.detach().clone() for n in dws}
        edited = Edited(adapter, saved)
        with torch.no_grad():
            for n, dw in dws.items():
                mods[n].weight.add_(dw.to(mods[n].weight.dtype))
        return edited


# ---- training -----------------------------------------------------------------------------------


@dataclass
class TrainResult:
    out: Path
    steps_run: int
    best_step: int
    stopped_early: bool
    seconds: float
    history: list[dict[str, float]] = field(default_factory=list)
    val_history: list[dict[str, float]] = field(default_factory=list)


class Interrupted(Exception):
    """Raised by a step callback to stop a run after its last checkpoint (tests simulate a crash)."""


class Diverged(AuditError):
    """Training produced a non-finite loss or parameter: nothing of the run is worth keeping."""


def _check_finite(what: str, value: float | None, net: torch.nn.Module, step: int, lr: float) -> None:
    """Stop a run whose loss or editor parameters left the finite numbers (too high an lr, mostly)."""
    bad = None
    if value is not None and not torch.isfinite(torch.tensor(value)):
        bad = f"{what} is {value}"
    else:
        for name, t in net.state_dict().items():
            if t.is_floating_point() and not bool(torch.isfinite(t).all()):
                bad = f"editor tensor {name} is not finite"
                break
    if bad:
        raise Diverged(f"editor training diverged at step {step} with lr {lr:g} ({bad}): "
                       f"train with a lower lr (e.g. {lr / 10:g})")


# Test hook: seconds to sleep after each training step (lets tests kill a run part-way).
STEP_DELAY_ENV = "MLLM_AUDIT_STEP_DELAY"


def _rng_states(gen: torch.Generator) -> dict[str, Any]:
    """Every random stream training may draw from: the batch sampler's, torch's global, Python's."""
    import random

    return {"gen": gen.get_state(), "torch": torch.get_rng_state(), "python": repr(random.getstate())}


def _set_rng_states(gen: torch.Generator, c: dict[str, Any]) -> None:
    import ast
    import random

    gen.set_state(c["gen"])
    if "torch" in c:
        torch.set_rng_state(c["torch"])
    if "python" in c:
        random.setstate(ast.literal_eval(c["python"]))


def train_loop(
    editor: LearnedEditor,
    adapter: Adapter,
    train_items: Sequence[Item],
    val_items: Sequence[Item],
    load_image: ImageLoader,
    out: Path,
    seed: int,
    resume: bool,
    settings: dict[str, Any],
    extra: dict[str, Any],
    on_step: Callable[[int, int, float, float | None], None] | None = None,
    identity: dict[str, Any] | None = None,
) -> TrainResult:
    """Train `editor` (already `setup`), checkpointing so that a resumed run ends where an
    uninterrupted one would, bit for bit (sampler and global RNG streams, data order, optimiser
    state); early-stop on the val loss; save the best state.

    `identity` (model files, suite items and images, editor settings) is stored in the checkpoint
    and must be equal on resume: the first field that differs is named.
    """
    import os

    from ..runs.identity import first_difference

    out = Path(out)
    net = editor.require_net()
    steps, batch = int(settings["steps"]), int(settings["batch"])
    val_every, ckpt_every, patience = int(settings["val_every"]), int(settings["ckpt_every"]), int(settings["patience"])
    lr = float(settings["lr"])
    opt = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=lr)
    gen = torch.Generator().manual_seed(seed)
    data = Data(adapter, load_image)
    step, best_val, best_step, bad, seconds = 0, float("inf"), 0, 0, 0.0
    best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
    history: list[dict[str, float]] = []
    val_history: list[dict[str, float]] = []
    stopped = False
    ckpt = out / CHECKPOINT_FILE
    ident = json.loads(json.dumps({"editor": editor.name, "scope": editor.scope, "hparams": editor.hp, "seed": seed,
                                   "settings": settings, **(identity or {})}, default=str))
    if resume and ckpt.is_file():
        c = torch.load(ckpt, weights_only=True)
        diff = first_difference(json.loads(c.get("identity") or "{}"), ident)
        if diff is not None:
            raise AuditError(f"cannot resume {out}: {diff[0]} differs from the checkpoint's; use another --out")
        net.load_state_dict(c["net"])
        opt.load_state_dict(c["opt"])
        _set_rng_states(gen, c)
        step, best_val, best_step, bad, seconds = c["step"], c["best_val"], c["best_step"], c["bad"], c["seconds"]
        best_state, history, val_history, stopped = c["best_state"], c["history"], c["val_history"], c["stopped"]
    elif not resume and (ckpt.is_file() or (out / STATE_FILE).is_file()):
        raise AuditError(f"{out} already holds an editor training run: pass --resume or choose another --out")
    out.mkdir(parents=True, exist_ok=True)

    def save_checkpoint() -> None:
        tmp = ckpt.with_suffix(".tmp")
        torch.save({
            "editor": editor.name, "seed": seed, "settings": settings, "net": net.state_dict(),
            "identity": json.dumps(ident), **_rng_states(gen),
            "opt": opt.state_dict(), "step": step, "best_val": best_val,
            "best_step": best_step, "bad": bad, "seconds": seconds, "best_state": best_state,
            "history": history, "val_history": val_history, "stopped": stopped,
        }, tmp)
        tmp.replace(ckpt)

    def val_loss() -> float:
        net.eval()
        total, n = 0.0, 0
        for i in range(0, len(val_items), batch):
            part = list(val_items[i : i + batch])
            loss, _ = editor.train_loss(adapter, part, data)
            total += float(loss.detach()) * len(part)
            n += len(part)
        net.train()
        return total / max(1, n)

    flags = {n: p.requires_grad for n, p in adapter.model.named_parameters()}
    for p in adapter.model.parameters():  # the base model is frozen: gradients go to the editor only
        p.requires_grad_(False)
    net.train()
    delay = float(os.environ.get(STEP_DELAY_ENV) or 0)
    try:
        while step < steps and not stopped:
            t0 = time.perf_counter()
            idx = torch.randint(len(train_items), (batch,), generator=gen).tolist()
            loss, stats = editor.train_loss(adapter, [train_items[i] for i in idx], data)
            _check_finite("the training loss", float(loss.detach()), net, step + 1, lr)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), float(settings["clip"]))
            opt.step()
            step += 1
            _check_finite("the training loss", None, net, step, lr)
            history.append({"step": step, "loss": float(loss.detach()), **stats})
            vl: float | None = None
            if val_items and (step % val_every == 0 or step == steps):
                vl = val_loss()
                _check_finite("the validation loss", vl, net, step, lr)
                val_history.append({"step": step, "val_loss": vl})
                if vl < best_val - 1e-6:
                    best_val, best_step, bad = vl, step, 0
                    best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
                else:
                    bad += 1
                    stopped = bad >= patience
            elif not val_items:
                best_step, best_state = step, {k: v.detach().clone() for k, v in net.state_dict().items()}
            seconds += time.perf_counter() - t0
            if step % ckpt_every == 0 or step == steps or stopped:
                save_checkpoint()
            if on_step:
                on_step(step, steps, float(loss.detach()), vl)
            if delay > 0:
                time.sleep(delay)
    finally:
        for n, p in adapter.model.named_parameters():
            p.requires_grad_(flags[n])
    net.load_state_dict(best_state)
    net.eval()
    result = TrainResult(out, step, best_step, stopped, round(seconds, 3), history, val_history)
    editor.save_state(out, adapter, {
        **extra, "seed": seed, "settings": settings, "steps_run": step, "best_step": best_step,
        "stopped_early": stopped, "train_seconds": result.seconds, "best_val_loss": best_val
        if best_val != float("inf") else None, "val_history": val_history,
        "loss_history": [round(h["loss"], 6) for h in history],
    })
    return result
