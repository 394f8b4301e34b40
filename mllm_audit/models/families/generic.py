# Over 350 lines: one architecture-agnostic family end to end (prompt, inputs, prefill, whole rows, load).
"""Any `AutoModelForImageTextToText` checkpoint whose processor has a chat template, with no per-family code.

The prompt is the processor's own chat template over (image, question) with the generation prompt; the
continuation follows it. What the processor builds for the image (placeholder runs of any length, tiles,
Qwen2-VL's pixel budget, Mllama's cross-attention masks, PaliGemma's token types) and what the model does
with it (splicing, M-RoPE position ids, cross-attention, prefix-LM masks) stay transformers' own. Scoring
is what `generate` does: one prefill of the processor's output for (prompt, image) with the KV cache kept,
then every continuation of that prompt on copies of the cache. With gradients (editors) each sequence runs
whole instead: the processor's output with the continuation appended, right-padded within a batch
(positions 0.. over real tokens), exactly the forward `model(**inputs, labels=...)` computes.

The scoring contract sees a *compact* prompt: the chat template's ids with the image's whole placeholder
span collapsed to one `image_token_id` (so one marker per image whatever the image's real token count).
`embed` returns the compact ids' text embeddings carrying the rows; `lm` rebuilds each row's real input
(the processor over the prompt and the row's image), runs the model and maps its logits back to the
compact positions. `prefix_cache = False` tells the contract to hand it whole rows (scoring/contract.py);
the image's real token count per request is `image_token_count` (recorded per sample).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from mllm_audit.errors import AuditError
from mllm_audit.models.base import Adapter, ChatTemplateMixin

# Per-token inputs the processor returns beside input_ids, and the value continuation tokens take.
# PaliGemma's token_type_ids mark the suffix (1: causal), Gemma 3's mark image tokens (continuation: 0).
TOKEN_KEYS = ("input_ids", "attention_mask", "token_type_ids", "mm_token_type_ids", "cross_attention_mask")
SUFFIX_TOKEN_TYPE = {"paligemma": 1}
# Architectures that ship no chat template: the processor builds the prompt from the bare text, ending it
# with this (PaliGemma: `<image>`s + BOS + text + "\n"). PaliGemma's processor also refuses text without an
# image; a text-only prompt is then the tokenizer's over the same text.
NO_CHAT_TEMPLATE = {"paligemma": "\n"}
# Architectures scored as `generate` does (prefill + cached continuations) when no gradient is taken,
# checked against the stock forward like the rest (tests/models/test_generic.py); others run each sequence whole.
PREFIX_CACHE = {"gemma3", "idefics2", "idefics3", "internvl", "llava", "llava_next", "llava_onevision", "mllama",
                "paligemma", "qwen2_5_vl", "qwen2_vl", "qwen3_vl", "smolvlm", "vipllava"}


@dataclass
class ImageHandle:
    """One image as the generic family "encodes" it: the picture, and the processor's outputs per prompt
    (the vision tower runs inside the model's forward, so editors training the vision side get gradients)."""

    image: Any
    inputs: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)
    owner: Any = None
    _embedded: torch.Tensor | None = None

    def float(self) -> torch.Tensor:  # noqa: A003 - the tensor method learned editors call on features
        """[n, H] LM-space features: the model's input embeddings over the image's placeholder span, after
        the model spliced it in (what KE and SERAC embed a request's image from)."""
        if self._embedded is None:
            self._embedded = self.owner.image_embeddings(self.image)
        return self._embedded.float()


