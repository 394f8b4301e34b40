"""Balanced SFT and balanced preference optimisation (BPO) for unified models' image generation.

After Liu et al. (U-MLLM fairness, arXiv 2502.03429) and their code (pkulium/Unified_MLLM_Fairness):
LoRA on the language model only (q/k/v/o/gate/up/down; rank 32, alpha 32, dropout 0.1), then

1. **SFT**: next-image-token NLL on balanced (prompt, image) data, lr 1e-4, cosine with 3 % warm-up,
   up to 10 epochs;
2. **BPO** from the SFT adapter: for two images i, j of the *same* neutral prompt whose groups differ,
   p = exp(mean log-prob of the image tokens), Δ = logit(p_i) − logit(p_j),
   loss = β · mean log(1 + (σ(Δ) − ½)²), β = 1, lr 8e-7, 1-2 epochs (optionally + α · SFT loss).

Choices where the paper is silent or its code differs, stated:
- Pairs are built explicitly within each prompt: two images that differ in one attribute and agree
  on the other (gender pairs matched on race, race pairs matched on gender). The public code pairs
  images within a prompt only at per-device batch 1.
- SFT also trains, at `uncond_rate`, the classifier-free-guidance twin of each prompt (every token
  but BOS / BOI masked to pad, as `generate` builds it) on the same balanced images, as Janus'
  own training does with prompt dropout: guidance amplifies any imbalance of the unconditional
  branch by (scale − 1), so leaving it untrained lets drift there undo the fix.
- `sft_guidance = s` (off by default, not in the paper) adds the NLL of the balanced images under
  the guided mix u + s (c − u) that `generate` samples from: conditional-only SFT leaves codes that
  both halves rate near zero free to win after guidance multiplies their difference by s.
- SFT also trains the augmented prompts ("a male", ...) on their own group's images
  (`augmented=True`) so that the adapter does not learn to ignore group words.
- `anchor = λ` (ours, off by default) adds λ · KL(frozen base || adapted) of the guided next-image-token
  distributions (scale `anchor_scale`) along the augmented rows' images: on a prompt that names the
  group the base already draws what it should, so everything the fix is not meant to move (what the
  image shows besides who) is pinned there, while the neutral prompts' choice of group stays free.
  In both stages (SFT and BPO).
Balanced data: a folder of labelled images (`labels.jsonl`: image, gender, race, occupation), each
encoded to image tokens by the model's own VQ encoder (the paper's images come from FLUX.1-dev).
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from mllm_audit.editors.balanced import Row, bpo_pairs
from mllm_audit.errors import AuditError

LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass
class BalancedSettings:
    """Defaults are the paper's (LoRA, SFT, BPO); the toy world overrides lr / epochs and says so."""

    lora_r: int = 32
    lora_alpha: int = 32
    lora_dropout: float = 0.1
    lora_targets: tuple[str, ...] = LORA_TARGETS
    sft_lr: float = 1e-4
    sft_epochs: int = 10
    sft_batch: int = 8
    warmup: float = 0.03
    uncond_rate: float = 0.1
    augmented: bool = True
    sft_guidance: float = 0.0  # > 0: also the NLL under the guided mix u + s (c - u) at this scale (ours)
    bpo_lr: float = 8e-7
    bpo_epochs: int = 1
    bpo_batch: int = 8
    beta: float = 1.0
    alpha_sft: float = 0.0
    anchor: float = 0.0  # > 0: λ · KL(frozen base || adapted) on the augmented prompts' image tokens (ours)
    anchor_scale: float = 5.0  # the guidance scale of the anchored mix (the card's; 0 = conditional only)
    seed: int = 0

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["lora_targets"] = list(self.lora_targets)
        return d




def lora_regex(targets: Sequence[str]) -> str:
    """Module names of the language model's decoder layers only (not the vision tower's q/k/v)."""
    return r".*language_model\.layers\.\d+\.(self_attn|mlp)\.(" + "|".join(targets) + r")$"


def add_lora(model: Any, s: BalancedSettings) -> Any:
    """Wrap `model` with a fresh LoRA adapter (peft) on the LM; only the adapter trains."""
    import torch
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(s.seed)  # LoRA's A init: the same adapter whatever ran before
    for p in model.parameters():
        p.requires_grad_(False)
    cfg = LoraConfig(r=s.lora_r, lora_alpha=s.lora_alpha, lora_dropout=s.lora_dropout,
                     target_modules=lora_regex(s.lora_targets), bias="none")
    return get_peft_model(model, cfg)


