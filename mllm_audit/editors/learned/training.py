"""Meta-training a learned editor: the resumable train loop (checkpoints, early stopping on the
validation loss, a one-line stop on divergence) that train-editor runs."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from mllm_audit.editors.learned.base import STATE_FILE, LearnedEditor
from mllm_audit.editors.learned.objective import Data
from mllm_audit.errors import AuditError
from mllm_audit.models.base import Adapter
from mllm_audit.scoring.contract import ImageLoader
from mllm_audit.suites.items import Item

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
# Frozen layers' outputs kept across training steps (MEND, KE: each item's forwards below the edited
# layers run once, then replay; editors/cache.py). Past this, further items run whole: same numbers.
REPLAY_BYTES = 2 << 30


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

    from mllm_audit.util.identity import first_difference

    out = Path(out)
    net = editor.require_net()
    editor.partner_pool = list(train_items)  # paired/neutral objectives draw partner images from the train split
    steps, batch = int(settings["steps"]), int(settings["batch"])
    val_every, ckpt_every, patience = int(settings["val_every"]), int(settings["ckpt_every"]), int(settings["patience"])
    lr = float(settings["lr"])
    opt = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=lr)
    gen = torch.Generator().manual_seed(seed)
    data = Data(adapter, load_image, replay_bytes=REPLAY_BYTES)
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
            raise AuditError(f"cannot resume {out}: {diff[0]} differs from the checkpoint's; use another --output")
        net.load_state_dict(c["net"])
        opt.load_state_dict(c["opt"])
        _set_rng_states(gen, c)
        step, best_val, best_step, bad, seconds = c["step"], c["best_val"], c["best_step"], c["bad"], c["seconds"]
        best_state, history, val_history, stopped = c["best_state"], c["history"], c["val_history"], c["stopped"]
    elif not resume and (ckpt.is_file() or (out / STATE_FILE).is_file()):
        raise AuditError(f"{out} already holds an editor training run: pass --resume or choose another --output")
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
