"""Every generated number table in docs/ and benchmarks/README.md equals its rendering from the record."""

from __future__ import annotations

import importlib.util
import re
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _doc_tables():  # noqa: ANN202 - the benchmarks/doc_tables.py module (benchmarks/ is not a package)
    spec = importlib.util.spec_from_file_location("doc_tables", ROOT / "benchmarks" / "doc_tables.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_documents_match_their_records() -> None:
    dt = _doc_tables()
    docs = dt.documents()
    found = {m.group("name") for p in docs for m in dt.BLOCK.finditer(p.read_text(encoding="utf-8"))}
    assert found == set(dt.TABLES), found  # every table is placed, and every placed table is known
    assert dt.differences(docs) == []


def test_changing_one_number_fails(tmp_path: Path) -> None:
    """Negative control: one digit changed inside a generated table is reported, naming the table."""
    dt = _doc_tables()
    doc = tmp_path / "editors.md"
    shutil.copy(ROOT / "docs" / "editors.md", doc)
    text = doc.read_text(encoding="utf-8")
    m = next(b for b in dt.BLOCK.finditer(text) if b.group("name") == "balance")
    body = m.group("body")
    num = re.search(r"\d\.\d\d", body.split("\n", 4)[-1])  # a number in the table rows
    assert num is not None
    digit = body[num.start() + 2]
    changed = body[: num.start() + 2] + ("1" if digit != "1" else "2") + body[num.start() + 3 :]
    doc.write_text(text[: m.start("body")] + changed + text[m.end("body") :], encoding="utf-8")
    diff = dt.differences([doc])
    assert len(diff) == 1 and "table 'balance' differs" in diff[0]
    assert dt.write([doc]) == 1 and dt.differences([doc]) == []  # --write restores it from the record


def test_no_table_of_figures_is_typed_by_hand(tmp_path: Path) -> None:
    """Every table with a decimal figure in docs/, benchmarks/README.md and README.md sits between
    generated markers (tables of settings aside: doc_tables.NOT_FIGURES). Negative control: a typed table
    of figures, and a generated table's rows copied out of its markers, are both named."""
    dt = _doc_tables()
    assert dt.loose_tables([*dt.documents(), ROOT / "README.md"]) == []
    text = (ROOT / "docs" / "unified.md").read_text(encoding="utf-8")
    m = next(b for b in dt.BLOCK.finditer(text) if b.group("name") == "bpo-lr")
    rows = m.group("body")[m.group("body").index("\n|") + 1 :]
    doc = tmp_path / "unified.md"
    doc.write_text(text + "\n| model | rel |\n| --- | --- |\n| toy | 0.50 |\n\n" + rows, encoding="utf-8")
    loose = dt.loose_tables([doc])
    assert len(loose) == 3 and "| model | rel |" in loose[0], loose  # the typed one and bpo-lr's two
