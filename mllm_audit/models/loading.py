"""Loading weights the one safe way: `from_pretrained` on a hub id or local folder, safetensors
preferred, no remote code unless asked, quantization through bitsandbytes' BitsAndBytesConfig.
Failures become one-line `AuditError`s that say what to do.
"""

from __future__ import annotations

import os
from typing import Any

from ..errors import AuditError
from .base import DTYPES, LoadOptions
from .cards import Card


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

    if options.quantize == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=list(card.keep_fp32) or None)
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_compute_dtype=DTYPES[options.dtype],
        llm_int8_skip_modules=list(card.keep_fp32) or None,
    )


def quiet_transformers() -> None:
    """Our own progress bar is the only one: silence transformers' bars and warnings."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def from_pretrained_checked(cls: Any, card: Card, options: LoadOptions, qconfig: Any) -> Any:
    """`cls.from_pretrained(card.weights)` with our safety defaults and one-line errors."""
    quiet_transformers()
    kwargs: dict[str, Any] = {"trust_remote_code": options.trust_remote_code}
    if card.revision:
        kwargs["revision"] = card.revision
    is_model = hasattr(cls, "_from_config") or cls.__name__.endswith(("Model", "LM", "Generation"))
    if is_model:
        kwargs["dtype"] = DTYPES[options.dtype]
        kwargs["use_safetensors"] = None  # prefer safetensors; .bin only through weights_only loads
        if qconfig is not None:
            kwargs["quantization_config"] = qconfig
        if options.device_map:
            kwargs["device_map"] = options.device_map
            if options.max_memory:
                kwargs["max_memory"] = options.max_memory
    local = os.path.isdir(card.weights)
    if not local:
        kwargs["local_files_only"] = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0")
    try:
        obj = cls.from_pretrained(card.weights, **kwargs)
    except (OSError, ValueError, EnvironmentError) as e:
        where = "folder" if local else "hub id"
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise AuditError(
            f"cannot load {card.name!r} from {where} {card.weights!r}: {first} "
            "(without hub access, download the weights elsewhere and pass the folder with --model)"
        ) from None
    if is_model:
        if options.device_map is None and qconfig is None:
            obj = obj.to(options.device)
        obj.eval()
    return obj
