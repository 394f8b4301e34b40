"""`fix --save` saves exactly the model its `saved_model` metrics measured, under a new card name: in
sequential mode the run's own final model, checked by an independent `scan` of the saved folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from mllm_audit.cli import run


def _margins(scan_dir: Path) -> dict[str, float]:
    return {s["item_id"]: s["margin"] for s in map(json.loads, (scan_dir / "samples.jsonl").read_text().splitlines())}


@pytest.fixture(scope="module")
def saved_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("fix-save")
    for mode in ("sequential", "single"):
        assert run(["fix", "--model", "toy", "--mode", mode, "--limit", "3", "--save", str(base / f"{mode}-model"),
                    "-o", str(base / f"{mode}-run"), "-q"]) == 0
        assert run(["scan", "--model", str(base / f"{mode}-model"), "--split", "eval", "-q", "-o",
                    str(base / f"{mode}-scan")]) == 0
    return base


def test_sequential_save_is_the_model_the_rows_measured(saved_runs: Path) -> None:
    res = json.loads((saved_runs / "sequential-run" / "results.json").read_text())
    saved = res["saved_model"]
    edits = [json.loads(x) for x in (saved_runs / "sequential-run" / "edits.jsonl").read_text().splitlines()]
    scanned = _margins(saved_runs / "sequential-scan")
    # The independent scan of the saved folder gives every edited item the margin the rows recorded ...
    for e in edits:
        assert abs(scanned[e["item_id"]] - e["post"]["reliability"]) <= 1e-4, e["item_id"]
    # ... so its reliability is saved_model.metrics' (and the rows'): nothing differs, the manifest says how.
    reliability = sum(scanned[e["item_id"]] < 0 for e in edits) / len(edits)
    assert reliability == saved["metrics"]["reliability"] == res["metrics"]["reliability"]
    assert saved["differs_from_rows"] == []
    assert "one after another" in saved["how"]
    manifest = json.loads((saved_runs / "sequential-model" / "mllm-audit-edit.json").read_text())
    assert manifest["mode"] == "sequential" and manifest["how"] == saved["how"]


def test_the_all_at_once_model_would_not_pass_the_same_check(saved_runs: Path) -> None:
    """Negative control: the model the old code saved for every mode (all edits at once, here from the
    single-mode run on the same 3 items) scans to other margins than the sequential rows."""
    edits = [json.loads(x) for x in (saved_runs / "sequential-run" / "edits.jsonl").read_text().splitlines()]
    at_once = _margins(saved_runs / "single-scan")
    assert max(abs(at_once[e["item_id"]] - e["post"]["reliability"]) for e in edits) > 1e-3


def test_the_saved_card_is_named_for_the_edit(saved_runs: Path) -> None:
    for mode in ("sequential", "single"):
        card = yaml.safe_load((saved_runs / f"{mode}-model" / "mllm-audit-card.yaml").read_text())
        assert card["name"] == f"toy+ft-l-{mode}-3"
        scan = json.loads((saved_runs / f"{mode}-scan" / "results.json").read_text())
        assert scan["model"]["name"] == f"toy+ft-l-{mode}-3"  # a later scan / compare / gate tells it apart


def test_a_refused_sequential_save_keeps_the_measured_rows(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A memory editor changes no weights, so its --save is refused; the sequential rows were measured
    before that and stay in edits.jsonl (they were lost when the save ran before the rows were written)."""
    out = tmp_path / "run"
    assert run(["fix", "--editor", "ike", "--mode", "sequential", "--limit", "2", "--save", str(tmp_path / "m"),
                "-o", str(out), "-q"]) == 2
    assert "changes no weights" in capsys.readouterr().err
    rows = (out / "edits.jsonl").read_text().splitlines()
    assert len(rows) == 2 and not (tmp_path / "m").exists()
