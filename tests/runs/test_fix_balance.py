"""fix on the toy: the balance criteria in edits.jsonl, `steps` for FT, and an honest --save line."""

from __future__ import annotations

from pathlib import Path

import pytest

from mllm_audit.models import load_model
from mllm_audit.runs.fix import run_fix


@pytest.fixture(scope="module")
def toy():  # noqa: ANN201 - an Adapter
    return load_model("toy")


def test_save_of_one_batch_matches_its_rows_and_ft_records_steps(toy, tmp_path: Path) -> None:  # noqa: ANN001
    """One batch of 4 saved: the saved model is exactly the rows' model, so nothing may be said to differ
    (the old code always said weight_delta_norm did: the rows carry the edit's norm, the save none)."""
    res = run_fix(editor="ft-l", mode="batch", batch_edits=4, limit=4, output=tmp_path / "run",
                  save=tmp_path / "edited", adapter=toy)
    saved = res.results["saved_model"]
    assert saved["differs_from_rows"] == []
    assert res.results["metrics"]["weight_delta_norm"] is not None  # the rows do have a norm (why it said so)
    steps = [r["steps"] for r in res.edits]
    assert all(isinstance(s, int) and 1 <= s <= 15 for s in steps), steps  # was null for FT
    assert all(r["opposite_targets"] in (0.0, 1.0) for r in res.edits)


def test_balance_criteria_are_recorded(toy, tmp_path: Path) -> None:  # noqa: ANN001
    res = run_fix(editor="ft-l", limit=4, output=tmp_path / "run", adapter=toy)
    for r in res.edits:
        t = r["mirror_delta"] / abs(r["margin_change"])
        assert r["transfer_ratio"] == pytest.approx(t)
        assert r["balanced"] in (0.0, 1.0) and r["opposite_targets"] == 0.0  # single mode: edited alone
        assert r["mirror_spread_after"] == pytest.approx(
            abs(r["mirror_spread_before"] + r["margin_change"] + r["mirror_delta"]), abs=1e-4)
    m, base = res.results["metrics"], res.results["base_metrics"]
    assert m["t_generality_adjusted"] == pytest.approx(m["t_generality"] - base["t_generality"])
    assert m["v_generality_adjusted"] == pytest.approx(m["v_generality"] - base["v_generality"])