class GenericAdapter(ChatTemplateMixin, Adapter):
    processor: Any = None
    prefix_cache: ClassVar[bool] = False  # scoring/contract.py: whole sequences, one forward per batch
    _prompts: dict[tuple[int, ...], str]  # compact prompt ids -> chat text (set in load)
    _prompt_memo: dict[tuple[str, str | None, bool], list[int]]  # (prompt, task, with image) -> compact ids
    _lengths: set[int]

    # ---- prompt -------------------------------------------------------------------------------
    def chat_text(self, text: str, with_image: bool) -> str:
        if self.model.config.model_type in NO_CHAT_TEMPLATE:
            return text
        content: list[dict[str, Any]] = [{"type": "image"}] if with_image else []
        content.append({"type": "text", "text": text})
        return self.processor.apply_chat_template(
            [{"role": "user", "content": content}], add_generation_prompt=True, tokenize=False
        )

    def real_inputs(self, text: str, image: Any | None) -> dict[str, torch.Tensor]:
        """The processor's own tensors for (chat text, image), batch of one; text without special tokens
        when the template already wrote BOS (what `apply_chat_template(tokenize=True)` does)."""
        bos = self.tokenizer.bos_token
        kwargs: dict[str, Any] = {"return_tensors": "pt"}
        if bos and text.startswith(bos):
            kwargs["add_special_tokens"] = False
        if image is not None:
            kwargs["images"] = [image]
            kwargs.update(self.image_kwargs())
        kwargs.update(self.card.extra.get("processor_kwargs") or {})
        end = NO_CHAT_TEMPLATE.get(self.model.config.model_type)
        if image is None and end is not None:
            out = dict(self.tokenizer([text + end], **kwargs))
            out["token_type_ids"] = torch.zeros_like(out["input_ids"])  # the prompt is the prefix (type 0)
            return out
        out = dict(self.processor(text=[text], **kwargs))
        out.pop("labels", None)  # PaliGemma's processor also returns training labels: not an input here
        return out

    def image_kwargs(self) -> dict[str, Any]:
        """--max-pixels / --image-size as the processor's own keyword arguments."""
        out: dict[str, Any] = {}
        if self.options.max_pixels:
            out["max_pixels"] = int(self.options.max_pixels)
        if self.options.image_size:
            size = getattr(self.processor.image_processor, "size", None) or {}
            keys = [k for k in ("height", "width", "shortest_edge", "longest_edge") if _get(size, k)]
            side = int(self.options.image_size)
            out["size"] = {k: side for k in keys} or {"longest_edge": side}
        return out

    def identity(self) -> dict[str, Any]:
        """The base identity, plus how images were sized (the record carries it: token counts depend on it)."""
        return {**super().identity(), "image_processing": {"max_pixels": self.options.max_pixels,
                                                           "image_size": self.options.image_size}}

    def prompt_text(self, prompt: str, task: str | None, with_image: bool) -> str:
        return self.chat_text(self.format_prompt(prompt, task), with_image) + NO_CHAT_TEMPLATE.get(
            self.model.config.model_type, "")

    def prompt_ids(self, prompt: str, task: str | None, with_image: bool) -> list[int]:
        """The compact prompt ids; memoised per (prompt, task, image or not): the processor runs once for
        a prompt, not once per answer and pass (each item asks it for y_more and y_less alike)."""
        key = (prompt, task, with_image)
        if key not in self._prompt_memo:
            self._prompt_memo[key] = self._prompt_ids(prompt, task, with_image)
        return list(self._prompt_memo[key])

    def _prompt_ids(self, prompt: str, task: str | None, with_image: bool) -> list[int]:
        text = self.chat_text(self.format_prompt(prompt, task), with_image)
        ids = self.real_inputs(text, self._reference() if with_image else None)["input_ids"][0].tolist()
        if with_image:
            start, end = self.image_span(ids)
            ids = ids[:start] + [self.image_token_id] + ids[end:]
        self._prompts[tuple(ids)] = text
        self._lengths.add(len(ids))
        return ids

    def _reference(self) -> Any:
        from PIL import Image

        size = int(self.card.extra.get("reference_image_size", 64))
        return Image.new("RGB", (size, size), (128, 128, 128))

    def image_token_count(self, request: Any, image: Any) -> int:
        """Positions `image` takes in `request`'s prompt, as the processor expands it (recorded per item)."""
        text = self.chat_text(self.format_prompt(request.prompt, request.task), True)
        start, end = self.image_span(self.real_inputs(text, image)["input_ids"][0].tolist())
        return end - start

    def image_span(self, ids: list[int]) -> tuple[int, int]:
        """[start, end) of the image's placeholders: first to last `image_token_id` (tile separators inside)."""
        where = [i for i, t in enumerate(ids) if t == self.image_token_id]
        if not where:
            raise AuditError(f"model {self.card.name!r}: the processor put no image token in the prompt")
        return where[0], where[-1] + 1

    def prompt_of(self, row: list[int]) -> tuple[int, str]:
        """The compact prompt a row starts with: (its length, its chat text)."""
        for n in sorted(self._lengths, reverse=True):
            text = self._prompts.get(tuple(row[:n]))
            if text is not None:
                return n, text
        raise ValueError("generic row with no known prompt (tokenize the request first)")

    # ---- images --------------------------------------------------------------------------------
    def encode_images(self, images: list[Any]) -> list[ImageHandle]:  # type: ignore[override]
        self.counters.images_encoded += len(images)
        return [ImageHandle(image, owner=self) for image in images]

    @torch.no_grad()
    def image_embeddings(self, image: Any) -> torch.Tensor:
        """The input embeddings at `image`'s placeholder span in an empty user turn (hidden state 0 of the
        stock forward: splicing architectures put the projected image features there)."""
        inputs = self._device(self.real_inputs(self.chat_text("", True), image))
        start, end = self.image_span(inputs["input_ids"][0].tolist())
        self.counters.forward_passes += 1
        hidden = self.model(**inputs, output_hidden_states=True, use_cache=False).hidden_states[0]
        return hidden[0, start:end].detach()

    def embed(self, ids: torch.Tensor, features: list[Any]) -> torch.Tensor:
        emb = self.input_embeddings()(ids)
        emb.generic_rows = (ids, list(features))  # type: ignore[attr-defined]
        return emb

    # ---- the forward ---------------------------------------------------------------------------
    def lm(self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor,
           past_key_values: Any = None, use_cache: bool = False,
           logits_to_keep: int | torch.Tensor = 0) -> tuple[torch.Tensor, Any]:
        """Every position's logits over the compact row, then the kept ones (`Adapter.lm`'s meaning)."""
        logits, cache = self._lm_all(inputs_embeds, attention_mask, past_key_values, use_cache)
        if isinstance(logits_to_keep, torch.Tensor):
            return logits[:, logits_to_keep], cache
        return (logits[:, -logits_to_keep:] if logits_to_keep else logits), cache

    def _lm_all(self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor, past_key_values: Any,
                use_cache: bool) -> tuple[torch.Tensor, Any]:
        rows = getattr(inputs_embeds, "generic_rows", None)
        if rows is None or past_key_values is not None or use_cache:
            raise NotImplementedError("the generic family scores whole sequences from its own embed()")
        ids, features = rows
        built = [self._row(ids[b], attention_mask[b], features[b]) for b in range(ids.shape[0])]
        out = torch.zeros((*ids.shape, self._vocab()), dtype=torch.float32, device=ids.device)
        # Scoring (no gradients) prefills once per prompt; where gradients are taken (editors) every
        # sequence runs whole, so each edited layer sees all positions in one call (MEND's hooks rely on it).
        if self.model.config.model_type in PREFIX_CACHE and not torch.is_grad_enabled():
            groups: dict[tuple, list[int]] = {}
            for b, r in enumerate(built):
                groups.setdefault((id(features[b]), r[3]), []).append(b)
            for members in groups.values():
                self._cached([built[b] for b in members], members, out)
            return out, None
        # One forward per set of rows whose image tensors stack (same shapes): all rows for fixed-size
        # processors, per image size where the processor tiles or resizes.
        buckets: dict[tuple, list[int]] = {}
        for b, (inputs, *_) in enumerate(built):
            sig = tuple((k, tuple(v.shape)) for k, v in sorted(inputs.items()) if k not in TOKEN_KEYS)
            buckets.setdefault(sig, []).append(b)
        for members in buckets.values():
            batch = self._stack([built[b][0] for b in members])
            self.counters.forward_passes += 1
            logits = self.model(**batch, use_cache=False).logits.float()
            for j, b in enumerate(members):
                where = built[b][1]
                out[b, : len(where)] = logits[j, where]
        return out, None

    def _cached(self, rows: list[tuple], members: list[int], out: torch.Tensor) -> None:
        """What `generate` does: one prefill of the prompt with its pixels (KV cache kept), then every
        continuation of that prompt at once on copies of the cache; transformers computes the positions
        (M-RoPE from its stored deltas) and masks (Mllama's cross-attention mask, extended as generate does)."""
        prefix = self._device(rows[0][2])
        self.counters.forward_passes += 1
        pre = self.model(**prefix, use_cache=True)
        plog = pre.logits[0].float()
        conts = [r[4] for r in rows]
        width = max(len(c) for c in conts)
        clog = None
        if width > 0:
            k = len(rows)
            cache = pre.past_key_values
            if k > 1:
                cache.batch_repeat_interleave(k)
            cids = torch.full((k, width), self.pad_id, dtype=torch.long, device=self.device)
            cmask = torch.zeros((k, width), dtype=prefix["attention_mask"].dtype, device=self.device)
            for j, c in enumerate(conts):
                cids[j, : len(c)] = torch.tensor(c, device=self.device)
                cmask[j, : len(c)] = 1
            kwargs = self._after_prompt(prefix, cmask, width)
            self.counters.forward_passes += 1
            clog = self.model(input_ids=cids, past_key_values=cache, use_cache=False, **kwargs).logits.float()
        for j, b in enumerate(members):
            where, n = rows[j][1], len(rows[j][1]) - len(conts[j])
            out[b, :n] = plog[where[:n]]
            if conts[j]:
                out[b, n : n + len(conts[j])] = clog[j, : len(conts[j])]  # type: ignore[index]

    def _after_prompt(self, prefix: dict[str, torch.Tensor], cmask: torch.Tensor, width: int) -> dict[str, Any]:
        """`generate`'s keyword arguments for the last `width` of the tokens after a prefilled prompt (batch of
        one, on its KV cache): `cmask` [k, m] masks all m tokens after the prompt; transformers computes the rest
        (M-RoPE positions are given from its stored deltas: text after the prompt at its last 3D position + 1..)."""
        k, m = cmask.shape
        kwargs: dict[str, Any] = {"attention_mask": torch.cat([prefix["attention_mask"].expand(k, -1), cmask], 1)}
        if "cross_attention_mask" in prefix:
            kwargs["cross_attention_mask"] = self.cross_mask(prefix["cross_attention_mask"], m).expand(k, -1, -1, -1)
        deltas = getattr(getattr(self.model, "model", None), "rope_deltas", None)
        if deltas is not None and "image_grid_thw" not in prefix:
            deltas = torch.zeros_like(deltas[:1])  # a text-only prefill leaves an earlier call's deltas behind
        if deltas is not None:
            start = prefix["input_ids"].shape[1] + m - width
            pos = torch.arange(start, start + width, device=self.device).view(1, 1, -1).expand(3, k, -1)
            kwargs["position_ids"] = pos + deltas.to(self.device).view(1, -1, 1)
        return kwargs

    @torch.no_grad()
    def greedy_start(self, prompt: str, task: str | None, image: Any | None) -> tuple[torch.Tensor, Any]:
        """The decoder's prefill as the scorer's (`_cached`): the processor's inputs for the prompt's chat text
        and the image, one forward with the KV cache kept; each step feeds one token on that cache."""
        text = self.chat_text(self.format_prompt(prompt, task), image is not None)
        prefix = self._device(self.real_inputs(text, image))
        self.counters.forward_passes += 1
        if self.model.config.model_type not in PREFIX_CACHE:  # cached continuations unchecked here: whole rows
            return self._greedy_whole(prefix)
        pre = self.model(**prefix, use_cache=True)
        state: dict[str, Any] = {"cache": pre.past_key_values, "n": 0}

        @torch.no_grad()
        def step(token: int) -> torch.Tensor:
            state["n"] += 1
            cmask = prefix["attention_mask"].new_ones((1, state["n"]))
            self.counters.forward_passes += 1
            out = self.model(input_ids=torch.tensor([[token]], device=self.device), past_key_values=state["cache"],
                             use_cache=True, **self._after_prompt(prefix, cmask, 1))
            state["cache"] = out.past_key_values
            return out.logits[0, -1].float()

        return pre.logits[0, -1].float(), step

    def _greedy_whole(self, prefix: dict[str, torch.Tensor]) -> tuple[torch.Tensor, Any]:
        """The decoder for architectures outside PREFIX_CACHE, as they are scored: each step runs the whole row
        (prompt, pixels and the tokens chosen so far) with no cache; per-token inputs are extended alongside."""
        n = prefix["input_ids"].shape[1]
        chosen: list[int] = []

        @torch.no_grad()
        def run() -> torch.Tensor:
            extra = torch.tensor([chosen], dtype=prefix["input_ids"].dtype, device=self.device)
            inputs = {}
            for k, v in prefix.items():
                if v.dim() == 2 and v.shape == (1, n):  # input_ids, attention_mask, token types: one per token
                    tail = extra if k == "input_ids" else (torch.ones_like(extra) if k == "attention_mask"
                                                          else torch.zeros_like(extra))
                    v = torch.cat([v, tail.to(v.dtype)], dim=1)
                inputs[k] = v
            self.counters.forward_passes += 1
            return self.model(**inputs, use_cache=False).logits[0, -1].float()

        def step(token: int) -> torch.Tensor:
            chosen.append(token)
            return run()

        return run(), step

    def _device(self, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out = {k: v.to(self.device) for k, v in inputs.items()}
        return {k: v.to(self.dtype) if v.is_floating_point() else v for k, v in out.items()}

    def _vocab(self) -> int:
        return int(self.model.get_output_embeddings().weight.shape[0])

    def _row(self, row: torch.Tensor, mask: torch.Tensor, handle: ImageHandle | None) -> tuple[Any, ...]:
        """A compact row (prompt + continuation) as the model's real inputs, for each compact position the
        real position whose logits it takes, and (the prompt's own inputs, its chat text, the continuation)."""
        real = [int(t) for t, m in zip(row.tolist(), mask.tolist(), strict=True) if m]
        n, text = self.prompt_of(real)
        if handle is None:
            inputs = self.real_inputs(text, None)
        else:
            inputs = handle.inputs.get(text) or handle.inputs.setdefault(text, self.real_inputs(text, handle.image))
        prefix = inputs["input_ids"][0].tolist()
        where = list(range(n))
        if handle is not None:
            start, end = self.image_span(prefix)
            marker = real.index(self.image_token_id)
            where = [min(i, max(start - 1, 0)) if i < marker else end - 1 + i - marker for i in range(n)]
        cont = real[n:]
        limit = self.max_positions
        if limit is not None and len(prefix) + len(cont) > limit:  # the compact row hid the image's real length
            raise AuditError(f"prompt + image + answer take {len(prefix) + len(cont)} positions, over the model's "
                             f"{limit} (lower --max-pixels or --image-size)")
        where += [len(prefix) + i for i in range(len(cont))]
        full = self._extend(inputs, cont)
        return full, torch.tensor(where), inputs, text, cont

    def _extend(self, inputs: dict[str, torch.Tensor], cont: list[int]) -> dict[str, torch.Tensor]:
        """Append continuation tokens to a batch-of-one's per-token tensors, as generation extends them."""
        k = len(cont)
        out = dict(inputs)
        if k == 0:
            return out
        out["input_ids"] = torch.cat([inputs["input_ids"], torch.tensor([cont], dtype=inputs["input_ids"].dtype)], 1)
        out["attention_mask"] = torch.cat([inputs["attention_mask"], inputs["attention_mask"].new_ones((1, k))], 1)
        for key in ("token_type_ids", "mm_token_type_ids"):
            if key in inputs:
                fill = SUFFIX_TOKEN_TYPE.get(self.model.config.model_type, 0) if key == "token_type_ids" else 0
                out[key] = torch.cat([inputs[key], inputs[key].new_full((1, k), fill)], 1)
        if "cross_attention_mask" in inputs:
            out["cross_attention_mask"] = self.cross_mask(inputs["cross_attention_mask"], k)
        return out

    @staticmethod
    def cross_mask(mask: torch.Tensor, k: int) -> torch.Tensor:
        """Mllama's cross-attention mask over `k` more tokens: each sees the images the last prompt token
        sees, as generate extends it."""
        return torch.cat([mask, mask[:, -1:].repeat(1, k, 1, 1)], 1)

    def _stack(self, rows: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        """Rows right-padded to one length (per-token tensors) and stacked (image tensors, same shapes)."""
        width = max(r["input_ids"].shape[1] for r in rows)
        batch: dict[str, torch.Tensor] = {}
        for key in rows[0]:
            parts = [r[key] for r in rows]
            if key in TOKEN_KEYS:
                fill = self.pad_id if key == "input_ids" else 0
                parts = [torch.cat([p, p.new_full((1, width - p.shape[1], *p.shape[2:]), fill)], 1) for p in parts]
            batch[key] = torch.cat(parts, 0).to(self.device)
            if batch[key].is_floating_point():
                batch[key] = batch[key].to(self.dtype)
        return batch

    def language_model(self) -> torch.nn.Module:
        return self.model


def _get(size: Any, key: str) -> Any:
    return size.get(key) if isinstance(size, dict) else getattr(size, key, None)


def load(card: Any, options: Any) -> GenericAdapter:
    """Load any image-text-to-text checkpoint through AutoModelForImageTextToText and its processor."""
    from transformers import AutoConfig, AutoModelForImageTextToText

    from mllm_audit.models.cards import GENERIC_ARCHITECTURES, GENERIC_TABLE
    from mllm_audit.models.families.generic_modules import default_keep_fp32, edit_modules, image_token_id
    from mllm_audit.models.loading import from_pretrained_checked, quantization_config
    from mllm_audit.models.processors import load_processor

    card = dataclasses.replace(card, keep_fp32=list(card.keep_fp32 or default_keep_fp32()))
    model_type = str(getattr(from_pretrained_checked(AutoConfig, card, options, None), "model_type", None))
    if model_type not in GENERIC_ARCHITECTURES and not options.trust_generic:
        raise AuditError(f"model {card.name!r}: model_type {model_type!r} is not in the table of checked architectures "
                         f"({GENERIC_TABLE}); pass --trust-generic to score it through the generic family unchecked")
    model = from_pretrained_checked(AutoModelForImageTextToText, card, options, quantization_config(card, options),
                                    card.extra.get("expected_missing") or ())
    processor = load_processor(card, options)
    if not getattr(processor, "chat_template", None) and model.config.model_type not in NO_CHAT_TEMPLATE:
        raise AuditError(f"model {card.name!r}: its processor has no chat template (the generic family scores "
                         "the processor's own template; give one with a card)")
    card = dataclasses.replace(card, edit=dict(card.edit or edit_modules(model)))
    adapter = GenericAdapter(card=card, model=model, tokenizer=processor.tokenizer, options=options,
                             image_token_id=image_token_id(model, processor), n_image_tokens=1)
    adapter.processor = processor
    adapter._prompts, adapter._lengths, adapter._prompt_memo = {}, set(), {}
    return adapter
