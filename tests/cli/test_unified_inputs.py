"""`locate` and `fix --editor sft|bpo`: bad input is one line and exit 2; the balanced data is what it says."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mllm_audit.cli import run
from mllm_audit.runs.locate import labelled_images_of
from mllm_audit.suites.labelled import read_labelled_images
from mllm_audit.toy.unified import world_codes


def test_fix_refuses_a_non_empty_save_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    keep = tmp_path / "mine"
    keep.mkdir()
    (keep / "precious.txt").write_text("x")
    assert run(["fix", "--editor", "bpo", "--save", str(keep), "-o", str(tmp_path / "run"), "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "refusing to overwrite" in err[0] and str(keep) in err[0]
    assert (keep / "precious.txt").read_text() == "x"


def test_fix_bad_setting_names_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["fix", "--editor", "sft", "--set", "sft_lr=fast", "-o", str(tmp_path / "r")]) == 2
    assert "sft_lr" in capsys.readouterr().err


def test_locate_missing_labels_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["locate", "--images", str(tmp_path), "-o", str(tmp_path / "r"), "-q", "--limit", "1"]) == 2
    err = capsys.readouterr().err
    assert "labels.jsonl" in err and "Traceback" not in err


def test_labelled_image_with_an_unknown_class(tmp_path: Path) -> None:
    (tmp_path / "labels.jsonl").write_text(json.dumps({"image": "a.png", "gender": "robot"}) + "\n")
    from mllm_audit.errors import AuditError

    with pytest.raises(AuditError, match="labels.jsonl:1: gender 'robot'"):
        read_labelled_images(tmp_path, {"gender": ["male", "female"]})


def test_shipped_labelled_images_are_balanced_per_occupation() -> None:
    rows = read_labelled_images(labelled_images_of("gen-toy-v2"), {"gender": ["male", "female"],
                                                                   "race": ["wmelh", "black", "indian", "asian"]})
    by_occ: dict[str, list[tuple[str, str]]] = {}
    for r in rows:
        by_occ.setdefault(r["occupation"], []).append((r["gender"], r["race"]))
    assert len(by_occ) == 28
    assert all(len(set(v)) == 8 and len(v) == 8 for v in by_occ.values())  # every gender x race once
    assert len({r["image"] for r in rows}) == len(world_codes())
