"""What an existing folder holds, decided once for the output guard and the run-folder rules.

Both util/outputs.py (may a file be written *into* this folder?) and util/folders.py (may a run be
written *as* this folder?) ask the same question; two classifiers used to answer it by different
rules (a folder with `samples.jsonl` only was a run for one and a suite for the other).
"""

from __future__ import annotations

from pathlib import Path

LOCK_NAME = ".mllm-audit.lock"
RUN_FILES = ("results.json", "samples.jsonl")
EDITOR_STATE_FILES = ("state.safetensors", "checkpoint.pt")
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pth", ".pt", ".ckpt")
# Kinds whose every file is part of an identity or a record: nothing is written into them.
SEALED = ("run", "model", "editor-state")


def folder_kind(folder: Path) -> str | None:
    """'run', 'editor-state', 'model', 'suite', 'files', or None (absent, unreadable or empty)."""
    path = Path(folder)
    if not path.is_dir():
        return None
    try:
        names = {p.name for p in path.iterdir() if p.name != LOCK_NAME}
    except OSError:
        return None
    if not names:
        return None
    if any(n in names for n in RUN_FILES):
        return "run"
    if any(n in names for n in EDITOR_STATE_FILES):
        return "editor-state"
    if "config.json" in names and any(Path(n).suffix in WEIGHT_SUFFIXES for n in names):
        return "model"
    if "items.jsonl" in names or any(n.endswith((".jsonl", ".yaml", ".yml")) for n in names):
        return "suite"
    return "files"
