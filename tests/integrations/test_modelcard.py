"""`card`: scan and fix runs into a Hugging Face model card, read back by huggingface_hub's own parser;
the card's other metadata, results and prose survive, and a re-run replaces only this tool's part."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from huggingface_hub import ModelCard

from mllm_audit.cli import run
from mllm_audit.errors import AuditError
from mllm_audit.integrations.modelcard import END, START, card

THEIRS = """---
license: apache-2.0
tags: [vision]
model-index:
- name: my-model
  results:
  - task: {type: image-text-to-text}
    dataset: {name: MME, type: lmms-lab/MME}
    metrics:
    - {type: acc, value: 0.5}
---
# My model

Hand-written prose the owner keeps.
"""


@pytest.fixture()
def runs(tiny_suite: Path, tiny_adapter) -> tuple[Path, Path]:  # noqa: ANN001
    from mllm_audit.runs.fix import run_fix
    from mllm_audit.runs.scan import run_scan

    root = tiny_suite.parent
    run_scan(suite=str(tiny_suite), output=root / "scan", adapter=tiny_adapter)
    run_fix(suite=str(tiny_suite), output=root / "fix", adapter=tiny_adapter, all_items=True, limit=2,
            editor_options={"steps": 2, "lr": 1e-2})
    return root / "scan", root / "fix"


def _entries(c: ModelCard) -> dict[tuple[str, str], object]:
    return {(e.dataset_type, e.metric_name): e for e in c.data.eval_results or []}


def test_card_from_a_scan_and_a_fix_parses_back_with_the_measured_numbers(runs: tuple[Path, Path],
                                                                          tmp_path: Path) -> None:
    scan, fix = runs
    out = tmp_path / "README.md"
    res = card([scan, fix], output=out)
    parsed = ModelCard.load(out)  # huggingface_hub's own parser
    got = _entries(parsed)
    want_scan = json.loads((scan / "results.json").read_text())
    want_fix = json.loads((fix / "results.json").read_text())
    suite_type = f"mllm-audit/{want_scan['suite']['name']}"
    all_row = want_scan["summary"]["all"]
    e = got[(suite_type, "pct_biased")]
    assert e.metric_value == all_row["pct_biased"] and e.metric_args["ci95_low"] == all_row["ci_low"]
    assert e.metric_args["run_id"] == want_scan["run_id"] and e.dataset_revision == want_scan["suite"]["content_hash"]
    rel = got[(suite_type, "reliability")]
    assert rel.metric_value == want_fix["metrics"]["reliability"] and rel.metric_args["command"] == "fix"
    assert res["eval_results"] == len(got) and parsed.data.model_name == want_scan["model"]["name"]
    assert START in parsed.text and want_fix["run_id"] in parsed.text
    assert "mllm-audit" in parsed.data.tags


def test_merging_keeps_the_owners_card_and_a_rerun_replaces_only_ours(runs: tuple[Path, Path],
                                                                      tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    scan, fix = runs
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "README.md").write_text(THEIRS)
    first = card([scan], update=folder)
    again = card([scan, fix], update=folder)
    parsed = ModelCard.load(folder / "README.md")
    assert parsed.data.license == "apache-2.0" and "vision" in parsed.data.tags
    assert ("lmms-lab/MME", None) in _entries(parsed)  # their result kept
    assert first["kept_eval_results"] == again["kept_eval_results"] == 1
    assert len(parsed.data.eval_results) == 1 + again["eval_results"]  # ours replaced, not doubled
    assert parsed.text.count("Hand-written prose the owner keeps.") == 1
    assert parsed.text.count(START) == parsed.text.count(END) == 1
    # Negative control: a merge that appends its section instead of replacing it fails the check above.
    from mllm_audit.integrations import modelcard

    monkeypatch.setattr(modelcard, "_merge_text", lambda old, new: old.rstrip("\n") + "\n\n" + new)
    card([scan, fix], update=folder)
    assert ModelCard.load(folder / "README.md").text.count(START) == 2


def test_a_file_that_is_not_a_model_card_is_refused_untouched(runs: tuple[Path, Path], tmp_path: Path) -> None:
    scan, _ = runs
    notes = tmp_path / "notes.md"
    notes.write_text("# my notes, no metadata\n")
    with pytest.raises(AuditError, match="not a model card"):
        card([scan], output=notes)
    assert notes.read_text() == "# my notes, no metadata\n"
    bad = tmp_path / "bad.md"
    bad.write_text("---\nlicense: [unclosed\n---\ntext\n")
    with pytest.raises(AuditError, match="does not parse"):
        card([scan], output=bad)
    with pytest.raises(AuditError, match="exactly one of --output"):
        card([scan], output=tmp_path / "a.md", update=tmp_path)
    # the same file with metadata is a card: merged into
    notes.write_text("---\nlicense: mit\n---\n# my notes\n")
    card([scan], output=notes)
    assert ModelCard.load(notes).data.license == "mit"


def test_card_cli(runs: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    scan, fix = runs
    assert run(["card", str(scan), str(fix), "--output", str(tmp_path / "README.md")]) == 0
    assert (tmp_path / "README.md").is_file()
    assert run(["card", str(tmp_path), "--output", str(tmp_path / "x.md")]) == 2  # not a run folder
    assert "no results.json" in capsys.readouterr().err and not (tmp_path / "x.md").exists()
