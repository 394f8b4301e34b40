"""The run record: one typed module writes and reads results.json; its JSON Schema is generated and checked."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mllm_audit.errors import AuditError
from mllm_audit.runs.record import (
    RESULTS_SCHEMA,
    SCHEMA_FILE,
    Coverage,
    ModelIdentity,
    SuiteIdentity,
    new_record,
    read_record,
    schema_text,
)

DOCS = Path(__file__).resolve().parents[2] / "docs"


def _record() -> dict:
    rec = new_record("scan", "r1", ModelIdentity(name="m", revision="sha256:ab", files={"a.json": "00"}),
                     SuiteIdentity(name="s", content_hash="cd", n_items=288, images_hash="ef"), seed=0,
                     score_options={"seed": 0}, options={"batch_size": 16},
                     coverage=Coverage(n_items=288, n_selected=96, n_scored=96, limit=96),
                     payload={"summary": {"all": {"n": 96}}})
    return rec.finished({"total_s": 1.23456789}).to_dict()


def test_schema_file_is_generated_from_the_dataclasses() -> None:
    assert (DOCS / SCHEMA_FILE).read_text(encoding="utf-8") == schema_text(), \
        "docs/run-record.schema.json is stale: python -m mllm_audit.runs.record"


def test_a_written_record_validates_against_the_schema_and_a_broken_one_does_not() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads((DOCS / SCHEMA_FILE).read_text(encoding="utf-8"))
    good = _record()
    jsonschema.validate(good, schema)
    bad = dict(good, coverage={**good["coverage"], "n_scored": "96"})  # negative control
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)


def test_round_trip_and_typed_refusals(tmp_path: Path) -> None:
    data = _record()
    assert data["schema"] == RESULTS_SCHEMA and data["complete"] is True
    assert data["coverage"] == {"n_items": 288, "n_selected": 96, "n_scored": 96, "split": None, "limit": 96,
                                "shard": None}
    assert data["timings"] == {"total_s": 1.2346}
    (tmp_path / "results.json").write_text(json.dumps(data))
    rec = read_record(tmp_path)
    assert rec.to_dict() == data and rec.coverage is not None and rec.coverage.subset
    assert rec.coverage.describe() == "96 of 288 items (--limit 96)"
    (tmp_path / "results.json").write_text(json.dumps(dict(data, complete="yes")))
    with pytest.raises(AuditError, match="field 'complete'"):
        read_record(tmp_path)
    (tmp_path / "results.json").write_text(json.dumps(dict(data, schema="mllm-audit/results/v9")))
    with pytest.raises(AuditError, match="schema 'mllm-audit/results/v9'"):
        read_record(tmp_path)


def test_version_1_records_are_read_with_coverage_from_their_summary(tmp_path: Path) -> None:
    v1 = {"schema": "mllm-audit/results/v1", "command": "scan", "run_id": "r", "complete": True,
          "model": {"name": "m"}, "suite": {"name": "s", "n_items": 12}, "summary": {"all": {"n": 12}}}
    (tmp_path / "results.json").write_text(json.dumps(v1))
    rec = read_record(tmp_path)
    assert rec.coverage is not None and not rec.coverage.subset and rec.coverage.n_scored == 12
