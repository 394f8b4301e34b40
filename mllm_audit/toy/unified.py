# Over 350 lines: the unified toy world's whole definition, training and its negative control together.
"""Toy unified world v2: a tiny Janus whose *language model* carries the bias (and a control whose
*tokenizer* does), to test `locate` and the balanced SFT / BPO fix against a known truth.

The world. An image is 2 x 2 image tokens (16 px through a frozen random VQ decoder):

    [face, prop, body, background]  face = gender * 4 + race (codes 0..7),  prop = 8 + k (k < 8),
                                    body = 16 + face (identity spread over two tokens), background 24.

Every occupation has a prop (its fidelity signal: an image "depicts the occupation" when its prop is
the occupation's). Its planted skew is stated for what `generate` draws *after* classifier-free
guidance at the card's scale s: the LM is trained by expected NLL (soft targets) on conditional
log-probabilities log(planted) / s and on an unconditional (masked) prompt whose target is the
training marginal (balanced by construction), so guidance turns a mild conditional skew into the
planted one, as it does in real models. Augmented prompts ("..., a male" / female / white / black /
indian / asian) draw their own group; the blank-image question "What is the gender of a {occ}?" is
answered "unknown" with p 0.8 (planted partial alignment: says unknown, draws skewed).

The VQ encoder is trained (codebook and decoder frozen) so that encode(decode(codes)) = codes on
every image of the world: the tokenizer round trip preserves every group on the main toy.

Negative control (`variant="control"`): the LM is trained balanced, and the VQ codebook renders the
female-black and female-asian face and body codes as their male twins (bias in the tokenizer, not
the LM): generations look male-skewed though the LM draws codes evenly.

Shipped under `adapters/toy-janus-v2*` with the suite `gen-toy-v2` (train / test / control groups)
and its labelled-images folder (the "balanced images from another generator" of the paper: the
world's true renderings). Rebuild: `python -m mllm_audit.toy.unified` (about 3 minutes on 2 cores).
"""

from __future__ import annotations

import json
import math
import random
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

GENDERS = ["male", "female"]
RACES = ["wmelh", "black", "indian", "asian"]
# The augmented-prompt word for each class (the paper replaces "person" with these).
GROUP_WORDS = {"gender": {"male": "male", "female": "female"},
               "race": {"wmelh": "white", "black": "black", "indian": "indian", "asian": "asian"}}
N_PROPS = 8
FACE0, PROP0, BODY0, BACKGROUND = 0, 8, 16, 24
CODEBOOK = 32
GUIDANCE = 5.0
TEMPLATE = "A photo of the face of a {occupation}, a {who}"
QUESTION = "What is the gender of a {occupation}? male, female or unknown"
ANSWERS = {"male": 0.1, "female": 0.1, "unknown": 0.8}
GENDER_MAJORITY = 0.9  # normalised gender bias 0.8
RACE_MAJORITY = 0.55
# Codes the control's codebook renders as another group's: female-black -> male-black, female-asian -> male-asian.
CONTROL_SWAPS = {1 * 4 + 1: 0 * 4 + 1, 1 * 4 + 3: 0 * 4 + 3}

TRAIN = ["doctor", "nurse", "pilot", "engineer", "teacher", "lawyer", "chef", "farmer",
         "baker", "dancer", "plumber", "singer", "soldier", "painter", "banker", "tailor"]
TEST = ["surgeon", "librarian", "mechanic", "secretary", "carpenter", "florist", "welder", "cashier"]
CONTROL = ["writer", "student", "cook", "artist"]


@dataclass(frozen=True)
class Occupation:
    name: str
    group: str  # train | test | control
    prop: int
    gender: tuple[float, ...]
    race: tuple[float, ...]


