"""mllm-audit: audit multimodal LLMs for social bias and repair it by model editing.

The public API (docs/api.md) is re-exported lazily from `mllm_audit.api`: `import mllm_audit` stays
instant, and torch loads only when a function that needs it is called.
"""

from typing import Any

__version__ = "0.1.0"

_API = (
    "compare", "fix", "frame_suite", "gate", "gen_scan", "load_model", "load_suite", "locate", "report",
    "rescore", "scan", "study", "train_editor", "train_toy",
)
__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    if name in _API:
        from mllm_audit import api

        return getattr(api, name)
    raise AttributeError(f"module 'mllm_audit' has no attribute {name!r}")
