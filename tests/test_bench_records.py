"""The benchmark records behind benchmarks/README.md and docs/real-models.md (benchmarks/_record.py):
each says what ran and under what load, and the documents' tables follow the records, not hand edits."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from test_doc_tables import _doc_tables

ROOT = Path(__file__).resolve().parents[1]


def _bench_records() -> dict[str, dict]:
    recs = {p.stem: json.loads(p.read_text(encoding="utf-8")) for p in (ROOT / "benchmarks" / "records").glob("*.json")}
    return {k: v for k, v in recs.items() if "load_average" in v}


def test_every_benchmark_record_says_what_ran_and_under_what_load() -> None:
    recs = _bench_records()
    assert {"scan_flops", "prefix_memory", "ftl_speed", "image_memory_16", "image_memory_64",
            "generic_conformance"} <= set(recs)
    for name, r in recs.items():
        m = re.match(r"(OMP_NUM_THREADS=\d+ )?python benchmarks/(?P<script>\w+)\.py( |$)", r["command"])
        # One script may write several records: image_memory_16 / _64, study_modules / study_batch, ...
        assert m and (name == m["script"] or name.startswith(m["script"].removesuffix("_tables") + "_")), name
        assert "--record" in r["command"] and r["torch"].startswith("2.") and r["figures"], name
        assert len(r["load_average"]["start"]) == 3 and len(r["load_average"]["end"]) == 3, name


def test_the_architecture_table_reports_each_measured_deviation() -> None:
    """The tolerance column comes from each architecture's record, with and without an image."""
    dt = _doc_tables()
    rec = json.loads((ROOT / "benchmarks" / "records" / "generic_conformance.json").read_text(encoding="utf-8"))
    table = dt.render("generic-conformance")
    for arch, r in rec["figures"]["architectures"].items():
        row = next(line for line in table.splitlines() if line.startswith(f"| {arch} |"))
        assert f"| {r['with_image']:.2e} | {r['without_image']:.2e} |" in row


def test_a_digit_typed_into_any_benchmark_table_fails(tmp_path: Path) -> None:
    """Negative control, per table rendered from a benchmark record: bump the last digit of the first
    number in its rows; the check names that table and no other."""
    dt = _doc_tables()
    names = {n for n, (file, _) in dt.TABLES.items() if "load_average" in _bench_records().get(Path(file).stem, {})}
    assert {"scan-flops", "ftl-speed", "prefix-memory", "generic-conformance", "gen-floor"} <= names
    for path in dt.documents():
        for m in [b for b in dt.BLOCK.finditer(path.read_text(encoding="utf-8")) if b.group("name") in names]:
            text = path.read_text(encoding="utf-8")
            rows = m.start("body") + m.group("body").index("\n|")  # the table, not the command line
            num = re.compile(r"\d\.\d+").search(text, rows)
            assert num is not None
            i = num.end() - 1
            doc = tmp_path / path.name
            doc.write_text(text[:i] + str((int(text[i]) + 1) % 10) + text[i + 1 :], encoding="utf-8")
            diff = dt.differences([doc])
            assert len(diff) == 1 and f"table {m.group('name')!r} differs" in diff[0], (path, m.group("name"))


def test_a_record_that_moved_fails(tmp_path: Path) -> None:
    """Negative control: the same documents against a record whose figure changed."""
    dt = _doc_tables()
    records = tmp_path / "records"
    shutil.copytree(ROOT / "benchmarks" / "records", records)
    rec = json.loads((records / "generic_conformance.json").read_text(encoding="utf-8"))
    rec["figures"]["architectures"]["gemma3"]["with_image"] = 1e-3
    (records / "generic_conformance.json").write_text(json.dumps(rec), encoding="utf-8")
    diff = dt.differences([ROOT / "docs" / "real-models.md"], records)
    assert len(diff) == 1 and "table 'generic-conformance' differs" in diff[0]


def test_toy_tables_name_the_model_they_measured() -> None:
    """The toy worlds' tables (benchmarks/doc_tables_toy.py) come from runs that named their model on the
    command line (the default model changes), and the record says the same model; a record whose command
    leaves the model to the default fails."""
    dt = _doc_tables()
    toy = {file for name, (file, _) in dt.TABLES.items() if dt.TABLES[name][1].__module__ == "doc_tables_toy"}
    assert {"study_batch.json", "locate_table.json", "bpo_lr.json"} <= toy

    def named(rec: dict) -> bool:
        m = re.search(r" --models? (\S+)", rec["command"])
        f = rec["figures"]
        said = f.get("model") or ",".join(x["model"] for x in f.get("models", []))
        return m is not None and m.group(1) == said

    for file in sorted(toy):
        rec = json.loads((ROOT / "benchmarks" / "records" / file).read_text(encoding="utf-8"))
        assert named(rec), file
    rec = json.loads((ROOT / "benchmarks" / "records" / "study_batch.json").read_text(encoding="utf-8"))
    bad = {**rec, "command": re.sub(r" --models? \S+", "", rec["command"])}
    assert not named(bad)  # negative control: the same record without the model on its command line
