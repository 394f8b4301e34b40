"""Render the number tables of docs/*.md and benchmarks/README.md from recorded benchmark runs.

    python benchmarks/doc_tables.py --check   # exit 1 and name every table that differs from its record
    python benchmarks/doc_tables.py --write   # rewrite the tables in place from benchmarks/records/*.json

A generated table sits between two markers:

    <!-- table NAME: rendered by benchmarks/doc_tables.py from benchmarks/records/FILE; do not edit -->
    ...
    <!-- /table NAME -->

Numbers are never typed by hand: a record (JSON, written by the benchmark script whose command it
stores) is the only source, and tests/test_doc_tables.py fails when a document's table differs from
the one rendered from its record.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RECORDS = ROOT / "benchmarks" / "records"
BLOCK = re.compile(r"(<!-- table (?P<name>[\w-]+):[^\n]*-->\n)(?P<body>.*?)(<!-- /table (?P=name) -->)", re.S)


def _f(v: Any, nd: int = 2) -> str:
    return "—" if v is None else f"{v:.{nd}f}"


def _ci(row: dict[str, Any], key: str, nd: int = 2) -> str:
    lo, hi = row.get(f"{key}_ci_low"), row.get(f"{key}_ci_high")
    return _f(row.get(key), nd) + (f" [{_f(lo, nd)}, {_f(hi, nd)}]" if lo is not None and hi is not None else "")


def render_five(rec: dict[str, Any]) -> list[str]:
    cols = (("Rel", "reliability"), ("T-Gen", "t_generality"), ("V-Gen", "v_generality"),
            ("T-Loc answer", "t_locality_top1"), ("M-Loc answer", "m_locality_top1"),
            ("T-Loc easyedit (top-1)", "t_locality_top1_easyedit"),
            ("M-Loc easyedit (top-10)", "m_locality_top10_easyedit"),
            ("perception loc", "perception_locality_top1"))
    out = ["| editor, objective | n | " + " | ".join(c for c, _ in cols) + " |",
           "| --- | --- | " + " | ".join("---" for _ in cols) + " |"]
    for name, row in rec["rows"].items():
        out.append(f"| {name} | {row['n']} | " + " | ".join(_f(row.get(k)) for _, k in cols) + " |")
    return out


def render_balance(rec: dict[str, Any]) -> list[str]:
    cols = (("Rel", "reliability"), ("balanced", "balanced"), ("t", "transfer_ratio"),
            ("mirror amplified", "mirror_amplified"), ("T-Gen − base", "t_generality_adjusted"),
            ("V-Gen − base", "v_generality_adjusted"), ("drift (nats)", "neighbour_drift"),
            ("M-Loc easyedit", "m_locality_top10_easyedit"))
    out = ["| editor, objective | n | " + " | ".join(c for c, _ in cols) + " |",
           "| --- | --- | " + " | ".join("---" for _ in cols) + " |"]
    for name, row in rec["rows"].items():
        out.append(f"| {name} | {row['n']} | " + " | ".join(_ci(row, k) for _, k in cols) + " |")
    return out


def render_paired(rec: dict[str, Any]) -> list[str]:
    keys = ("mirror_amplified", "mirror_delta", "balanced", "reliability", "neighbour_drift")
    out = ["| B − A (same edits) | " + " | ".join(keys) + " |", "| --- | " + " | ".join("---" for _ in keys) + " |"]
    for name, diffs in rec["paired_vs_flip"].items():
        cells = []
        for k in keys:
            d = diffs.get(k)
            p = "" if d is None else ("p<0.001" if d["p_value"] < 0.001 else f"p={d['p_value']:.3f}")
            cells.append("—" if d is None else f"{d['diff']:+.2f} [{d['ci_low']:+.2f}, {d['ci_high']:+.2f}] {p}")
        out.append(f"| {name} | " + " | ".join(cells) + " |")
    return out


def render_coverage(rec: dict[str, Any]) -> list[str]:
    out = ["| attribute | generator | true bias | N | coverage (new) | mean width | coverage (old bootstrap) |",
           "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in rec["rows"]:
        out.append(f"| {r['attribute']} | {r['generator']} | {r['true_bias']:.3f} | {r['n']} | {r['coverage']:.3f} "
                   f"| {r['mean_width']:.3f} | {r['coverage_old_bootstrap']:.3f} |")
    return out


TABLES: dict[str, tuple[str, Callable[[dict[str, Any]], list[str]]]] = {
    "five": ("balance_table.json", render_five),
    "balance": ("balance_table.json", render_balance),
    "objectives-vs-flip": ("balance_table.json", render_paired),
    "gen-coverage": ("gen_coverage.json", render_coverage),
    # toy world v3 (`toy-v3`): python benchmarks/balance_table.py --model toy-v3 --out ...balance_table_v3.json
    "five-v3": ("balance_table_v3.json", render_five),
    "balance-v3": ("balance_table_v3.json", render_balance),
    "objectives-vs-flip-v3": ("balance_table_v3.json", render_paired),
}


def render(name: str, records: Path = RECORDS) -> str:
    """The body between a table's markers: the command that recorded it, a blank line, the table."""
    if name not in TABLES:
        raise KeyError(f"unknown table {name!r} (known: {', '.join(TABLES)})")
    file, fn = TABLES[name]
    rec = json.loads((records / file).read_text(encoding="utf-8"))
    lines = [f"Recorded with `{rec['command'].strip()}` ({file}).", "", *fn(rec)]
    return "\n".join(lines) + "\n"


def documents(root: Path = ROOT) -> list[Path]:
    return [*sorted((root / "docs").glob("*.md")), root / "benchmarks" / "README.md"]


def differences(paths: list[Path], records: Path = RECORDS) -> list[str]:
    """One line per generated table whose text differs from its rendering (empty: all match)."""
    out = []
    for path in paths:
        text = path.read_text(encoding="utf-8")
        for m in BLOCK.finditer(text):
            if m.group("body") != render(m.group("name"), records):
                out.append(f"{path}: table {m.group('name')!r} differs from benchmarks/records "
                           f"({TABLES[m.group('name')][0]}); run python benchmarks/doc_tables.py --write")
    return out


def write(paths: list[Path], records: Path = RECORDS) -> int:
    n = 0
    for path in paths:
        text = path.read_text(encoding="utf-8")
        new = BLOCK.sub(lambda m: m.group(1) + render(m.group("name"), records) + m.group(4), text)
        if new != text:
            path.write_text(new, encoding="utf-8")
            n += 1
    return n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    if args.write:
        print(f"rewrote {write(documents())} documents")
        return
    diff = differences(documents())
    print("\n".join(diff) or "every generated table matches its record")
    sys.exit(1 if diff else 0)


if __name__ == "__main__":
    main()
