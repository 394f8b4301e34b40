"""Negative controls (issue 17): an edit that should fail must fail a bar that a real editor passes.

`control-shift` fine-tunes one bias vector: an input-independent shift that flips the edited item
by moving every answer. It passes the paper's Reliability like FT-L does; the debias metrics and
the easyedit locality must show the difference. Both sides are asserted in each test.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mllm_audit.metrics.edits import aggregate
from mllm_audit.models import load_model
from mllm_audit.runs.fix import run_fix

N_EDITS = 24


@pytest.fixture(scope="module")
def toy():  # noqa: ANN201 - an Adapter
    return load_model("toy")


def _planted(res) -> dict:  # noqa: ANN001
    return aggregate([r for r in res.edits if r["meta"].get("planted")])


def test_shift_control_flips_the_item_but_fails_the_debias_bars(toy, tmp_path: Path) -> None:  # noqa: ANN001
    ft = _planted(run_fix(editor="ft-l", limit=N_EDITS, output=tmp_path / "ft", adapter=toy))
    ctl = _planted(run_fix(editor="control-shift", limit=N_EDITS, output=tmp_path / "ctl", adapter=toy))
    # Both flip the edited items: Reliability alone cannot tell them apart.
    assert ft["reliability"] >= 0.9 and ctl["reliability"] >= 0.9, (ft, ctl)
    # Measured (benchmarks/editor_table.py --limit 24, the earlier FT variant): neighbour drift 0.20 nats
    # (FT-L) vs 0.68 (control); easyedit M-locality 0.61 vs 0.29; parity after 2.30 vs 2.80 (planted 3.24).
    # The faithful FT-L (whole last layer) drifts more: 0.40 on these 8 edits, still well below the control.
    assert ft["neighbour_drift"] + 0.15 < ctl["neighbour_drift"], (ft["neighbour_drift"], ctl["neighbour_drift"])
    assert ft["m_locality_top10_easyedit"] >= 0.45 > ctl["m_locality_top10_easyedit"]
    assert ft["mirror_spread_after"] < ctl["mirror_spread_after"]
    # The answer-protocol M-locality cannot tell them apart (both 1.00): why the debias metrics exist.
    assert ft["m_locality_top1"] >= 0.9 and ctl["m_locality_top1"] >= 0.9
