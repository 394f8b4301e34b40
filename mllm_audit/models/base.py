"""The model protocol every family implements, and what they share.

The scoring contract (scoring.py) needs only this from a model:
- `prompt_ids(prompt, task, with_image)`: the prompt as the model's processor tokenizes it, with the
  special tokens it adds and `n_image_tokens` placeholders (`image_token_id`) where the image goes;
- `continuation_ids(text)`: the continuation tokenized without special tokens; `prompt_text(...)`: the
  text whose tokens end the prompt (scoring tokenizes the continuation after it, see scoring.py);
- `encode_images(images)`: vision tower + bridge, one feature block [n_image_tokens, hidden] per image;
- `embed(ids, features)`: token embeddings with the image features spliced at the placeholders;
- `lm(inputs_embeds, attention_mask, position_ids, past_key_values)`: the language model's logits.
Families differ only in these; batching, caching and the maths live in scoring.py.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch

from mllm_audit.models.cards import Card

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class LoadOptions:
    """How to load: dtype, device, quantization, device map, remote code."""

    dtype: str = "fp32"
    device: str = "cpu"
    quantize: str | None = None
    device_map: str | None = None
    max_memory: dict[str, str] | None = None
    trust_remote_code: bool = False
    card: str | None = None  # `--card NAME`: that card's prompt templates for a model folder
    revision: str | None = None  # the user's --revision: overrides the card's, loaded and recorded
    trust_generic: bool = False  # --trust-generic: an architecture outside the checked table loads generically
    max_pixels: int | None = None  # --max-pixels: the processor's pixel budget per image (generic family)
    image_size: int | None = None  # --image-size: the side the processor resizes to (generic family)


@dataclass
class Counters:
    images_encoded: int = 0
    forward_passes: int = 0
    joint_tokenization: int = 0  # continuations scored as tokenized after the prompt (scoring.py)
    # Shared image prefixes (scoring.contract): prompts beyond an image's first that read its shared
    # prefix (in the same tree row, or from its cache) instead of running their own copy of it, and the
    # prefix token-forwards that spared. Counted prompts, not passes: one tree pass may spare many.
    prefix_forwards_saved: int = 0
    prefix_tokens_saved: int = 0

    def as_dict(self) -> dict[str, int]:
        return {
            "images_encoded": self.images_encoded,
            "forward_passes": self.forward_passes,
            "joint_tokenization": self.joint_tokenization,
            "prefix_forwards_saved": self.prefix_forwards_saved,
            "prefix_tokens_saved": self.prefix_tokens_saved,
        }


@dataclass
class Adapter:
    """Base adapter: holds the model and tokenizer; families override the marked methods."""

    card: Card
    model: torch.nn.Module
    tokenizer: Any
    options: LoadOptions
    image_token_id: int
    n_image_tokens: int
    counters: Counters = field(default_factory=Counters)
    # Capability, declared rather than probed: draws images from text (gen-scan, locate, fix --editor sft|bpo).
    generates_images: ClassVar[bool] = False
    # The image features do not depend on the prompt, so an image's placeholders and the text its prompts
    # share run once (scoring.contract); False where the bridge reads the prompt (InstructBLIP).
    shares_image_prefix: ClassVar[bool] = True
    # The language model takes a 4-D float attention mask as given (transformers' create_causal_mask
    # does): scoring then runs each prompt's suffix and its answers in one pass under a tree mask.
    tree_attention: ClassVar[bool] = True
    # False: the contract hands the adapter whole rows (prompt + continuation) and it manages its own
    # prefill (the generic family: models/families/generic.py).
    prefix_cache: ClassVar[bool] = True

    # ---- identity -------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return DTYPES[self.options.dtype]

    @property
    def pad_id(self) -> int:
        pid = self.tokenizer.pad_token_id
        return int(pid if pid is not None else (self.tokenizer.eos_token_id or 0))

    @property
    def max_positions(self) -> int | None:
        """Longest sequence the language model takes (None when it does not say): the composite config's
        text_config where it has one (Janus, Emu3), else the language model's own config."""
        text = getattr(self.model.config, "text_config", None)
        n = getattr(text, "max_position_embeddings", None) or getattr(self.language_model().config,
                                                                      "max_position_embeddings", None)
        return int(n) if n else None

    def identity(self) -> dict[str, Any]:
        """What the scores depend on: the full sha256 of every local weight/config/tokenizer file
        (hashed once per adapter, cached across runs by util.identity), dtype, quantization, templates."""
        from mllm_audit.util.identity import model_digest

        if getattr(self, "_digest", None) is None:
            self._digest = model_digest(self.card.weights) or (None, None)
        revision, files = self._digest
        return {
            "name": self.card.name,
            "source": self.card.weights,
            "revision": self.card.revision or snapshot_revision(self.card.weights) or revision,
            "family": self.card.family,
            "dtype": self.options.dtype,
            "quantization": self.options.quantize,
            "files": files,
            # The prompt format changes every score: recorded in full, so compare can show a difference.
            "templates": dict(self.card.templates),
            "templates_from": self.card.templates_from,
        }

    # ---- tokenization -----------------------------------------------------------------------
    def format_prompt(self, prompt: str, task: str | None) -> str:
        return self.card.template(task).format(prompt=prompt)

    def prompt_ids(self, prompt: str, task: str | None, with_image: bool) -> list[int]:
        """Prompt tokens with special tokens; image placeholders in front (BLIP-2 layout)."""
        ids = list(self.tokenizer(self.format_prompt(prompt, task)).input_ids)
        if with_image:
            ids = [self.image_token_id] * self.n_image_tokens + ids
        return ids

    def prompt_text(self, prompt: str, task: str | None, with_image: bool) -> str:
        """The text whose tokens end `prompt_ids` (what a continuation follows); families that build
        the prompt from other text override it."""
        return self.format_prompt(prompt, task)

    def continuation_ids(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False).input_ids)

    # ---- vision -------------------------------------------------------------------------------
    def preprocess(self, images: list[Any]) -> torch.Tensor:  # pragma: no cover - per family
        raise NotImplementedError

    def encode_pixels(self, pixel_values: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def encode_images(self, images: list[Any]) -> torch.Tensor:
        """Vision tower + bridge for a batch of PIL images: [N, n_image_tokens, hidden]."""
        pixel_values = self.preprocess(images)
        self.counters.images_encoded += len(images)
        return self.encode_pixels(pixel_values)

    # ---- language -----------------------------------------------------------------------------
    def input_embeddings(self) -> torch.nn.Module:
        return self.model.get_input_embeddings()

    def embed(self, ids: torch.Tensor, features: list[torch.Tensor | None]) -> torch.Tensor:
        """Embed ids [B, L]; row b's placeholders take features[b] (None: text-only row)."""
        emb = self.input_embeddings()(ids)
        mask = ids == self.image_token_id
        if mask.any():
            rows = [f for b, f in enumerate(features) if f is not None and bool(mask[b].any())]
            if rows:
                feats = torch.cat([f.reshape(-1, f.shape[-1]) for f in rows]).to(emb.dtype)
                emb = emb.masked_scatter(mask.unsqueeze(-1), feats)
        return emb

    def language_model(self) -> torch.nn.Module:  # pragma: no cover - per family
        raise NotImplementedError

    def lm(
        self,
        inputs_embeds: torch.Tensor,
        attention_mask: torch.Tensor,
        position_ids: torch.Tensor,
        past_key_values: Any = None,
        use_cache: bool = False,
        logits_to_keep: int | torch.Tensor = 0,
    ) -> tuple[torch.Tensor, Any]:
        """Language-model logits (fp32) and the KV cache when asked for.

        `logits_to_keep` (transformers' meaning): 0 = every position, n = the last n, a 1-D tensor = those
        sequence positions. The head runs, and fp32 is paid, only there: at a 50k-100k vocabulary the head
        over every prefix position is most of a scoring forward's work and memory."""
        self.counters.forward_passes += 1
        kw: dict[str, Any] = {}
        if isinstance(logits_to_keep, int) and logits_to_keep and inputs_embeds.shape[0] > 1:
            # As positions: the last n of a batch are a strided view, which torch runs through the head as
            # one weight-sized matmul per row (2-4x slower on CPU); indexed, they are gathered into one.
            n = inputs_embeds.shape[1]
            logits_to_keep = torch.arange(max(n - logits_to_keep, 0), n, device=inputs_embeds.device)
        if isinstance(logits_to_keep, torch.Tensor) or logits_to_keep:
            kw["logits_to_keep"] = logits_to_keep
        out = self.language_model()(
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
            position_ids=position_ids,
            past_key_values=past_key_values,
            use_cache=use_cache,
            **kw,
        )
        logits = out.logits
        if logits.shape[1] == inputs_embeds.shape[1] and kw:  # a model that ignored the argument
            logits = logits[:, -logits_to_keep:] if isinstance(logits_to_keep, int) else logits[:, logits_to_keep]
        return logits.float(), (out.past_key_values if use_cache else None)

    # ---- greedy decoding (models/decode.py runs the loop) -------------------------------------------
    @torch.no_grad()
    def greedy_start(self, prompt: str, task: str | None, image: Any | None) -> tuple[torch.Tensor, Any]:
        """The prompt's prefill through the protocol (the scorer's prompt ids, image features and positions,
        KV cache kept): the next-token logits [V] and `step(token) -> next logits` that extends the cache."""
        dev = self.device
        ids = self.prompt_ids(prompt, task, with_image=image is not None)
        feats = self.encode_images([image])[0] if image is not None else None
        x = torch.tensor([ids], device=dev)
        state: dict[str, Any] = {"mask": torch.ones_like(x)}
        logits, state["cache"] = self.lm(self.embed(x, [feats]), state["mask"],
                                         torch.arange(len(ids), device=dev).unsqueeze(0), use_cache=True)

        @torch.no_grad()
        def step(token: int) -> torch.Tensor:
            t = torch.tensor([[token]], device=dev)
            state["mask"] = torch.cat([state["mask"], torch.ones_like(t)], dim=-1)
            pos = torch.tensor([[state["mask"].shape[1] - 1]], device=dev)
            out, state["cache"] = self.lm(self.embed(t, [None]), state["mask"], pos,
                                          past_key_values=state["cache"], use_cache=True)
            return out[0, -1]

        return logits[0, -1], step

    # ---- editing ------------------------------------------------------------------------------
    def module_names(self, scope: str) -> list[str]:
        """Parameter-name prefixes an editor may touch for `scope` ("text" or "vision")."""
        names = self.card.edit.get(f"{scope}_modules")
        if not names:
            raise ValueError(f"card {self.card.name!r} names no {scope} modules for editing")
        return list(names)


def last_mlp(prefix: str, n_layers: int, names: tuple[str, ...] = ("mlp.up_proj", "mlp.down_proj")) -> list[str]:
    """The last decoder layer's MLP projections: what FT-L and MEND edit by default (as in the paper)."""
    return [f"{prefix}.{n_layers - 1}.{n}" for n in names]


_COMMIT = re.compile(r"^[0-9a-f]{40}$")


def _hub_cache() -> Path:
    """The hub cache folder, read at call time (HF_HUB_CACHE, else huggingface_hub's default)."""
    env = os.environ.get("HF_HUB_CACHE")
    if env:
        return Path(env)
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def snapshot_revision(source: str) -> str | None:
    """The commit the weights were loaded at, from the local hub cache: a `.../snapshots/<commit>`
    folder names it; a hub id resolves through `models--org--name/refs/main`, as from_pretrained does
    offline. None when neither applies (then a local folder is fingerprinted instead)."""
    path = Path(source)
    if path.is_dir():
        path = path.resolve()
        return path.name if path.parent.name == "snapshots" and _COMMIT.match(path.name) else None
    if source.count("/") != 1 or source.startswith((".", "/")):
        return None
    repo = _hub_cache() / ("models--" + source.replace("/", "--"))
    try:
        commit = (repo / "refs" / "main").read_text(encoding="utf-8").strip()
    except OSError:
        return None
    return commit if _COMMIT.match(commit) and (repo / "snapshots" / commit).is_dir() else None


def weights_fingerprint(source: str) -> str | None:
    """Identity of local weights: sha256 over every byte of every model file (util.identity), None for a hub id."""
    from mllm_audit.util.identity import model_digest

    found = model_digest(source)
    return found[0] if found else None


class ChatTemplateMixin:
    """Prompt ids built the way the processor builds them: chat template, then placeholder expansion."""

    processor: Any
    tokenizer: Any
    image_token_id: int
    n_image_tokens: int

    def chat_text(self, text: str, with_image: bool) -> str:
        """The card-formatted prompt inside the processor's chat template (one user turn)."""
        template = getattr(self.processor, "chat_template", None)
        if not template:
            # No chat template shipped: the bare prompt, image token first (the processors' default).
            image = getattr(self.processor, "image_token", "<image>")
            return f"{image}\n{text}" if with_image else text
        content: list[dict[str, str]] = [{"type": "image"}] if with_image else []
        content.append({"type": "text", "text": text})
        return self.processor.apply_chat_template(
            [{"role": "user", "content": content}], add_generation_prompt=True, tokenize=False
        )

    def prompt_text(self, prompt: str, task: str | None, with_image: bool) -> str:
        """The chat text the prompt ids are tokenized from (a continuation follows its end)."""
        return self.chat_text(self.format_prompt(prompt, task), with_image)  # type: ignore[attr-defined]

    def expand_image_tokens(self, ids: list[int]) -> list[int]:
        """Each image token becomes `n_image_tokens` placeholders, as the processor expands it."""
        out: list[int] = []
        for t in ids:
            out.extend([t] * self.n_image_tokens if t == self.image_token_id else [t])
        return out
