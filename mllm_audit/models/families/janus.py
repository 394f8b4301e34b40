"""Janus / Janus-Pro (DeepSeek's unified models) on transformers' `JanusForConditionalGeneration`.

Understanding goes through the same scoring contract as every family. Layout (as JanusProcessor
builds it): the processor's chat template wraps the card-formatted prompt, the default system prompt
is prepended when the processor says so, and each `<image_placeholder>` becomes
`<begin_of_image>` + `num_image_tokens` placeholders + `<end_of_image>`. Image features are the
SigLIP tower's last hidden state through the `aligner` MLP.

Generation draws with transformers' own `generate(generation_mode="image")`, which runs the
classifier-free guidance pair (the prompt, and the prompt masked to pads but BOS/BOI) and samples from
the generation head; the card's `generation:` block sets the guidance scale, temperature and
sampling. Each batch is seeded from (seed, batch index), so the same call gives the same images.

Also here: `save_tiny_janus`, a random tiny Janus built from a config (tests), and
`build_toy_janus`, the project's toy unified world with a planted generation skew.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from mllm_audit.models.base import Adapter, LoadOptions, last_mlp
from mllm_audit.models.cards import Card
from mllm_audit.models.families.llava import ChatTemplateMixin
from mllm_audit.models.loading import load_with_processor

# Card `generation:` keys that map onto transformers' GenerationConfig.
GENERATION_KEYS = ("guidance_scale", "temperature", "do_sample", "top_k", "top_p")
# deepseek-ai/Janus' generation_inference.py samples each image token from the full guided softmax
# (cfg_weight 5, temperature 1, no top-k / top-p). transformers fills an unset `top_k` with 50, which
# would sample from the 50 likeliest of 16,384 codes: 0 and 1.0 switch both warpers off explicitly.
DEFAULT_GENERATION = {"guidance_scale": 5.0, "temperature": 1.0, "do_sample": True, "top_k": 0, "top_p": 1.0}


def derive_seed(*parts: object) -> int:
    """A 31-bit seed from any parts: stable across runs and machines (unlike `hash`)."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


