"""The processor a checkpoint ships, built without torchvision when only images are used.

Some processors (Qwen2-VL and its successors, SmolVLM, LLaVA-OneVision, InternVL) carry a video
processor whose classes need torchvision; transformers cannot even construct the processor without it.
torchvision for the CPU torch build is not among this project's package sources, and the audit never
feeds videos, so such a processor is rebuilt from its image processor, tokenizer and chat template with
the video part left out (`image_only`). With torchvision installed, AutoProcessor loads it whole.
"""

from __future__ import annotations

from typing import Any

from mllm_audit.errors import AuditError


def image_only(cls: Any) -> type:
    """`cls` with its video processor dropped from the parts it requires (same name, same behaviour for images)."""
    import inspect

    attrs = [a for a in cls.get_attributes() if a != "video_processor"]
    body: dict[str, Any] = {"get_attributes": classmethod(lambda _c: list(attrs)),
                            "__doc__": f"{cls.__name__} for images only (no torchvision)."}
    video = inspect.signature(cls.__init__).parameters.get("video_processor")
    if video is not None and video.default is inspect.Parameter.empty:  # SmolVLM requires it: given as None

        # Named parameters, not *args: from_pretrained passes what __init__'s code names (co_varnames).
        def __init__(self: Any, image_processor: Any = None, tokenizer: Any = None, video_processor: Any = None,
                     image_seq_len: int | None = None, chat_template: str | None = None, **kw: Any) -> None:
            if image_seq_len is not None:
                kw["image_seq_len"] = image_seq_len
            cls.__init__(self, image_processor, tokenizer, video_processor, chat_template=chat_template, **kw)

        body["__init__"] = __init__
        # Its apply_chat_template reads the video defaults (no video is ever sent): a class attribute, so
        # save_pretrained (which writes the instance's own attributes) leaves it out.
        from types import SimpleNamespace

        body["video_processor"] = SimpleNamespace(num_frames=None, fps=None)
    return type(cls.__name__, (cls,), body)


def has_torchvision() -> bool:
    import importlib.util

    return importlib.util.find_spec("torchvision") is not None


def load_processor(card: Any, options: Any) -> Any:
    """AutoProcessor for the card's weights; without torchvision, processors with a video part are
    rebuilt from AutoImageProcessor + AutoTokenizer + the chat template."""
    from transformers import AutoConfig, AutoImageProcessor, AutoProcessor, AutoTokenizer
    from transformers.models.auto.processing_auto import PROCESSOR_MAPPING_NAMES

    from mllm_audit.models.loading import from_pretrained_checked

    if has_torchvision():
        return from_pretrained_checked(AutoProcessor, card, options, None)
    config = from_pretrained_checked(AutoConfig, card, options, None)
    name = PROCESSOR_MAPPING_NAMES.get(config.model_type)
    import transformers

    cls = getattr(transformers, name, None) if isinstance(name, str) else None
    if cls is None or "video_processor" not in cls.get_attributes():
        return from_pretrained_checked(AutoProcessor, card, options, None)
    try:
        return from_pretrained_checked(image_only(cls), card, options, None)
    except (AuditError, TypeError, ValueError, AttributeError, ImportError):  # assembled from its parts
        image_processor = from_pretrained_checked(AutoImageProcessor, card, options, None)
        tokenizer = from_pretrained_checked(AutoTokenizer, card, options, None)
        template = getattr(tokenizer, "chat_template", None)
        return image_only(cls)(image_processor, tokenizer, chat_template=template)
