"""Loading weights the one safe way: `from_pretrained` on a hub id or local folder, safetensors
preferred, no remote code unless asked, quantization through bitsandbytes' BitsAndBytesConfig.
Failures become one-line `AuditError`s that say what to do.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mllm_audit.errors import AuditError
from mllm_audit.models.base import DTYPES, Adapter, LoadOptions
from mllm_audit.models.cards import Card
from mllm_audit.util.files import check_safetensors_files


def quantization_config(card: Card, options: LoadOptions) -> Any:
    """BitsAndBytesConfig for `--quantize 8bit|4bit`; the card's `keep_fp32` modules are skipped."""
    if options.quantize is None:
        return None
    if options.quantize not in ("8bit", "4bit"):
        raise AuditError(f"--quantize must be 8bit or 4bit, got {options.quantize!r}")
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise AuditError("--quantize needs bitsandbytes: pip install 'mllm-audit[quant]'") from None
    from transformers import BitsAndBytesConfig

    # Each 8-bit matmul on fp32 inputs logs a cast notice: ours is the only output.
    logging.getLogger("bitsandbytes.autograd._functions").setLevel(logging.ERROR)
    skip = skip_patterns(card.keep_fp32)
    if options.quantize == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=skip)
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_compute_dtype=DTYPES[options.dtype],
        llm_int8_skip_modules=skip,
    )


def skip_patterns(names: list[str]) -> list[str] | None:
    r"""Card module names as transformers' skip patterns, matching at any depth.

    transformers matches a skip pattern from the start of the full module name or as its suffix, so a
    bare `vision_tower` would miss `model.vision_tower.encoder...`; `(?:.*\.)?name` finds it anywhere
    on a module boundary.
    """
    return [rf"(?:.*\.)?{re.escape(n)}" for n in names] or None


def keeps_full_precision(name: str, keep: list[str]) -> bool:
    """Whether module `name` falls under one of the card's keep_fp32 entries (same rule as above)."""
    return any(re.match(rf"(?:.*\.)?{re.escape(k)}(?:\.|$)", name) for k in keep)


