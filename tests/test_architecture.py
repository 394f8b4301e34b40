"""The house: data flows one way (docs/architecture.md), and the import graph says so.

Every import in the package is walked, lazy ones inside functions included (only `if TYPE_CHECKING:`
blocks are skipped: annotations do not run). A module may import its own layer or a lower one; an
arrow to a higher layer, or a cycle between modules, fails with the offending edge named.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "mllm_audit"

# Lowest first. The flow: suite -> requests -> adapter -> scores -> metrics -> run record -> report / gate.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("errors", "util"),  # leaves: user text, limits, files, hashing, feedback
    ("scoring",),  # the contract: requests in, log-probabilities out
    ("suites",),  # items, and how an item becomes requests
    ("models",),  # adapters that implement the contract
    ("classifiers",),  # read a group from a generated image
    ("metrics",),  # numbers from scores
    ("editors",),  # wrap a model between requests and scores
    ("testing", "toy"),  # tiny models from configs, toy worlds with planted bias
    ("runs",),  # scan, fix, gen-scan, train-editor, studies: each writes a run record
    ("report",),  # what a run looks like to a person
    ("gate",),  # a release decision over a run record
    ("integrations",),  # harnesses (lmms-eval, lm-eval, inspect_ai) and model cards over runs and adapters
    ("api",),  # one function per command
    ("cli",),  # argument parsing over the api
)
RANK = {name: i for i, names in enumerate(LAYERS) for name in names}


def module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for child in node.body for n in ast.walk(child))
    return skip


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """Project modules `path` imports, resolved to the module (not the package) where possible."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip = _type_checking_nodes(tree)
    out: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("mllm_audit"):
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                out.add(sub if sub in modules else node.module)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("mllm_audit"))
    return out


# The package root only holds `__version__` and lazily re-exports the API (`mllm_audit.fix`): it is the
# facade over everything, so its own outgoing import is not an arrow of the flow.
FACADE = "mllm_audit"


def graph() -> dict[str, set[str]]:
    files = {module_name(p): p for p in PKG.rglob("*.py")}
    mods = set(files)
    return {m: {d for d in imports_of(p, mods) if d != m} if m != FACADE else set() for m, p in files.items()}


def layer(module: str) -> int | None:
    parts = module.split(".")
    return RANK.get(parts[1]) if len(parts) > 1 else None


def upward_arrows(g: dict[str, set[str]]) -> list[str]:
    bad = []
    for src, deps in sorted(g.items()):
        for dst in sorted(deps):
            a, b = layer(src), layer(dst)
            if a is not None and b is not None and b > a:
                bad.append(f"{src} -> {dst} ({LAYERS[a][0]} imports {LAYERS[b][0]})")
    return bad


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each a cycle to break."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in g.get(v, ()):
            if w not in g:  # a package __init__ re-export target not in the walk: not a module edge
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return found


def test_every_subpackage_has_a_layer() -> None:
    tops = {p.name for p in PKG.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    tops |= {p.stem for p in PKG.glob("*.py") if p.stem != "__init__"}
    assert sorted(tops - set(RANK)) == []


def test_no_import_against_the_flow() -> None:
    assert upward_arrows(graph()) == []


def test_no_import_cycles() -> None:
    assert cycles(graph()) == []


@pytest.mark.parametrize("edge", [("mllm_audit.metrics.bias", "mllm_audit.runs.scan")])
def test_walk_catches_a_planted_upward_arrow(edge: tuple[str, str]) -> None:
    """Negative control: the same check fails on a graph with one arrow against the flow (and a cycle)."""
    g = graph()
    src, dst = edge
    g[src] = g[src] | {dst}
    assert upward_arrows(g) == [f"{src} -> {dst} (metrics imports runs)"]
    g[dst] = g[dst] | {src}
    assert any(src in c and dst in c for c in cycles(g))


def test_walk_sees_lazy_imports(tmp_path: Path) -> None:
    """An import inside a function counts; one under `if TYPE_CHECKING:` does not."""
    f = tmp_path / "m.py"
    f.write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from mllm_audit.runs import scan\n"
        "def f():\n    from mllm_audit.report import html\n"
    )
    assert imports_of(f, {"mllm_audit.report.html"}) == {"mllm_audit.report.html"}


def test_long_files_say_why() -> None:
    """No module over ~350 lines without a one-line reason at its top (docs/architecture.md)."""
    long = [p.relative_to(PKG.parent).as_posix() for p in PKG.rglob("*.py")
            if p.read_text(encoding="utf-8").count("\n") > 360
            and not p.read_text(encoding="utf-8").startswith("# Over 350 lines: ")]
    assert long == []