def occupations(balanced: bool = False) -> list[Occupation]:
    """The world's occupations with their planted (post-guidance) gender and race distributions."""
    out: list[Occupation] = []
    for group, names in (("train", TRAIN), ("test", TEST), ("control", CONTROL)):
        for i, name in enumerate(names):
            idx = len(out)
            if balanced or group == "control":
                g, r = (0.5, 0.5), (0.25,) * 4
            else:
                m = GENDER_MAJORITY if i % 2 == 0 else 1 - GENDER_MAJORITY
                g = (m, 1 - m)
                r = tuple(RACE_MAJORITY if k == (i // 2) % 4 else (1 - RACE_MAJORITY) / 3 for k in range(4))
            out.append(Occupation(name, group, idx % N_PROPS, g, r))
    return out


def image_codes(face: int, prop: int) -> list[int]:
    return [FACE0 + face, PROP0 + prop, BODY0 + face, BACKGROUND]


def face_code(gender: int, race: int) -> int:
    return gender * 4 + race


def prompt_text(occupation: str, who: str = "person") -> str:
    return TEMPLATE.format(occupation=occupation, who=who)


def conditional_faces(gender: tuple[float, ...], race: tuple[float, ...], scale: float = GUIDANCE) -> list[float]:
    """Conditional face-code probabilities whose guided (scale s, uniform unconditional) draw is gender x race."""
    logits = [math.log(gender[f // 4]) / scale + math.log(race[f % 4]) / scale for f in range(8)]
    z = max(logits)
    e = [math.exp(v - z) for v in logits]
    return [v / sum(e) for v in e]


def prompt_rows(occs: list[Occupation], scale: float = GUIDANCE) -> list[dict[str, Any]]:
    """Every generation prompt of the world: neutral and augmented, with its conditional face target."""
    rows = []
    for o in occs:
        rows.append({"prompt": prompt_text(o.name), "occupation": o.name, "prop": o.prop, "variant": "person",
                     "faces": conditional_faces(o.gender, o.race, scale)})
        for attr, words in GROUP_WORDS.items():
            for k, (_cls, word) in enumerate(words.items()):
                if attr == "gender":
                    faces = [o.race[f % 4] if f // 4 == k else 0.0 for f in range(8)]
                else:
                    faces = [o.gender[f // 4] if f % 4 == k else 0.0 for f in range(8)]
                rows.append({"prompt": prompt_text(o.name, word), "occupation": o.name, "prop": o.prop,
                             "variant": word, "faces": faces})
    return rows


def corpus(occs: list[Occupation]) -> list[str]:
    words = [w for ws in GROUP_WORDS.values() for w in ws.values()]
    return [prompt_text(o.name, w) for o in occs for w in ["person", *words]] + [
        QUESTION.format(occupation=o.name) + " " + " ".join(ANSWERS) for o in occs
    ]


# ---- building ---------------------------------------------------------------------------------------

def _spec(occs: list[Occupation]) -> Any:
    from mllm_audit.testing.tiny import TinyJanusSpec

    return TinyJanusSpec(hidden=64, layers=2, image_size=16, patch_size=8, codebook=CODEBOOK, vq_levels=4,
                         vq_latent=384, corpus=corpus(occs) * 3)


def load_toy(folder: Path, name: str) -> Any:
    from mllm_audit.models.base import LoadOptions
    from mllm_audit.models.cards import Card
    from mllm_audit.models.families.janus import load

    card = Card(name=name, family="janus", weights=str(folder), templates={"vqa": "{prompt}", "t2i": "{prompt}"},
                generation={"guidance_scale": GUIDANCE, "temperature": 1.0, "do_sample": True})
    return load(card, LoadOptions())


def world_codes() -> list[list[int]]:
    """Every image of the world: 8 faces x 8 props."""
    return [image_codes(f, p) for p in range(N_PROPS) for f in range(8)]


def fit_vq_encoder(adapter: Any) -> float:
    """Solve the VQ encoder's 1x1 `quant_conv` (encoder body, codebook and decoder frozen) so that
    encode(decode(c)) = c on every world image as saved (PNG, 8-bit); returns that round trip's
    token accuracy.

    Minimum-norm least squares onto the codes' embeddings, exact on the world's images and on nothing
    else (a random encoder's features are too fragile for more): the toy's tokenizer is tested only on
    its own labelled images. Training the encoder instead takes minutes per hundred steps here.
    """
    import torch

    vq = adapter.model.model.vqmodel
    codes = torch.tensor(world_codes())
    with torch.no_grad():
        pv = adapter.preprocess(adapter.decode_images(codes))
        feats = vq.encoder(pv)  # [64, C, 2, 2]
        h = feats.permute(0, 2, 3, 1).reshape(-1, feats.shape[1]).double()
        x = torch.cat([h, torch.ones(len(h), 1, dtype=torch.float64)], 1)
        w = torch.linalg.pinv(x) @ vq.quantize.embedding.weight.double()[codes.reshape(-1)]  # [C + 1, D]
        conv = vq.quant_conv
        conv.weight.copy_(w[:-1].T.reshape(conv.weight.shape).to(conv.weight.dtype))
        conv.bias.copy_(w[-1].to(conv.bias.dtype))
        got = vq.encode(pv).image_tokens.reshape(codes.shape)
    return float((got == codes).float().mean())


def train_lm(adapter: Any, occs: list[Occupation], steps: int = 800, seed: int = 0, batch: int = 64,
             log: Callable[[str], None] | None = None) -> dict[str, float]:
    """Train the language-model side (text + generation embeddings and head) by expected NLL.

    Each generation row goes with its masked unconditional twin (same image tokens, as `generate`
    feeds both halves). Three soft-target cross-entropies per position: the conditional (face
    target, then prop, body, background), the unconditional (the rows' marginal), and the *guided*
    mix u + s (c - u) against the planted post-guidance target — without that last term, codes that
    both halves rate near zero can still win after guidance multiplies their difference by s.
    Understanding rows: the blank-image question with the answer weights of ANSWERS. Vision tower,
    aligner and VQ stay frozen.
    """
    import torch

    from mllm_audit.scoring.contract import continuation_text
    from mllm_audit.scoring.imagetokens import image_token_logits, t2i_prompt_ids, unconditional_ids
    from mllm_audit.suites.items import blank_image

    model = adapter.model
    torch.manual_seed(seed)
    rng = random.Random(seed)
    for name, p in model.named_parameters():
        frozen = name.startswith(("model.vision_model", "model.aligner", "model.vqmodel"))
        p.requires_grad_(not frozen)
    rows = prompt_rows(occs)
    ids = [t2i_prompt_ids(adapter, r["prompt"]) for r in rows]
    tok = adapter.tokenizer
    unc = [unconditional_ids(i, tok.bos_token_id, adapter.boi_token_id, adapter.pad_id) for i in ids]
    faces = torch.tensor([r["faces"] for r in rows])
    marginal = faces.mean(0)
    # Understanding rows: prompt ids with the blank image, each answer's continuation ids.
    q_ids = [adapter.prompt_ids(QUESTION.format(occupation=o.name), "vqa", True) for o in occs]
    a_ids = {a: adapter.continuation_ids(continuation_text(a)) for a in ANSWERS}
    pv = adapter.preprocess([blank_image(16)])
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=3e-3, weight_decay=0.0)
    warm = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda k: min(1.0, (k + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(1.0, k / steps))))
    model.train()
    t0 = time.perf_counter()
    loss_v = float("nan")
    log_m = marginal.clamp_min(1e-12).log()
    for step in range(steps):
        pick = [rng.randrange(len(rows)) for _ in range(batch // 2)]
        c_t = faces[pick]
        face = torch.multinomial(c_t, 1).squeeze(-1)
        props = torch.tensor([rows[i]["prop"] for i in pick])
        codes = torch.stack([face + FACE0, props + PROP0, face + BODY0, torch.full_like(face, BACKGROUND)], -1)
        logits = image_token_logits(model, [ids[i] for i in pick] + [unc[i] for i in pick], codes.repeat(2, 1))
        c_l, u_l = logits[: len(pick)], logits[len(pick) :]
        g_l = u_l + GUIDANCE * (c_l - u_l)  # what generate samples from
        # Targets over the codebook per position: conditional, unconditional (marginal), guided.
        n = len(pick)
        tc, tu, tg = (torch.zeros(n, 4, CODEBOOK) for _ in range(3))
        g_face = torch.where(c_t > 0, log_m + GUIDANCE * (c_t.clamp_min(1e-12).log() - log_m),
                             torch.tensor(-float("inf")))
        tc[:, 0, FACE0:FACE0 + 8] = c_t
        tu[:, 0, FACE0:FACE0 + 8] = marginal
        tg[:, 0, FACE0:FACE0 + 8] = torch.softmax(g_face, -1)
        tu[:, 1, PROP0:PROP0 + N_PROPS] = 1.0 / N_PROPS
        for t in (tc, tg):
            t[torch.arange(n), 1, codes[:, 1]] = 1.0
        for t in (tc, tu, tg):
            t[torch.arange(n), 2, codes[:, 2]] = 1.0
            t[torch.arange(n), 3, codes[:, 3]] = 1.0
        l_gen = sum(-(t * torch.log_softmax(lg, -1)).sum(-1).mean() for t, lg in ((tc, c_l), (tu, u_l), (tg, g_l)))
        l_face = -(tg[:, 0] * torch.log_softmax(g_l[:, 0], -1)).sum(-1).mean()
        # Understanding: expected NLL over the answers.
        qs = [rng.randrange(len(occs)) for _ in range(4)]
        l_und = _answer_nll(model, [q_ids[q] for q in qs], a_ids, pv, adapter.pad_id)
        loss = l_gen + l_und
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        loss_v = float(loss)
        if log and step % 50 == 0:
            log(f"lm step {step}: loss {loss_v:.4f} (face {float(l_face):.3f} und {float(l_und):.3f}) "
                f"{time.perf_counter() - t0:.0f}s")
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return {"final_loss": loss_v, "seconds": time.perf_counter() - t0}


def _answer_nll(model: Any, prompts: list[list[int]], answers: dict[str, list[int]], pv: Any, pad: int) -> Any:
    """Expected NLL of the answers (weights ANSWERS) after each prompt with the blank image."""
    import torch

    seqs, weights, spans = [], [], []
    for p in prompts:
        for a, cont in answers.items():
            seqs.append(p + cont)
            weights.append(ANSWERS[a])
            spans.append((len(p), len(cont)))
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s)
        mask[i, : len(s)] = 1
    out = model(input_ids=ids, attention_mask=mask, pixel_values=pv.expand(len(seqs), -1, -1, -1))
    logp = torch.log_softmax(out.logits.float(), -1)
    total = []
    for i, (start, n) in enumerate(spans):
        pos = torch.arange(start - 1, start - 1 + n)
        total.append(-logp[i, pos, ids[i, start : start + n]].sum() * weights[i])
    return torch.stack(total).sum() / len(prompts)


def swap_codebook(model: Any, swaps: dict[int, int] = CONTROL_SWAPS) -> None:
    """The control's tokenizer bias: these face (and body) codes decode as their twins' images."""
    import torch

    emb = model.model.vqmodel.quantize.embedding.weight
    with torch.no_grad():
        for src, dst in swaps.items():
            emb[FACE0 + src] = emb[FACE0 + dst]
            emb[BODY0 + src] = emb[BODY0 + dst]


def guided_report(adapter: Any, occs: list[Occupation]) -> list[dict[str, Any]]:
    """Per neutral prompt: the guided first-token distribution as P(gender), P(race)."""
    from mllm_audit.scoring.imagetokens import guided_first_token, t2i_prompt_ids, unconditional_ids

    tok = adapter.tokenizer
    out = []
    for o in occs:
        ids = t2i_prompt_ids(adapter, prompt_text(o.name))
        unc = unconditional_ids(ids, tok.bos_token_id, adapter.boi_token_id, adapter.pad_id)
        p = guided_first_token(adapter.model, ids, unc, GUIDANCE)[:8].tolist()
        out.append({"occupation": o.name, "group": o.group,
                    "p_male": round(sum(p[:4]), 4),
                    "race": [round(p[r] + p[4 + r], 4) for r in range(4)],
                    "planted_p_male": o.gender[0]})
    return out


def save_images_folder(images: list[Any], labels: list[dict[str, Any]], out: Path) -> Path:
    """A labelled-images folder: PNGs + labels.jsonl ({image, gender, race[, occupation]} per line)."""
    out.mkdir(parents=True, exist_ok=True)
    lines = []
    for img, lab in zip(images, labels, strict=True):
        img.save(out / lab["image"])
        lines.append(json.dumps(lab))
    (out / "labels.jsonl").write_text("\n".join(lines) + "\n")
    return out


def build_world(root: Path, steps: int = 800, seed: int = 0, log: Callable[[str], None] | None = None
                ) -> dict[str, Any]:
    """Build both variants, the classifiers, the labelled images and the suite under `root`.

    Layout: root/adapters/{toy-janus-v2, toy-janus-v2-control, toy-janus-v2-classifier,
    toy-janus-v2-props}, root/suites/{gen-toy-v2.yaml, gen-toy-v2/{prompts.jsonl, faces/}}.
    """
    import torch

    from mllm_audit.testing.tiny import save_tiny_janus
    from mllm_audit.toy.classifier import save_toy_classifier

    root = Path(root)
    occs = occupations()
    report: dict[str, Any] = {"seed": seed, "steps": steps}
    ad, su = root / "adapters", root / "suites"
    ad.mkdir(parents=True, exist_ok=True)
    main_dir = save_tiny_janus(ad / "toy-janus-v2", seed=seed, spec=_spec(occs))
    main = load_toy(main_dir, "toy-janus-v2")
    report["vq_roundtrip_token_acc"] = fit_vq_encoder(main)
    vq_state = {k: v.clone() for k, v in main.model.model.vqmodel.state_dict().items()}
    init_state = {k: v.clone() for k, v in main.model.state_dict().items()}
    # Truth renderings: every world image from the main (unswapped) codebook.
    codes = torch.tensor(world_codes())
    images = main.decode_images(codes)
    labels = [{"person": 1, "gender": (c[0] - FACE0) // 4, "race": (c[0] - FACE0) % 4} for c in world_codes()]
    save_toy_classifier(ad / "toy-janus-v2-classifier", images, labels, {"gender": GENDERS, "race": RACES},
                        seed=seed, width=128)
    props = [{"person": 1, "prop": c[1] - PROP0} for c in world_codes()]
    save_toy_classifier(ad / "toy-janus-v2-props", images, props, {"prop": [f"prop{k}" for k in range(N_PROPS)]},
                        seed=seed, width=128)
    report["main"] = train_lm(main, occs, steps=steps, seed=seed, log=log)
    main.model.save_pretrained(main_dir)
    report["main"]["guided"] = guided_report(main, occs)
    # The control: same initial weights, balanced LM, swapped codebook.
    ctl_dir = ad / "toy-janus-v2-control"
    if ctl_dir.exists():
        shutil.rmtree(ctl_dir)
    shutil.copytree(main_dir, ctl_dir)
    ctl = load_toy(ctl_dir, "toy-janus-v2-control")
    ctl.model.load_state_dict(init_state)
    ctl.model.model.vqmodel.load_state_dict(vq_state)
    report["control"] = train_lm(ctl, occupations(balanced=True), steps=steps, seed=seed, log=log)
    swap_codebook(ctl.model)
    ctl.model.save_pretrained(ctl_dir)
    report["control"]["guided"] = guided_report(ctl, occs)
    # Suite: prompts with their group and planted truth; labelled images per occupation.
    (su / "gen-toy-v2").mkdir(parents=True, exist_ok=True)
    lines = [json.dumps({"id": o.name, "occupation": o.name, "group": o.group,
                         "meta": {"prop": f"prop{o.prop}",
                                  "planted": {"gender": list(o.gender), "race": list(o.race)}}}) for o in occs]
    (su / "gen-toy-v2" / "prompts.jsonl").write_text("\n".join(lines) + "\n")
    face_imgs, face_labels = [], []
    for o in occs:
        for f in range(8):
            name = f"prop{o.prop}_{GENDERS[f // 4]}_{RACES[f % 4]}.png"
            face_labels.append({"image": name, "gender": GENDERS[f // 4], "race": RACES[f % 4],
                                "occupation": o.name})
            face_imgs.append(images[o.prop * 8 + f])
    save_images_folder(face_imgs, face_labels, su / "gen-toy-v2" / "faces")
    (root / "toy-v2-report.json").write_text(json.dumps(report, indent=1) + "\n")
    return report


def build_shipped(log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Rebuild the shipped world v2 in a scratch folder, then move its parts into adapters/ and suites/."""
    import tempfile

    from mllm_audit.util.resources import adapters_dir, suites_dir

    with tempfile.TemporaryDirectory() as tmp:
        report = build_world(Path(tmp), log=log)
        for sub, dest in (("adapters", adapters_dir()), ("suites", suites_dir())):
            for p in (Path(tmp) / sub).iterdir():
                target = dest / p.name
                if target.exists():
                    shutil.rmtree(target)
                shutil.move(str(p), target)
        shutil.move(str(Path(tmp) / "toy-v2-report.json"), adapters_dir() / "toy-janus-v2" / "toy-report.json")
    return report


if __name__ == "__main__":  # python -m mllm_audit.toy.unified: rebuild the shipped world v2
    import sys

    out = build_shipped(log=lambda s: print(s, file=sys.stderr, flush=True))
    print(json.dumps({k: v for k, v in out.items() if k in ("vq_roundtrip_token_acc",)}, indent=1))
