"""A model folder scores like its card: templates from the folder's own card, the card pointing at
it, `--card`, or the family's released-model card; recorded in results.json and checked by compare."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mllm_audit.cli import run
from mllm_audit.errors import AuditError
from mllm_audit.models.cards import FOLDER_CARD, read_card, registered_cards, resolve_card
from mllm_audit.util.resources import adapters_dir

TOY_DIR = adapters_dir() / "toy-model"


def _margins(run_dir: Path) -> dict[str, float]:
    lines = (run_dir / "samples.jsonl").read_text().splitlines()
    return {(s := json.loads(x))["item_id"]: s["margin"] for x in lines if x.strip()}


def test_folder_a_card_points_at_scores_like_the_card(tmp_path: Path) -> None:
    """The newcomer's report: `scan` 80.6 % vs `scan --model adapters/toy-model` 68.4 % (verbatim)."""
    assert run(["scan", "--model", "toy", "--limit", "24", "-q", "-o", str(tmp_path / "byname")]) == 0
    assert run(["scan", "--model", str(TOY_DIR), "--limit", "24", "-q", "-o", str(tmp_path / "byfolder")]) == 0
    a, b = _margins(tmp_path / "byname"), _margins(tmp_path / "byfolder")
    assert a.keys() == b.keys() and max(abs(a[k] - b[k]) for k in a) < 1e-6
    model = json.loads((tmp_path / "byfolder" / "results.json").read_text())["model"]
    assert model["templates"] == read_card(registered_cards()["toy"]).templates
    assert "toy" in model["templates_from"]
    # The negative control: the same weights prompted verbatim (a card without templates) score otherwise.
    bare = tmp_path / "bare.yaml"
    bare.write_text(f"family: blip2\nweights: {TOY_DIR}\n")
    assert run(["scan", "--model", str(bare), "--limit", "24", "-q", "-o", str(tmp_path / "verbatim")]) == 0
    c = _margins(tmp_path / "verbatim")
    assert max(abs(a[k] - c[k]) for k in a) > 0.5


def test_folder_without_card_gets_its_family_templates(tiny_blip2_dir: Path) -> None:
    card = resolve_card(str(tiny_blip2_dir))
    released = read_card(registered_cards()["blip2-opt"])
    assert card.templates == released.templates and card.templates_from == "family card 'blip2-opt'"
    assert card.weights == str(tiny_blip2_dir.resolve())
    assert card.edit == {}  # only templates: edit modules of a 2.7B model do not fit a small folder


def test_card_option_applies_a_cards_templates(tiny_blip2_dir: Path) -> None:
    card = resolve_card(str(tiny_blip2_dir), card="toy")
    assert card.templates == read_card(registered_cards()["toy"]).templates and card.templates_from == "--card toy"
    with pytest.raises(AuditError, match="family 'janus'"):
        resolve_card(str(tiny_blip2_dir), card="janus-pro-1b")


def test_fix_save_writes_the_card_so_the_saved_folder_scores_as_the_original(tmp_path: Path) -> None:
    saved = tmp_path / "edited"
    args = ["fix", "--model", "toy", "--editor", "ft-l", "--limit", "2", "-q", "-o", str(tmp_path / "fix"),
            "--save", str(saved)]
    assert run(args) == 0
    assert (saved / FOLDER_CARD).is_file()
    card = resolve_card(str(saved))
    assert card.templates == read_card(registered_cards()["toy"]).templates
    assert card.edit == read_card(registered_cards()["toy"]).edit and "saved in the folder" in card.templates_from


def test_compare_flags_runs_whose_templates_differ(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["scan", "--limit", "12", "-q", "-o", str(tmp_path / "a")]) == 0
    assert run(["scan", "--limit", "12", "-q", "-o", str(tmp_path / "b")]) == 0
    capsys.readouterr()
    assert run(["compare", str(tmp_path / "a"), str(tmp_path / "b")]) == 0
    assert "WARNING" not in capsys.readouterr().out
    res = tmp_path / "b" / "results.json"
    data = json.loads(res.read_text())
    data["model"]["templates"]["vqa"] = "{prompt}"
    res.write_text(json.dumps(data))
    assert run(["compare", str(tmp_path / "a"), str(tmp_path / "b")]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "WARNING: prompt template for 'vqa' differs" in out


def test_missing_local_weights_and_suite_files_are_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    card = tmp_path / "mine.yaml"
    card.write_text("family: blip2\nweights: ./not-downloaded\n")
    assert run(["scan", "--model", str(card), "-q", "-o", str(tmp_path / "r")]) == 2
    assert "weights folder" in capsys.readouterr().err and "not-downloaded" in card.read_text()
    assert run(["scan", "--suite", "./my-suite.jsonl", "-q", "-o", str(tmp_path / "r2")]) == 2
    err = capsys.readouterr().err
    assert "suite file './my-suite.jsonl' not found" in err and "unknown suite" not in err


def test_hub_id_not_cached_fails_at_once_when_offline(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    assert run(["scan", "--model", "blip2-opt", "-q", "-o", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "hub id 'Salesforce/blip2-opt-2.7b' is not in the local cache and HF_HUB_OFFLINE is set" in err
