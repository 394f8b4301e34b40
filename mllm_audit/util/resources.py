"""Where the shipped YAML cards (`adapters/`) and suites (`suites/`) live.

In a wheel they are under `mllm_audit/_data/`; in a source checkout they are the repository's
top-level folders. Both layouts resolve through these two functions only.
"""

from __future__ import annotations

from pathlib import Path

_PKG = Path(__file__).resolve().parents[1]  # the mllm_audit package folder


def _data_dir(name: str) -> Path:
    installed = _PKG / "_data" / name
    if installed.is_dir():
        return installed
    return _PKG.parent / name


def adapters_dir() -> Path:
    """Folder of model cards (`*.yaml`)."""
    return _data_dir("adapters")


def suites_dir() -> Path:
    """Folder of suite definitions (`*.yaml`) and their data."""
    return _data_dir("suites")
