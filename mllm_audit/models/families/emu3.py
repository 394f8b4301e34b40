"""Emu3 (BAAI's unified next-token model) on transformers' `Emu3ForConditionalGeneration`.

Understanding goes through the same scoring contract as every family. Emu3 has no vision tower:
an image is VQ-encoded to codes, each code is mapped to its `<|visual token N|>` text id, one
end-of-line token closes every row, and those ids are embedded by the text embedding table
(`Emu3Model.get_image_features`). The processor writes the image into the prompt as
`<|image start|>{h}*{w}<|image token|>` + `<image>` x h(w+1) + `<|extra_201|>` + `<|image end|>` and
prepends BOS to the text; `prompt_ids` builds exactly that with the processor's own
`replace_image_token`, and the features fill the `<image>` placeholders.

One deviation, stated: the processor sizes each image by its own aspect ratio (`smart_resize`), so
the number of image tokens varies per image; the scoring contract needs one count per model, so
every image is first resized to the card's square `extra.image_size` (pixels; default 512, the
area Emu3-Chat was trained at). On an image of that size the path is the stock one (the conformance
test checks 1e-5 against `Emu3ForConditionalGeneration(input_ids, pixel_values, labels)`).

Generation (text -> image) samples through the text head with transformers' `generate`: the
processor's generation prompt (`<|image start|>h*w<|image token|>`), a prefix constraint that allows
only visual tokens inside a row, end-of-line after each row, then end-of-frame / end-of-image / EOS,
and classifier-free guidance against the card's `extra.negative_prompt` (transformers' unbatched CFG
processor), as transformers' Emu3 image-generation example does it: plain-text prompts (no chat turn),
sampling and guidance scale from the checkpoint's generation config unless the card sets them.
Tokens are mapped back to codes and decoded by the VQ model, then by the processor's `postprocess`.
The generated image has the grid an `image_size` square takes when read (64 x 64 tokens at 512 px).

Also here: `save_tiny_emu3`, a random tiny Emu3 built from a config (tests).
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import torch

from mllm_audit.models.base import Adapter, ChatTemplateMixin, LoadOptions, last_mlp
from mllm_audit.models.cards import Card
from mllm_audit.models.loading import load_with_processor

DEFAULT_IMAGE_SIZE = 512
GENERATION_KEYS = ("guidance_scale", "temperature", "do_sample", "top_k", "top_p")


class Emu3Adapter(ChatTemplateMixin, Adapter):
    generates_images: ClassVar[bool] = True
    processor: Any = None
    image_size: int = DEFAULT_IMAGE_SIZE
    token_grid: tuple[int, int] = (0, 0)  # (h, w) of the VQ code grid for an `image_size` square

    def prompt_ids(self, prompt: str, task: str | None, with_image: bool) -> list[int]:
        """BOS + chat text with each `<image>` expanded by the processor's own rule, tokenized."""
        text = self.chat_text(self.format_prompt(prompt, task), with_image)
        if with_image:
            ratio = self.processor.downsample_ratio
            sizes = {"image_sizes": [[self.token_grid[0] * ratio, self.token_grid[1] * ratio]]}
            text = text.replace(self.processor.image_token, self.processor.replace_image_token(sizes, 0))
        return list(self.tokenizer(f"{self.processor.bos_token}{text}").input_ids)

    def prompt_text(self, prompt: str, task: str | None, with_image: bool) -> str:
        return self.chat_text(self.format_prompt(prompt, task), with_image)

    def resize(self, images: list[Any]) -> list[Any]:
        """Every image to the card's square size (one token count per model; see the module docstring)."""
        from PIL import Image

        s = self.image_size
        return [im.convert("RGB").resize((s, s), Image.Resampling.BICUBIC) for im in images]

    def preprocess(self, images: list[Any]) -> torch.Tensor:
        pv = self.processor.image_processor(self.resize(images), return_tensors="pt")["pixel_values"]
        return pv.to(self.device, self.dtype)

    def encode_pixels(self, pixel_values: torch.Tensor) -> torch.Tensor:
        sizes = torch.tensor([list(pixel_values.shape[-2:])] * pixel_values.shape[0], device=pixel_values.device)
        feats = self.model.model.get_image_features(pixel_values=pixel_values, image_sizes=sizes).pooler_output
        return torch.stack(list(feats))

    def language_model(self) -> torch.nn.Module:
        # The whole model: given inputs_embeds and no pixels it is the text model plus lm_head.
        return self.model

    # ---- generation ---------------------------------------------------------------------------
    def generation_settings(self) -> dict[str, Any]:
        """The checkpoint's generation config (Emu3-Gen-hf ships its sampling and CFG there), with the
        card's `generation:` block over it."""
        base = getattr(self.model, "generation_config", None)
        cfg = base.to_dict() if base is not None else {}
        gen = {k: cfg.get(k) for k in GENERATION_KEYS}
        gen.update({k: v for k, v in self.card.generation.items() if k in GENERATION_KEYS})
        # Unset top-k / top-p: the full guided softmax (transformers would fill top_k 50: on Emu3's
        # 32,768 codes that leaves 50 ever drawn). A card that declares the upstream setting keeps it.
        if gen.get("top_k") is None:
            gen["top_k"] = 0
        if gen.get("top_p") is None:
            gen["top_p"] = 1.0
        return gen

    def generation_text(self, prompt: str) -> str:
        """The card-formatted prompt as plain text: transformers' Emu3 generation example sends no chat turn."""
        return self.format_prompt(prompt, "t2i")

    def generation_grid(self) -> tuple[int, int]:
        """(h, w) in tokens of a generated image: the same grid an `image_size` square takes when read."""
        return self.token_grid

    def _allowed(self, start: int, h: int, w: int) -> Any:
        """prefix_allowed_tokens_fn: visual tokens inside a row, end-of-line after each row of w, then
        end-of-frame, end-of-image, EOS (the layout the processor and `decode_image_tokens` use)."""
        vm = self.model.model.vocabulary_mapping
        visual = list(vm.image_tokens)
        tk = self.tokenizer
        tail = [tk.convert_tokens_to_ids(tk.eof_token), tk.convert_tokens_to_ids(tk.eoi_token), tk.eos_token_id]

        def allowed(_batch: int, ids: torch.Tensor) -> list[int]:
            k = ids.shape[-1] - start
            if k < h * (w + 1):
                return [vm.eol_token_id] if (k + 1) % (w + 1) == 0 else visual
            return [tail[k - h * (w + 1)]] if k - h * (w + 1) < len(tail) else [self.pad_id]

        return allowed

    @torch.no_grad()
    def generate_tokens(self, prompts: list[str], seed: int, row_seeds: list[int] | None = None) -> torch.Tensor:
        """BPE image tokens [len(prompts), h (w + 1)] (rows end with end-of-line) for one batch, seeded as
        Janus' (`seed` for the global generator, or `row_seeds` for the per-image sampler)."""
        from transformers import GenerationConfig

        from mllm_audit.models.sampling import seeded_generate

        h, w = self.generation_grid()
        area = h * w * self.processor.downsample_ratio**2  # the processor turns a 1:1 area back into (h, w)
        # Left padding, as transformers advises for generation: a short prompt's next token then follows
        # its own last token, not pads (right padding moved its first-step logits by 0.54 on a tiny model).
        kw = {"return_for_image_generation": True, "image_area": area, "padding": True, "return_tensors": "pt",
              "padding_side": "left"}
        inputs = self.processor(text=[self.generation_text(p) for p in prompts], **kw)
        # The negative prompt as transformers' example builds it: plain text, no image-start suffix.
        negative = str(self.card.extra.get("negative_prompt", ""))
        neg = self.processor(text=[negative] * len(prompts), padding=True, return_tensors="pt", padding_side="left")
        start = inputs["input_ids"].shape[1]
        base = getattr(self.model, "generation_config", None)
        cfg = GenerationConfig(**base.to_dict()) if base is not None else GenerationConfig()
        cfg.update(**{k: v for k, v in self.generation_settings().items() if v is not None},
                   max_new_tokens=h * (w + 1) + 3, num_beams=1, num_return_sequences=1, pad_token_id=self.pad_id,
                   eos_token_id=self.tokenizer.eos_token_id)
        self.counters.forward_passes += 1
        kw = {"input_ids": inputs["input_ids"].to(self.device),
              "attention_mask": inputs["attention_mask"].to(self.device),
              "generation_config": cfg, "prefix_allowed_tokens_fn": self._allowed(start, h, w),
              "negative_prompt_ids": neg["input_ids"].to(self.device),
              "negative_prompt_attention_mask": neg["attention_mask"].to(self.device)}
        out = seeded_generate(self.model, kw, seed, row_seeds, cfg.max_new_tokens)
        return out[:, start : start + h * (w + 1)]

    @torch.no_grad()
    def decode_images(self, tokens: torch.Tensor) -> list[Any]:
        """BPE image tokens -> VQ codes -> pixels -> PIL images (the processor's own postprocess)."""
        h, w = self.generation_grid()
        codes = self.model.model.vocabulary_mapping.convert_bpe2img(tokens.reshape(-1, h, w + 1))
        pixels = self.model.model.vqmodel.decode(codes.to(self.device)).float().cpu()
        out = self.processor.postprocess(list(pixels), return_tensors="PIL.Image.Image")["pixel_values"]
        return list(out)

    def generate_images(self, prompts: list[str], n: int, seed: int, batch_size: int = 8) -> list[Any]:
        """`n` images per prompt, prompt-major; batch b seeded with `derive_seed(seed, b)` (as Janus)."""
        from mllm_audit.models.families.janus import images_in_batches

        return images_in_batches(self, prompts, n, seed, batch_size)


