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

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import AuditError

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


@dataclass
class Row:
    """One training example: prompt ids, image token ids, and the image's groups."""

    ids: list[int]
    codes: list[int]
    labels: dict[str, str]
    prompt_key: str
    neutral: bool = True
    uncond: list[int] = field(default_factory=list)


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

def rows_from_folder(adapter: Any, folder: Path, prompts: Sequence[Any], attributes: dict[str, list[str]],
                     augmented: bool = True) -> list[Row]:
    """Balanced rows: each labelled image of an occupation, under its neutral prompt (and its variants)."""
    import torch

    from ..imagetokens import t2i_prompt_ids, unconditional_ids
    from ..locate import VARIANT_WORDS, _open_images, read_labelled_images, variant_prompt

    labelled = read_labelled_images(folder, attributes)
    by_occ: dict[str, list[dict[str, Any]]] = {}
    for r in labelled:
        if "occupation" not in r:
            raise AuditError(f"{folder}/labels.jsonl: image {r['image']!r} has no 'occupation' (needed to train)")
        by_occ.setdefault(str(r["occupation"]), []).append(r)
    names = list(dict.fromkeys(r["image"] for r in labelled))
    codes: dict[str, list[int]] = {}
    with torch.no_grad():
        for i in range(0, len(names), 32):
            pv = adapter.preprocess(_open_images(Path(folder), names[i : i + 32]))
            tok = adapter.model.model.vqmodel.encode(pv).image_tokens.reshape(pv.shape[0], -1)
            codes.update(zip(names[i : i + 32], tok.tolist(), strict=True))
    tk = adapter.tokenizer
    rows: list[Row] = []
    for p in prompts:
        imgs = by_occ.get(p.occupation, [])
        ids = t2i_prompt_ids(adapter, p.prompt)
        unc = unconditional_ids(ids, tk.bos_token_id, adapter.boi_token_id, adapter.pad_id)
        for r in imgs:
            labels = {a: r[a] for a in attributes if a in r}
            rows.append(Row(ids, codes[r["image"]], labels, p.id, True, unc))
            if augmented:
                for a, words in VARIANT_WORDS.items():
                    if a in labels and labels[a] in words:
                        vid = t2i_prompt_ids(adapter, variant_prompt(p.prompt, words[labels[a]]))
                        rows.append(Row(vid, codes[r["image"]], labels, f"{p.id}/{words[labels[a]]}", False,
                                        unconditional_ids(vid, tk.bos_token_id, adapter.boi_token_id,
                                                          adapter.pad_id)))
    if not any(r.neutral for r in rows):
        raise AuditError(f"{folder}: no labelled image matches a training occupation")
    return rows


@dataclass
class SelfGenerated:
    """What drawing the balanced data from the model itself kept: per prompt, images drawn, images the
    classifier agreed with, (gender, race) cells filled and images kept per cell."""

    drawn: int = 0
    agreed: int = 0
    per_prompt: dict[str, dict[str, Any]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"drawn": self.drawn, "agreed": self.agreed,
                "agreement": self.agreed / self.drawn if self.drawn else None, "per_prompt": self.per_prompt}


def _balanced_cells(cells: dict[tuple[str, ...], list[Any]], classes: list[list[str]]
                    ) -> tuple[list[tuple[str, ...]], int, list[str]]:
    """Cells to keep and images per cell so that the first attribute is exactly balanced within each
    class of the second, and the second balanced over the classes where the first is complete.

    Returns (cells, per-cell count, classes of the second attribute dropped for a missing cell).
    One attribute: every class the same count (classes never drawn dropped).
    """
    if len(classes) == 1:
        have = [(c,) for c in classes[0] if cells.get((c,))]
        m = min((len(cells[k]) for k in have), default=0)
        return have, m, [c for c in classes[0] if (c,) not in have]
    first, second = classes[0], classes[1]
    per = {r: min(len(cells.get((g, r), [])) for g in first) for r in second}
    ok = [r for r in second if per[r] > 0]
    m = min((per[r] for r in ok), default=0)
    return [(g, r) for r in ok for g in first], m, [r for r in second if per[r] == 0]