def base_of(model: Any) -> Any:
    """The JanusForConditionalGeneration inside a peft wrapper (LoRA layers are injected in place)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


# ---- data -----------------------------------------------------------------------------------------------











# ---- losses ---------------------------------------------------------------------------------------------

def mean_logprob(model: Any, rows: Sequence[Row], uncond: Sequence[bool] | None = None) -> Any:
    """Mean log-prob of each row's image tokens under its prompt (or its unconditional twin)."""
    import torch

    from mllm_audit.scoring.imagetokens import image_token_logprobs

    model = base_of(model)  # LoRA layers sit inside the base model's modules
    dev = next(model.parameters()).device
    prompts = [r.uncond if uncond and uncond[i] else r.ids for i, r in enumerate(rows)]
    codes = torch.tensor([r.codes for r in rows], device=dev)
    return image_token_logprobs(model, prompts, codes).mean(-1)


def guided_logprob(model: Any, rows: Sequence[Row], scale: float) -> Any:
    """Mean log-prob of each row's image tokens under the guided mix `generate` samples from."""
    import torch

    from mllm_audit.scoring.imagetokens import image_token_logits

    model = base_of(model)
    dev = next(model.parameters()).device
    codes = torch.tensor([r.codes for r in rows], device=dev)
    logits = image_token_logits(model, [r.ids for r in rows] + [r.uncond for r in rows], codes.repeat(2, 1))
    c, u = logits[: len(rows)], logits[len(rows) :]
    g = torch.log_softmax(u + scale * (c - u), -1)
    return g.gather(-1, codes.unsqueeze(-1)).squeeze(-1).mean(-1)


def anchor_kl(model: Any, rows: Sequence[Row], scale: float) -> Any:
    """Mean KL(frozen base || adapted) per image position of the guided mix, teacher-forced on `rows`."""
    import torch

    from mllm_audit.scoring.imagetokens import image_token_logits

    base = base_of(model)
    dev = next(base.parameters()).device
    codes = torch.tensor([r.codes for r in rows], device=dev)
    prompts = [r.ids for r in rows] + [r.uncond for r in rows]

    def mix(logits: Any) -> Any:
        c, u = logits[: len(rows)], logits[len(rows) :]
        return torch.log_softmax(u + scale * (c - u) if scale > 1 else c, -1)

    with torch.no_grad(), model.disable_adapter():
        ref = mix(image_token_logits(base, prompts, codes.repeat(2, 1)))
    now = mix(image_token_logits(base, prompts, codes.repeat(2, 1)))
    return (ref.exp() * (ref - now)).sum(-1).mean()


def _anchor_batch(rows: Sequence[Row], n: int, rng: random.Random) -> list[Row]:
    aug = [r for r in rows if not r.neutral]
    return rng.sample(aug, min(n, len(aug))) if aug else []


def _anchored_step(model: Any, loss: Any, rows: Sequence[Row], n: int, s: BalancedSettings, rng: random.Random,
                   opt: Any, sched: Any) -> Any:
    """Add the fidelity anchor (when on) to a stage's loss and take one optimiser step; the loss taken."""
    if s.anchor > 0 and (ab := _anchor_batch(rows, n, rng)):
        loss = loss + s.anchor * anchor_kl(model, ab, s.anchor_scale)
    opt.zero_grad()
    loss.backward()
    opt.step()
    sched.step()
    return loss


def bpo_loss(lp_i: Any, lp_j: Any, beta: float) -> Any:
    """β · mean log(1 + (σ(Δ) − ½)²), Δ = logit(p_i) − logit(p_j), p = exp(mean log-prob)."""
    import torch

    def logit(lp: Any) -> Any:
        lp = lp.clamp(max=-1e-6)
        return lp - torch.log(-torch.expm1(lp))

    delta = logit(lp_i) - logit(lp_j)
    return beta * torch.log1p((torch.sigmoid(delta) - 0.5) ** 2).mean()


def _schedule(opt: Any, total: int, warmup: float) -> Any:
    import torch

    w = max(1, int(round(warmup * total)))

    def f(step: int) -> float:
        if step < w:
            return (step + 1) / w
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - w) / max(1, total - w))))

    return torch.optim.lr_scheduler.LambdaLR(opt, f)


