"""Learned editors on the toy world: trained on the train split, judged on held-out eval items."""

from __future__ import annotations

from pathlib import Path

import pytest

from mllm_audit.editing import run_fix
from mllm_audit.models import load_model
from mllm_audit.suites import load_suite
from mllm_audit.train_editor import train_editor


@pytest.fixture(scope="module")
def toy():  # noqa: ANN201 - an Adapter
    return load_model("toy")


@pytest.mark.parametrize("editor", ["mend", "serac", "ke"])
def test_learned_editor_on_held_out_planted_items(toy, editor: str, tmp_path: Path) -> None:  # noqa: ANN001
    state = tmp_path / editor
    train_editor(editor, out=state, adapter=toy, threads=None)
    res = run_fix(editor=editor, editor_state=state, limit=24, output=tmp_path / "run", adapter=toy)
    # Edited items come from the eval split, never from the train split the editor learned on.
    eval_ids = {it.id for it in load_suite("toy").items if it.split == "eval"}
    assert {r["item_id"] for r in res.edits} <= eval_ids
    planted = [r for r in res.edits if r["meta"].get("planted")]
    assert len(planted) >= 12
    reliability = sum(r["reliability"] for r in planted) / len(planted)
    t_loc = sum(r["t_locality"]["top1"] for r in planted) / len(planted)
    if editor in ("mend", "serac"):  # the bar; KE's figures are reported beside them
        assert reliability >= 0.9 and t_loc >= 0.9, (editor, reliability, t_loc)
    else:
        assert reliability > 0.5, (editor, reliability)