def rows_from_generations(adapter: Any, clf: Any, prompts: Sequence[Any], per_word: int = 16, seed: int = 0,
                          batch_size: int = 64, augmented: bool = True) -> tuple[list[Row], SelfGenerated]:
    """Balanced rows from the model's own drawings (a deviation: the paper's images come from FLUX.1-dev).

    For each training prompt, `per_word` images of each augmented variant ("..., a male", "..., a black",
    ...); an image is kept when the classifier sees a person of the class the variant asked for, and
    labelled with the classifier's classes; then cells are cut to one size so that gender is exactly
    balanced within each race and races are balanced (`_balanced_cells`); a race with an empty
    (gender, race) cell is dropped and reported, never invented. Codes are the generated tokens.
    """
    import torch

    from ..imagetokens import t2i_prompt_ids, unconditional_ids
    from ..locate import VARIANT_WORDS, variant_prompt
    from ..models.janus import derive_seed

    attrs = [a for a in VARIANT_WORDS if a in clf.attributes]
    if not attrs:
        raise AuditError(f"classifier {clf.name!r}: classifies none of {', '.join(VARIANT_WORDS)}")
    tk = adapter.tokenizer
    report = SelfGenerated()

    def unc(ids: list[int]) -> list[int]:
        return unconditional_ids(ids, tk.bos_token_id, adapter.boi_token_id, adapter.pad_id)

    rows: list[Row] = []
    for p in prompts:
        cells: dict[tuple[str, ...], list[list[int]]] = {}
        for a in attrs:
            for cls, word in VARIANT_WORDS[a].items():
                text = variant_prompt(p.prompt, word)
                codes: list[list[int]] = []
                for b, start in enumerate(range(0, per_word, max(1, batch_size))):
                    n = min(batch_size, per_word - start)
                    codes.extend(adapter.generate_tokens([text] * n, derive_seed(seed, p.id, word, b)).tolist())
                preds = clf.classify(adapter.decode_images(torch.tensor(codes)), batch_size)
                report.drawn += len(codes)
                for c, pr in zip(codes, preds, strict=True):
                    if pr.person and pr.labels.get(a) == cls and all(x in pr.labels for x in attrs):
                        report.agreed += 1
                        cells.setdefault(tuple(pr.labels[x] for x in attrs), []).append(c)
        keep, m, dropped = _balanced_cells(cells, [list(clf.attributes[a]) for a in attrs])
        report.per_prompt[p.id] = {"cells": len(keep), "per_cell": m, "dropped": dropped}
        ids = t2i_prompt_ids(adapter, p.prompt)
        for key in keep:
            labels = dict(zip(attrs, key, strict=True))
            for c in cells[key][:m]:
                rows.append(Row(ids, c, labels, p.id, True, unc(ids)))
                if augmented:
                    for a in attrs:
                        vid = t2i_prompt_ids(adapter, variant_prompt(p.prompt, VARIANT_WORDS[a][labels[a]]))
                        rows.append(Row(vid, c, labels, f"{p.id}/{VARIANT_WORDS[a][labels[a]]}", False, unc(vid)))
    if not any(r.neutral for r in rows):
        raise AuditError("self-generated balanced data: the classifier agreed with no drawn image")
    return rows, report


def bpo_pairs(rows: Sequence[Row], attributes: Sequence[str]) -> list[tuple[int, int]]:
    """Index pairs (i, j) of neutral rows of the same prompt that differ in exactly one attribute."""
    out = []
    by_prompt: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        if r.neutral:
            by_prompt.setdefault(r.prompt_key, []).append(i)
    for idx in by_prompt.values():
        for x in range(len(idx)):
            for y in range(x + 1, len(idx)):
                a, b = rows[idx[x]].labels, rows[idx[y]].labels
                diff = [k for k in attributes if a.get(k) != b.get(k)]
                if len(diff) == 1:
                    out.append((idx[x], idx[y]))
    return out


# ---- losses ---------------------------------------------------------------------------------------------

def mean_logprob(model: Any, rows: Sequence[Row], uncond: Sequence[bool] | None = None) -> Any:
    """Mean log-prob of each row's image tokens under its prompt (or its unconditional twin)."""
    import torch

    from ..imagetokens import image_token_logprobs

    model = base_of(model)  # LoRA layers sit inside the base model's modules
    dev = next(model.parameters()).device
    prompts = [r.uncond if uncond and uncond[i] else r.ids for i, r in enumerate(rows)]
    codes = torch.tensor([r.codes for r in rows], device=dev)
    return image_token_logprobs(model, prompts, codes).mean(-1)


def guided_logprob(model: Any, rows: Sequence[Row], scale: float) -> Any:
    """Mean log-prob of each row's image tokens under the guided mix `generate` samples from."""
    import torch

    from ..imagetokens import image_token_logits

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

    from ..imagetokens import image_token_logits

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
            if s.anchor > 0 and (ab := _anchor_batch(all_rows, s.sft_batch, rng)):
                loss = loss + s.anchor * anchor_kl(model, ab, s.anchor_scale)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            tot += float(loss) * len(batch)
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
            if s.anchor > 0 and (ab := _anchor_batch(rows, s.bpo_batch, rng)):
                loss = loss + s.anchor * anchor_kl(model, ab, s.anchor_scale)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            tot += float(loss) * len(chunk)
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
