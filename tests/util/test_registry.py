"""One registry type for cards, suites, classifiers, families and editors (util/registry.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from mllm_audit.errors import AuditError
from mllm_audit.util.registry import Registry, lazy, yaml_folder


def test_yaml_folder_by_stem_sorted_and_filtered(tmp_path: Path) -> None:
    for name in ("b", "a", "skip"):
        (tmp_path / f"{name}.yaml").write_text("x: 1\n")
    (tmp_path / "notes.txt").write_text("")
    reg = Registry("suite", yaml_folder(lambda: tmp_path, lambda p: p.stem != "skip"))
    assert reg.names() == ["a", "b"] and reg.get("a") == tmp_path / "a.yaml"
    with pytest.raises(AuditError, match=r"unknown suite 'c' \(known: a, b\)"):
        reg.get("c")


def test_lazy_entries_import_only_on_get() -> None:
    reg = Registry("thing", lazy({"join": "os.path:join"}))
    assert reg.names() == ["join"]
    import os.path

    assert reg.get("join") is os.path.join


def test_listing_editors_and_families_imports_no_torch() -> None:
    """Negative control for laziness: the same check fails once a name is resolved (it imports torch)."""
    code = ("import sys; from mllm_audit.editors import REGISTRY; from mllm_audit.models import FAMILY_REGISTRY; "
            "REGISTRY.names(); FAMILY_REGISTRY.names(); a = 'torch' in sys.modules; "
            "REGISTRY.get('ft-l'); print(a, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "True"]
