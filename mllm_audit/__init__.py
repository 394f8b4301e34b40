"""mllm-audit: audit multimodal LLMs for social bias and repair it by model editing.

The public API (docs/api.md) is re-exported lazily from `mllm_audit.api`: `import mllm_audit` stays
instant, and torch loads only when a function that needs it is called.

Two API names are also subpackage names (`gate`, `report`). Importing a subpackage makes Python bind
it on its parent (`setattr(mllm_audit, "gate", <module>)`), which would shadow the lazy function for
good: after any API call `mllm_audit.gate(...)` would be "'module' object is not callable". The
package's module class therefore keeps API names for the API: the subpackages stay importable by
their full names (`from mllm_audit.gate import evaluate`, `importlib.import_module`), never as
attributes of the package.
"""

import sys
import types
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


class _Package(types.ModuleType):
    """The package's module type: a subpackage bound under an API name is not kept as an attribute."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _API and isinstance(value, types.ModuleType):
            return  # the import system's binding of `mllm_audit.gate` / `.report`; sys.modules has it
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