def token_grid(processor: Any, image_size: int) -> tuple[int, int]:
    """(h, w) of the code grid the processor gives an `image_size` square image."""
    from PIL import Image

    out = processor.image_processor([Image.new("RGB", (image_size, image_size))], return_tensors="pt")
    h, w = (int(x) for x in out["image_sizes"][0])
    return h // processor.downsample_ratio, w // processor.downsample_ratio


def load(card: Card, options: LoadOptions) -> Emu3Adapter:
    from transformers import Emu3ForConditionalGeneration

    from mllm_audit.errors import AuditError

    # The card is not changed: family defaults fill a copy the adapter carries (and `fix --save` writes).
    card = dataclasses.replace(card, keep_fp32=list(card.keep_fp32 or ("vqmodel", "lm_head")))
    model, processor = load_with_processor(Emu3ForConditionalGeneration, card, options)
    cfg = model.config
    card = dataclasses.replace(card, edit=dict(card.edit or {
        "text_modules": last_mlp("model.text_model.layers", cfg.text_config.num_hidden_layers),
        "vision_modules": []}))
    size = int(card.extra.get("image_size", DEFAULT_IMAGE_SIZE))
    grid = token_grid(processor, size)
    factor = int(model.model.vqmodel.vision_spatial_factor)
    if factor != processor.downsample_ratio:
        raise AuditError(f"model {card.name!r}: VQ downsampling {factor} differs from the processor's "
                         f"{processor.downsample_ratio} (image tokens would not match placeholders)")
    adapter = Emu3Adapter(card=card, model=model, tokenizer=processor.tokenizer, options=options,
                          image_token_id=int(cfg.image_token_id), n_image_tokens=grid[0] * (grid[1] + 1))
    adapter.processor = processor
    adapter.image_size = size
    adapter.token_grid = grid
    return adapter


# ---- tiny Emu3 (tests) -------------------------------------------------------------------------------

# One user turn, then the assistant cue: the shape of Emu3-Chat's template, written here.
CHAT_TEMPLATE = (
    "{% for m in messages %}USER: "
    "{% for c in m['content'] %}{% if c['type'] == 'image' %}<image>{% endif %}{% endfor %}"
    "{% for c in m['content'] %}{% if c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}"
    " {% endfor %}{% if add_generation_prompt %}ASSISTANT:{% endif %}"
)
SPECIALS = {"image_token": "<image>", "boi_token": "<|image start|>", "eoi_token": "<|image end|>",
            "image_wrapper_token": "<|image token|>", "eof_token": "<|extra_201|>"}
EOL = "<|extra_200|>"


