"""docs/api.md as a user reads it: every code block runs (the example end to end, each signature block is
the function's real signature), and every public name is the API function whatever was imported before
(the subpackages `mllm_audit.gate` / `mllm_audit.report` once shadowed the lazy exports)."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import mllm_audit
from mllm_audit import api

DOC = Path(__file__).resolve().parents[1] / "docs" / "api.md"


def blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def render_signature(name: str, fn: Any) -> str:
    """The signature block docs/api.md shows for `fn` (string annotations as written in the source)."""
    sig = inspect.signature(fn)

    def ann(a: Any) -> str:
        return a if isinstance(a, str) else inspect.formatannotation(a)

    lines, star = [], False
    for p in sig.parameters.values():
        if p.kind is p.KEYWORD_ONLY and not star:
            lines.append("    *,")
            star = True
        text = p.name + (f": {ann(p.annotation)}" if p.annotation is not p.empty else "")
        if isinstance(p.default, Path):
            text += f' = Path("{p.default}")'
        elif p.default is not p.empty:
            text += f" = {p.default!r}"
        lines.append(f"    {text},")
    ret = "" if sig.return_annotation is sig.empty else f" -> {ann(sig.return_annotation)}"
    return f"{name}(\n" + "\n".join(lines) + f"\n){ret}\n"


def documented_signatures(text: str) -> dict[str, str]:
    out = {}
    for section in text.split("\n### `")[1:]:
        name = section.split("`", 1)[0]
        found = blocks(section)
        out[name] = found[0] if found else ""
    return out


def test_every_signature_block_is_the_real_signature() -> None:
    docs = documented_signatures(DOC.read_text(encoding="utf-8"))
    assert sorted(docs) == sorted(api.__all__)
    wrong = [n for n in api.__all__ if docs[n] != render_signature(n, getattr(api, n))]
    assert wrong == [], f"regenerate docs/api.md for {wrong}: python -m tests.test_api_docs"


def test_signature_check_catches_a_drifted_signature() -> None:
    """Negative control: `scan` with one argument renamed no longer matches its documented block."""
    docs = documented_signatures(DOC.read_text(encoding="utf-8"))

    def scan(model: str = "toy", suites: str = "toy") -> None: ...

    assert docs["scan"] != render_signature("scan", scan)


def test_the_example_block_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The page's example, executed as written in a fresh folder: scan -> fix -> gate -> report."""
    examples = [b for b in blocks(DOC.read_text(encoding="utf-8").split("## Signatures")[0])]
    assert examples, "docs/api.md lost its example"
    monkeypatch.chdir(tmp_path)
    for code in examples:
        namespace: dict[str, Any] = {}
        exec(compile(code, str(DOC), "exec"), namespace)  # noqa: S102 - the project's own docs
    assert namespace["outcome"].exit_code == 1  # the toy's planted gender bias is above 60 %
    assert 50 < namespace["res"].results["summary"]["all"]["pct_biased"] <= 100  # percent
    assert (tmp_path / "scan.html").read_text(encoding="utf-8").lower().startswith("<!doctype html>")


CHECK = """
import importlib, pkgutil, types, sys
import mllm_audit
if sys.argv[1] == "plain":
    mllm_audit.__class__ = types.ModuleType     # the package as it was: no guard on its attributes
from mllm_audit import api
for m in pkgutil.walk_packages(mllm_audit.__path__, "mllm_audit."):
    if not m.name.endswith("__main__"):
        importlib.import_module(m.name)
bad = [n for n in mllm_audit._API if getattr(mllm_audit, n) is not getattr(api, n)]
ns = {}
exec("from mllm_audit import " + ", ".join(mllm_audit._API), ns)
bad += [n for n in mllm_audit._API if ns[n] is not getattr(api, n) or not callable(ns[n])]
print(sorted(set(bad)))
"""


def test_every_public_name_survives_importing_every_subpackage() -> None:
    out = subprocess.run([sys.executable, "-c", CHECK, "guarded"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_public_name_check_catches_a_shadowing_subpackage() -> None:
    """Negative control: the package without its guard has `gate` and `report` shadowed by the folders."""
    out = subprocess.run([sys.executable, "-c", CHECK, "plain"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "['gate', 'report']"


def test_subpackages_stay_importable_by_their_full_names() -> None:
    from mllm_audit.gate import evaluate, policy

    assert importlib.import_module("mllm_audit.report.html").__name__ == "mllm_audit.report.html"
    assert evaluate.gate is mllm_audit.gate and callable(policy.load_policy)
    assert [m.name for m in pkgutil.iter_modules(importlib.import_module("mllm_audit.gate").__path__)]


if __name__ == "__main__":  # regenerate the signature blocks of docs/api.md
    text = DOC.read_text(encoding="utf-8")
    for n in api.__all__:
        old = documented_signatures(text)[n]
        text = text.replace(f"```python\n{old}```", f"```python\n{render_signature(n, getattr(api, n))}```", 1)
    DOC.write_text(text, encoding="utf-8")