class JanusAdapter(ChatTemplateMixin, Adapter):
    processor: Any = None
    boi_token_id: int = -1
    eoi_token_id: int = -1

    # ---- understanding ------------------------------------------------------------------------
    @property
    def max_positions(self) -> int | None:
        n = getattr(self.model.config.text_config, "max_position_embeddings", None)
        return int(n) if n else None

    def prompt_ids(self, prompt: str, task: str | None, with_image: bool) -> list[int]:
        text = self.chat_text(self.format_prompt(prompt, task), with_image)
        if getattr(self.processor, "use_default_system_prompt", False):
            from transformers.models.janus.processing_janus import DEFAULT_SYSTEM_PROMPT

            text = DEFAULT_SYSTEM_PROMPT + text
        out: list[int] = []
        for t in self.tokenizer(text).input_ids:
            if t == self.image_token_id:
                out.extend([self.boi_token_id] + [t] * self.n_image_tokens + [self.eoi_token_id])
            else:
                out.append(t)
        return out

    def preprocess(self, images: list[Any]) -> torch.Tensor:
        pv = self.processor.image_processor(images, return_tensors="pt")["pixel_values"]
        return pv.to(self.device, self.dtype)

    def encode_pixels(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.model.model.get_image_features(pixel_values=pixel_values, return_dict=True).pooler_output

    def language_model(self) -> torch.nn.Module:
        # The whole model: given inputs_embeds and no pixels it is the language model plus lm_head.
        return self.model

    # ---- generation ---------------------------------------------------------------------------
    def generation_settings(self) -> dict[str, Any]:
        """The card's CFG / sampling settings over the defaults (the Janus repos' own: scale 5, T 1)."""
        gen = dict(DEFAULT_GENERATION)
        gen.update({k: v for k, v in self.card.generation.items() if k in GENERATION_KEYS})
        return gen

    def generation_config(self) -> Any:
        from transformers import GenerationConfig

        base = getattr(self.model, "generation_config", None)
        cfg = GenerationConfig(**base.to_dict()) if base is not None else GenerationConfig()
        tok = self.tokenizer
        bos = tok.bos_token_id if tok.bos_token_id is not None else cfg.bos_token_id
        cfg.update(
            bos_token_id=bos,
            pad_token_id=self.pad_id,
            num_beams=1,
            num_return_sequences=1,
            generation_kwargs={**(cfg.generation_kwargs or {}), "boi_token_id": self.boi_token_id},
            **self.generation_settings(),
        )
        return cfg

    def generation_text(self, prompt: str) -> str:
        """The prompt as a user turn in the chat template (the processor then appends BOI)."""
        return self.chat_text(self.format_prompt(prompt, "t2i"), False)

    @torch.no_grad()
    def generate_tokens(self, prompts: list[str], seed: int) -> torch.Tensor:
        """Image tokens [len(prompts), n_tokens] for one batch, seeded."""
        texts = [self.generation_text(p) for p in prompts]
        inputs = self.processor(text=texts, generation_mode="image", padding=True, return_tensors="pt")
        torch.manual_seed(seed)
        self.counters.forward_passes += 1
        return self.model.generate(
            input_ids=inputs["input_ids"].to(self.device),
            attention_mask=inputs["attention_mask"].to(self.device),
            generation_config=self.generation_config(),
            generation_mode="image",
        )

    @torch.no_grad()
    def decode_images(self, tokens: torch.Tensor) -> list[Any]:
        """VQ-decode image tokens to PIL images (undoing the image processor's normalisation)."""
        import numpy as np
        from PIL import Image

        if tokens.shape[0] == 1:
            # torch's group_norm refuses one sample whose map is 1x1 ("more than 1 value per channel");
            # decoding is per row (GroupNorm normalises each sample alone), so decode two and keep one.
            return self.decode_images(tokens.repeat(2, 1))[:1]
        pixels = self.model.decode_image_tokens(tokens.to(self.device)).float().cpu().numpy()  # [B, H, W, C]
        ip = self.processor.image_processor
        mean = np.asarray(getattr(ip, "image_mean", None) or [0.5, 0.5, 0.5], dtype=np.float32)
        std = np.asarray(getattr(ip, "image_std", None) or [0.5, 0.5, 0.5], dtype=np.float32)
        arr = np.clip(np.rint((pixels * std + mean) * 255.0), 0, 255).astype(np.uint8)
        return [Image.fromarray(a, mode="RGB") for a in arr]

    def generate_images(self, prompts: list[str], n: int, seed: int, batch_size: int = 8) -> list[Any]:
        """`n` images per prompt, prompt-major, with the card's CFG settings.

        Rows (prompt, k) are taken `batch_size` at a time; batch b is seeded with
        `derive_seed(seed, b)`, so a call is reproducible for a given batch size.
        """
        rows = [p for p in prompts for _ in range(n)]
        out: list[Any] = []
        for b, start in enumerate(range(0, len(rows), max(1, batch_size))):
            part = rows[start : start + max(1, batch_size)]
            out.extend(self.decode_images(self.generate_tokens(part, derive_seed(seed, b))))
        return out


def load(card: Card, options: LoadOptions) -> JanusAdapter:
    from transformers import JanusForConditionalGeneration

    keep = ["vision_model", "aligner", "vqmodel", "generation_head", "lm_head"]
    model, processor = load_with_processor(JanusForConditionalGeneration, card, options, keep)
    cfg = model.config
    tok = processor.tokenizer
    if not card.edit:
        card.edit = {
            "text_modules": last_mlp("model.language_model.layers", cfg.text_config.num_hidden_layers),
            "vision_modules": ["model.aligner"],
        }
    adapter = JanusAdapter(
        card=card,
        model=model,
        tokenizer=tok,
        options=options,
        image_token_id=int(cfg.image_token_id),
        n_image_tokens=int(getattr(processor, "num_image_tokens", 0) or cfg.vision_config.num_image_tokens),
    )
    adapter.processor = processor
    adapter.boi_token_id = int(tok.convert_tokens_to_ids(processor.image_start_token))
    adapter.eoi_token_id = int(tok.convert_tokens_to_ids(processor.image_end_token))
    return adapter


# ---- tiny and toy Janus ---------------------------------------------------------------------------

# One user turn, then the assistant cue: the shape of deepseek-community Janus' template, written here.
CHAT_TEMPLATE = (
    "{% for m in messages %}<|User|>: "
    "{% for c in m['content'] %}{% if c['type'] == 'image' %}<image_placeholder>\n{% endif %}{% endfor %}"
    "{% for c in m['content'] %}{% if c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}"
    "\n\n{% endfor %}{% if add_generation_prompt %}<|Assistant|>:{% endif %}"
)
SPECIALS = {"image_token": "<image_placeholder>", "boi_token": "<begin_of_image>", "eoi_token": "<end_of_image>"}


def janus_tokenizer(corpus: list[str] | None = None) -> Any:
    """The tiny BPE tokenizer with Janus' three image specials (and the chat roles) as special tokens."""
    from transformers import PreTrainedTokenizerFast

    from mllm_audit.testing.tiny import DEFAULT_CORPUS, build_tokenizer

    base = build_tokenizer(list(DEFAULT_CORPUS) + list(corpus or []), vocab_size=500 if corpus else 400)
    tok = PreTrainedTokenizerFast(
        tokenizer_object=base.backend_tokenizer,
        bos_token="</s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
        extra_special_tokens=SPECIALS,
    )
    tok.add_tokens(["<|User|>", "<|Assistant|>"], special_tokens=True)
    return tok


@dataclass
class TinyJanusSpec:
    """Sizes of a tiny Janus; `image_size == patch_size` gives one image token per image."""

    hidden: int = 32
    layers: int = 2
    image_size: int = 32
    patch_size: int = 8
    codebook: int = 16
    vq_levels: int = 4  # channel_multiplier length: the decoder upsamples 2^(levels-1) times
    vq_latent: int = 32  # VQ encoder output channels (multiple of 32); wide enough to read codes back linearly
    corpus: list[str] = field(default_factory=list)


def save_tiny_janus(out: Path, seed: int = 0, spec: TinyJanusSpec | None = None) -> Path:
    """A random tiny Janus (+ processor and generation config) saved as a model folder."""
    from transformers import (
        GenerationConfig,
        JanusConfig,
        JanusForConditionalGeneration,
        JanusImageProcessorPil,
        JanusProcessor,
        JanusVisionConfig,
        JanusVQVAEConfig,
        LlamaConfig,
    )

    spec = spec or TinyJanusSpec()
    tok = janus_tokenizer(spec.corpus)
    image_id, boi = tok.convert_tokens_to_ids([SPECIALS["image_token"], SPECIALS["boi_token"]])
    n_tokens = (spec.image_size // spec.patch_size) ** 2
    text = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=spec.hidden,
        intermediate_size=spec.hidden * 2,
        num_hidden_layers=spec.layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        tie_word_embeddings=False,
    )
    vision = JanusVisionConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        image_size=spec.image_size,
        patch_size=spec.patch_size,
        projection_dim=spec.hidden,
        mlp_ratio=2.0,
        num_image_tokens=n_tokens,
    )
    # GroupNorm takes 32 groups: channels must be multiples of 32. projection_dim = text hidden.
    vq = JanusVQVAEConfig(
        embed_dim=8,
        num_embeddings=spec.codebook,
        latent_channels=spec.vq_latent,
        base_channels=32,
        channel_multiplier=[1] * spec.vq_levels,
        num_res_blocks=1,
        projection_dim=spec.hidden,
        image_token_embed_dim=spec.hidden,
        num_hidden_layers=2,
    )
    cfg = JanusConfig(
        text_config=text.to_dict(),
        vision_config=vision.to_dict(),
        vq_config=vq.to_dict(),
        image_token_id=image_id,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = JanusForConditionalGeneration(cfg).eval()
    model.generation_config = GenerationConfig(
        bos_token_id=tok.bos_token_id,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
        generation_kwargs={"boi_token_id": boi},
        guidance_scale=5.0,
        do_sample=True,
    )
    size = spec.image_size
    improc = JanusImageProcessorPil(size={"height": size, "width": size})
    proc = JanusProcessor(image_processor=improc, tokenizer=tok, chat_template=CHAT_TEMPLATE, num_image_tokens=n_tokens)
    out = Path(out)
    model.save_pretrained(out)
    proc.save_pretrained(out)
    return out


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
    from mllm_audit.models.cards import Card

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
    from mllm_audit.classifiers.classify import save_toy_classifier

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


if __name__ == "__main__":  # python -m mllm_audit.models.families.janus: rebuild the shipped toy world
    print(json.dumps(build_shipped_toy(), indent=1))