def train_sft(model: Any, rows: Sequence[Row], s: BalancedSettings, log: Callable[[str], None] | None = None
              ) -> dict[str, Any]:
    """Stage 1: NLL of balanced image tokens (plus unconditional twins at `uncond_rate`)."""
    import torch

    all_rows = rows
    if s.anchor > 0 and all(r.neutral for r in rows):
        raise AuditError("anchor: needs the augmented prompts' rows (set augmented=true)")
    rows = [r for r in rows if s.augmented or r.neutral]
    rng = random.Random(s.seed)
    torch.manual_seed(s.seed)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=s.sft_lr, weight_decay=0.0)
    steps_per_epoch = max(1, math.ceil(len(rows) / s.sft_batch))
    sched = _schedule(opt, steps_per_epoch * s.sft_epochs, s.warmup)
    model.train()
    losses = []
    for epoch in range(s.sft_epochs):
        order = list(range(len(rows)))
        rng.shuffle(order)
        tot = 0.0
        for k in range(0, len(order), s.sft_batch):
            batch = [rows[i] for i in order[k : k + s.sft_batch]]
            unc = [r.neutral and rng.random() < s.uncond_rate for r in batch]
            loss = -mean_logprob(model, batch, unc).mean()
            if s.sft_guidance > 0:
                loss = loss - guided_logprob(model, batch, s.sft_guidance).mean()
            loss = _anchored_step(model, loss, all_rows, s.sft_batch, s, rng, opt, sched)
            tot += float(loss.detach()) * len(batch)
        losses.append(tot / len(rows))
        if log:
            log(f"sft epoch {epoch + 1}/{s.sft_epochs}: loss {losses[-1]:.4f}")
    model.eval()
    return {"epochs": s.sft_epochs, "steps": steps_per_epoch * s.sft_epochs, "rows": len(rows), "loss": losses}


def train_bpo(model: Any, rows: Sequence[Row], attributes: Sequence[str], s: BalancedSettings,
              log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Stage 2: the balanced preference loss over explicit within-prompt pairs (+ α · SFT NLL)."""
    import torch

    pairs = bpo_pairs(rows, attributes)
    if not pairs:
        raise AuditError("BPO: no pair of images of the same prompt differing in one attribute")
    rng = random.Random(s.seed + 1)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=s.bpo_lr, weight_decay=0.0)
    steps_per_epoch = max(1, math.ceil(len(pairs) / s.bpo_batch))
    sched = _schedule(opt, steps_per_epoch * s.bpo_epochs, s.warmup)
    model.train()
    losses = []
    for epoch in range(s.bpo_epochs):
        rng.shuffle(pairs)
        tot = 0.0
        for k in range(0, len(pairs), s.bpo_batch):
            chunk = pairs[k : k + s.bpo_batch]
            both = [rows[i] for i, _ in chunk] + [rows[j] for _, j in chunk]
            lp = mean_logprob(model, both)
            loss = bpo_loss(lp[: len(chunk)], lp[len(chunk) :], s.beta)
            if s.alpha_sft:
                loss = loss - s.alpha_sft * lp.mean()
            loss = _anchored_step(model, loss, rows, s.bpo_batch, s, rng, opt, sched)
            tot += float(loss.detach()) * len(chunk)
        losses.append(tot / len(pairs))
        if log:
            log(f"bpo epoch {epoch + 1}/{s.bpo_epochs}: loss {losses[-1]:.6f}")
    model.eval()
    return {"epochs": s.bpo_epochs, "pairs": len(pairs), "steps": steps_per_epoch * s.bpo_epochs, "loss": losses}


@dataclass
class PairGap:
    """How far the model is from indifference on the BPO pairs: mean |σ(Δ) − ½| (0 = balanced)."""

    mean_abs: float
    n: int


def pair_gap(model: Any, rows: Sequence[Row], attributes: Sequence[str]) -> PairGap:
    import torch

    pairs = bpo_pairs(rows, attributes)
    vals = []
    with torch.no_grad():
        for k in range(0, len(pairs), 64):
            chunk = pairs[k : k + 64]
            lp = mean_logprob(model, [rows[i] for i, _ in chunk] + [rows[j] for _, j in chunk])
            a, b = lp[: len(chunk)].clamp(max=-1e-6), lp[len(chunk) :].clamp(max=-1e-6)
            d = (a - torch.log(-torch.expm1(a))) - (b - torch.log(-torch.expm1(b)))
            vals.extend((torch.sigmoid(d) - 0.5).abs().tolist())
    return PairGap(float(sum(vals) / len(vals)) if vals else float("nan"), len(vals))


def parse_overrides(pairs: list[str]) -> dict[str, object]:
    """KEY=VALUE strings -> typed BalancedSettings fields (one-line error naming a bad one)."""
    from mllm_audit.editors.bpo import BalancedSettings

    fields = {f.name: f for f in dataclasses.fields(BalancedSettings)}
    out: dict[str, object] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or key not in fields or key == "lora_targets":
            raise AuditError(f"--set {pair!r}: expected KEY=VALUE with KEY one of "
                             f"{', '.join(k for k in fields if k != 'lora_targets')}")
        default = getattr(BalancedSettings(), key)
        try:
            if isinstance(default, bool):
                if value.lower() not in ("true", "false", "1", "0"):
                    raise ValueError(value)
                out[key] = value.lower() in ("true", "1")
            else:
                out[key] = type(default)(value)
        except ValueError:
            raise AuditError(f"--set {pair!r}: {value!r} is not a {type(default).__name__}") from None
    return out