def quiet_transformers() -> None:
    """Our own progress bar is the only one: silence transformers' bars and warnings."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def check_available(card: Card) -> None:
    """Fail in a second, before any model code runs, when the weights cannot be had: a missing local
    folder, or a hub id that is not in the local cache while HF_HUB_OFFLINE is set."""
    if os.path.isdir(card.weights):
        return
    if os.path.isabs(card.weights):
        raise AuditError(
            f"model {card.name!r}: weights folder {card.weights} not found "
            "(download or convert the weights into it, or pass the folder with --model)"
        )
    if os.environ.get("HF_HUB_OFFLINE", "") in ("", "0"):
        return
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(card.weights, "config.json", revision=card.revision)
    if not isinstance(cached, str):
        raise AuditError(
            f"model {card.name!r}: hub id {card.weights!r} is not in the local cache and HF_HUB_OFFLINE is set "
            "(download the weights where the hub is reachable and pass the folder with --model)"
        )


def check_loading_info(card: Card, info: dict[str, Any], expected: Sequence[str] = ()) -> None:
    """Refuse weights that do not fit the model: a missing tensor would be initialised at random and
    every score after it wrong. `expected` (regexes, from the family and the card's
    `extra: {expected_missing: [...]}`) names keys that may legitimately be absent or extra (tied
    weights, buffers)."""
    patterns = [*expected, *(card.extra.get("expected_missing") or [])]

    def unexpected_gap(keys: Any) -> list[str]:
        return sorted(k for k in (keys or ()) if not any(re.fullmatch(p, k) for p in patterns))

    for what, keys in (("is missing", info.get("missing_keys")), ("has an unexpected tensor",
                                                                     info.get("unexpected_keys"))):
        bad = unexpected_gap(keys)
        if bad:
            more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
            tensor = "tensor " if what == "is missing" else ""
            raise AuditError(f"weights of {card.name!r} ({card.weights}): {what}: {tensor}{bad[0]!r}{more}; "
                             "refusing to load a model that would be partly random or not the one described")
    mismatched = [m[0] if isinstance(m, (tuple, list)) else m for m in (info.get("mismatched_keys") or ())]
    if mismatched:
        raise AuditError(f"weights of {card.name!r} ({card.weights}): tensor {sorted(mismatched)[0]!r} has the wrong "
                         "shape for this model")


def from_pretrained_checked(cls: Any, card: Card, options: LoadOptions, qconfig: Any,
                            expected_missing: Sequence[str] = ()) -> Any:
    """`cls.from_pretrained(card.weights)` with our safety defaults and one-line errors; a model whose
    weights lack a tensor (or carry one it does not have) is refused, except `expected_missing`."""
    quiet_transformers()
    kwargs: dict[str, Any] = {"trust_remote_code": options.trust_remote_code}
    if card.revision:
        kwargs["revision"] = card.revision
    is_model = hasattr(cls, "_from_config") or cls.__name__.endswith(("Model", "LM", "Generation"))
    if is_model:
        kwargs["dtype"] = DTYPES[options.dtype]
        kwargs["use_safetensors"] = None  # prefer safetensors; .bin only through weights_only loads
        kwargs["output_loading_info"] = True
        if qconfig is not None:
            kwargs["quantization_config"] = qconfig
        if options.device_map:
            kwargs["device_map"] = options.device_map
            # The budget: the command line's, else the card's `extra: {max_memory: {...}}`.
            budget = options.max_memory or card.extra.get("max_memory")
            if budget:
                kwargs["max_memory"] = dict(budget)
        elif qconfig is not None:
            # bitsandbytes quantizes while placing: say where, or it lands wherever is first.
            kwargs["device_map"] = {"": options.device}
    local = os.path.isdir(card.weights)
    check_available(card)
    if local and is_model:
        check_safetensors_files(Path(card.weights))  # a renamed pickle is refused before any loader opens it
    if not local:
        kwargs["local_files_only"] = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0")
    try:
        obj = cls.from_pretrained(card.weights, **kwargs)
    except RuntimeError as e:
        from mllm_audit.util.guards import mismatched_tensor

        culprit = mismatched_tensor(cls, Path(card.weights)) if local and is_model else None
        if culprit is None:
            raise
        raise AuditError(f"cannot load {card.name!r}: {culprit}") from e
    except (OSError, ValueError) as e:
        where = "folder" if local else "hub id"
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise AuditError(
            f"cannot load {card.name!r} from {where} {card.weights!r}: {first} "
            "(without hub access, download the weights elsewhere and pass the folder with --model)"
        ) from None
    if is_model:
        obj, info = obj
        check_loading_info(card, info, expected_missing)
        placed = getattr(obj, "hf_device_map", None) or {}
        offloaded = [name or "the whole model" for name, dev in placed.items() if dev == "disk"]
        if offloaded:
            raise AuditError(
                f"model {card.name!r} does not fit the memory budget {kwargs.get('max_memory')}: "
                f"{offloaded[0]} would be offloaded to disk (raise --max-memory or quantize)"
            )
        if options.device_map is None and qconfig is None:
            obj = obj.to(options.device)
        obj.eval()
    return obj


def load_with_processor(cls: Any, card: Card, options: LoadOptions,
                        expected_missing: Sequence[str] = ()) -> tuple[Any, Any]:
    """Model + AutoProcessor from the card's weights (`card.keep_fp32` names the modules quantization
    leaves in full precision: callers fill it from their family's default first, on a copy);
    `expected_missing` the keys the family may legitimately lack."""
    from transformers import AutoProcessor

    model = from_pretrained_checked(cls, card, options, quantization_config(card, options), expected_missing)
    return model, from_pretrained_checked(AutoProcessor, card, options, None)


@dataclass(frozen=True)
class FamilySpec:
    """How one architecture family loads, declared rather than coded per family: the transformers
    class, the adapter, the modules quantization keeps in full precision, the modules FT edits when
    the card names none, and where the image placeholder id and count come from. The card is never
    changed: defaults fill a copy that the adapter carries."""

    model_class: str
    adapter: type[Adapter]
    keep_fp32: tuple[str, ...]
    default_edit: Callable[[Any], dict[str, list[str]]]  # model -> {"text_modules", "vision_modules"}
    n_image_tokens: Callable[[Any, Any], int]  # (model config, processor) -> placeholders per image
    finish: Callable[[Any], None] | None = None  # family-specific fields read from the processor

    def load(self, card: Card, options: LoadOptions) -> Any:
        import transformers

        card = dataclasses.replace(card, keep_fp32=list(card.keep_fp32 or self.keep_fp32))
        model, processor = load_with_processor(getattr(transformers, self.model_class), card, options)
        card = dataclasses.replace(card, edit=dict(card.edit or self.default_edit(model)))
        cfg = model.config
        adapter = self.adapter(card=card, model=model, tokenizer=processor.tokenizer, options=options,
                               image_token_id=int(cfg.image_token_id),
                               n_image_tokens=int(self.n_image_tokens(cfg, processor)))
        adapter.processor = processor  # type: ignore[attr-defined]  # families that use it declare it
        if self.finish is not None:
            self.finish(adapter)
        return adapter
