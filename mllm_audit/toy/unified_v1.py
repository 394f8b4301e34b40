"""The toy unified world v1: a tiny Janus whose generation head plants each prompt's skew exactly.

`python -m mllm_audit.toy.unified_v1` rebuilds the shipped `adapters/toy-janus` folder. World v2
(a skew the language model learns, with a tokenizer negative control) is toy/unified.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from mllm_audit.models.base import LoadOptions
from mllm_audit.models.cards import Card
from mllm_audit.models.families.janus import DEFAULT_GENERATION, JanusAdapter, load
from mllm_audit.testing.tiny import TinyJanusSpec, save_tiny_janus

# ---- the toy unified world --------------------------------------------------------------------------
# One image token per image (image_size == patch_size), so each generated image is one codebook entry
# and its group is that code: codes 0..7 are (gender, race) = divmod(code, 4), code 8 shows no person,
# codes 9.. are never drawn. The generation head is solved (least squares, exact) so that after
# classifier-free guidance at the card's scale each prompt draws codes with its planted distribution.

TOY_GENDERS = ["male", "female"]
TOY_RACES = ["wmelh", "black", "indian", "asian"]
NO_PERSON_CODE = 8


def toy_code_probs(gender: list[float], race: list[float], no_person: float = 0.0) -> list[float]:
    """Code distribution: gender x race independent, times (1 - no_person); code 8 takes no_person."""
    probs = [(1 - no_person) * gender[c // 4] * race[c % 4] for c in range(8)]
    return probs + [no_person]


@torch.no_grad()
def fit_generation_head(adapter: JanusAdapter, prompts: list[str], targets: list[list[float]]) -> None:
    """Set the generation head's last layer so that the guided logits give `targets` per prompt.

    The guided logits are V z + b with z = g_u + s (g_c - g_u), g the head's hidden layer for the
    unconditional / conditional rows; z is read from the model's own `generate` (a hook), then
    V, b solve the centred log-targets exactly (minimum norm).
    """
    head = adapter.model.model.generation_head.vision_head
    seen: list[torch.Tensor] = []
    hook = head.register_forward_hook(lambda _m, args, _o: seen.append(args[0].detach().clone()))
    try:
        zs = []
        scale = float(adapter.generation_settings()["guidance_scale"])
        for p in prompts:
            seen.clear()
            adapter.generate_tokens([p], seed=0)
            g = seen[0].double()
            cond, uncond = g[0], g[1]
            zs.append(uncond + scale * (cond - uncond) if scale > 1 else cond)
    finally:
        hook.remove()
    z = torch.stack(zs)  # [P, D]
    n_codes = head.out_features
    logt = torch.full((len(prompts), n_codes), -30.0, dtype=torch.float64)
    for i, t in enumerate(targets):
        tt = torch.tensor(t, dtype=torch.float64)
        logt[i, : len(t)] = torch.where(tt > 0, tt.clamp_min(1e-12).log(), torch.tensor(-30.0, dtype=torch.float64))
    logt = logt - logt.mean(-1, keepdim=True)
    x = torch.cat([z, torch.ones(len(prompts), 1, dtype=torch.float64)], dim=-1)  # [P, D+1]
    sol = torch.linalg.pinv(x) @ logt  # [D+1, n_codes]
    head.weight.copy_(sol[:-1].T.to(head.weight.dtype))
    head.bias.copy_(sol[-1].to(head.bias.dtype))


def build_toy_janus(out: Path, prompts: list[dict[str, Any]], classifier_out: Path, seed: int = 0) -> dict[str, Any]:
    """Build the toy unified world: a tiny Janus whose generation head plants `prompts`' skews, and a
    toy classifier (tiny CLIP + linear heads) that reads each code's group from its decoded image.

    `prompts`: [{prompt, occupation, planted: {gender: [2], race: [4], no_person: p}}]. Returns a
    report with the realised code probabilities per prompt.
    """

    corpus = [p["prompt"] for p in prompts] + [
        f"What is the gender of a {p['occupation']}? male, female or unknown" for p in prompts
    ]
    spec = TinyJanusSpec(image_size=16, patch_size=16, codebook=16, vq_levels=5, corpus=corpus)
    folder = save_tiny_janus(Path(out), seed=seed, spec=spec)
    card = Card(name="toy-janus", family="janus", weights=str(folder), generation=dict(DEFAULT_GENERATION))
    adapter = load(card, LoadOptions())
    targets = [toy_code_probs(**p["planted"]) for p in prompts]
    fit_generation_head(adapter, [p["prompt"] for p in prompts], targets)
    adapter.model.save_pretrained(folder)
    # Realised first-token distributions, from the saved head.
    realised = []
    head = adapter.model.model.generation_head
    for p in prompts:
        probs = code_distribution(adapter, p["prompt"], head)
        realised.append([round(float(x), 4) for x in probs[: NO_PERSON_CODE + 1]])
    # Reference image per code, for the classifier.
    codes = torch.arange(NO_PERSON_CODE + 1).unsqueeze(-1)
    refs = adapter.decode_images(codes)
    from mllm_audit.toy.classifier import save_toy_classifier

    labels = [
        {"person": 1, "gender": c // 4, "race": c % 4} if c < NO_PERSON_CODE else {"person": 0}
        for c in range(NO_PERSON_CODE + 1)
    ]
    save_toy_classifier(Path(classifier_out), refs, labels, {"gender": TOY_GENDERS, "race": TOY_RACES}, seed=seed)
    report = {"prompts": [p["prompt"] for p in prompts], "code_probs": realised}
    (folder / "toy-report.json").write_text(json.dumps(report, indent=1) + "\n")
    return report


@torch.no_grad()
def code_distribution(adapter: JanusAdapter, prompt: str, head: torch.nn.Module) -> torch.Tensor:
    """The guided first-token distribution for a prompt (what one-token images are drawn from)."""
    seen: list[torch.Tensor] = []
    hook = head.register_forward_hook(lambda _m, _a, o: seen.append(o.detach().clone()))
    try:
        adapter.generate_tokens([prompt], seed=0)
    finally:
        hook.remove()
    cond, uncond = seen[0].double()
    s = float(adapter.generation_settings()["guidance_scale"])
    logits = uncond + s * (cond - uncond) if s > 1 else cond
    t = float(adapter.generation_settings().get("temperature") or 1.0)
    return torch.softmax(logits / t, dim=-1)


def build_shipped_toy(root: Path | None = None) -> dict[str, Any]:
    """Rebuild `adapters/toy-janus/` (model + classifier) from `suites/gen-toy/prompts.jsonl`."""
    import shutil

    from mllm_audit.util.resources import adapters_dir, suites_dir

    lines = (suites_dir() / "gen-toy" / "prompts.jsonl").read_text(encoding="utf-8").splitlines()
    rows = [json.loads(line) for line in lines if line.strip()]
    template = "A photo of the face of a {occupation}, a person"
    prompts = [{"prompt": r.get("prompt") or template.format(occupation=r["occupation"]),
                "occupation": r["occupation"], "planted": r["meta"]["planted"]} for r in rows]
    out = Path(root) if root is not None else adapters_dir() / "toy-janus"
    if out.exists():
        shutil.rmtree(out)
    return build_toy_janus(out, prompts, out / "classifier", seed=0)


if __name__ == "__main__":  # python -m mllm_audit.toy.unified_v1: rebuild the shipped toy world
    print(json.dumps(build_shipped_toy(), indent=1))
