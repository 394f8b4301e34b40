"""Today's code paths, loaded from the commit before issue 29 (002b852), to run beside the new ones.

Interleaving old and new in one process on a shared machine is the only fair timing: both see the
same load. `old_module("mllm_audit/scoring/contract.py")` returns that file as it was, as a module.
"""

from __future__ import annotations

import subprocess
import sys
import types
from pathlib import Path

BASE = "002b852"
ROOT = Path(__file__).resolve().parents[1]


def old_module(path: str, base: str = BASE) -> types.ModuleType:
    src = subprocess.run(["git", "show", f"{base}:{path}"], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout
    mod = types.ModuleType(f"baseline_{Path(path).stem}")
    mod.__file__ = f"{base}:{path}"
    sys.modules[mod.__name__] = mod  # dataclasses look their module up there
    exec(compile(src, mod.__file__, "exec"), mod.__dict__)  # noqa: S102 - this repository's own file at BASE
    return mod


def load() -> str:
    """`uptime`'s load averages, printed beside every timing."""
    return Path("/proc/loadavg").read_text().split(" ", 3)[:3].__str__()
