"""Every test here hashes into its own sidecar cache, never the user's."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _own_hash_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLLM_AUDIT_HASH_CACHE", str(tmp_path / "hash-cache.json"))
