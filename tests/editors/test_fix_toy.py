"""Editing verified against the toy world's planted bias: found, removed, the rest left alone.

Items are the eval split's planted items the toy model is biased on (the default of `fix`), so the
base row is Reliability 0 by construction and locality 1; an editor must flip them.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mllm_audit.models import load_model
from mllm_audit.runs.fix import run_fix

N_EDITS = 16


@pytest.fixture(scope="module")
def toy():  # noqa: ANN201 - an Adapter
    return load_model("toy")


def _planted(records: list[dict]) -> list[dict]:
    return [r for r in records if r["meta"].get("planted")]


def _rate(records: list[dict], key: str) -> float:
    vals = [r[key] for r in records if r[key] is not None]
    return sum(vals) / len(vals)


# IKE's earlier variant (k = 2, the context the toy LM was trained on): the faithful IKE fills the
# context with up to 32 demonstrations, which the toy LM never saw, and measured reliability 0.17
# (benchmarks/README.md); tests/editors/test_faithful.py checks what it builds.
@pytest.mark.parametrize(("editor", "options"), [("ft-l", {}), ("ike", {"variant": "prompt"})])
def test_editor_removes_the_planted_bias(toy, editor: str, options: dict, tmp_path: Path) -> None:  # noqa: ANN001
    before = {k: v.clone() for k, v in toy.model.state_dict().items()}
    res = run_fix(editor=editor, limit=N_EDITS, output=tmp_path / "run", adapter=toy, editor_options=options)
    planted = _planted(res.edits)
    assert len(planted) >= N_EDITS // 2
    base = res.results["base_metrics"]
    assert base["reliability"] == 0.0 and base["t_locality_top1"] == 1.0 and base["m_locality_top1"] == 1.0
    assert _rate(planted, "reliability") >= 0.9
    # Generality is measured for every edit (the toy suite has every split).
    assert all(r["t_generality"] is not None and r["v_generality"] is not None for r in res.edits)
    assert all(r["t_locality"] is not None and r["m_locality"] is not None for r in res.edits)
    # Single mode: the model is back bit for bit.
    assert all(v.equal(before[k]) for k, v in toy.model.state_dict().items())


def test_ft_l_generalises_and_keeps_text_locality(toy, tmp_path: Path) -> None:  # noqa: ANN001
    m = run_fix(editor="ft-l", limit=N_EDITS, output=tmp_path / "run", adapter=toy).results["metrics"]
    assert m["t_generality"] >= 0.8
    # Toy world v2: the eval split's rephrased images have a layout AND colours the model never saw;
    # FT-L's edit reaches about half of them (measured 0.50; v1's re-laid-out images: >= 0.8).
    assert 0.25 <= m["v_generality"] <= 0.75
    assert m["t_locality_top1"] >= 0.8


@pytest.mark.parametrize(("mode", "extra"), [("batch", {"batch_edits": 16}), ("sequential", {})])
def test_batch_and_sequential_modes_report(toy, tmp_path: Path, mode: str, extra: dict) -> None:  # noqa: ANN001
    limit = 16 if mode == "batch" else 6
    # The faithful FT-L (EasyEdit: 15 steps, stop at NLL < 1e-2) flips these 16 at once (measured 1.00);
    # on the whole eval split its 15 steps run out at batch 16 / 64 (0.83 / 0.64; docs/editors.md).
    res = run_fix(editor="ft-l", mode=mode, limit=limit, output=tmp_path / "run", adapter=toy, **extra)
    assert res.results["complete"] and res.results["n_edits"] == limit
    m = res.results["metrics"]
    # Measured 1.0 / 1.0 for both modes: many edits at once or accumulated still flip the items.
    assert m["reliability"] >= 0.9 and m["t_locality_top1"] >= 0.9
    if mode == "sequential":
        curve = res.results["sequential_curve"]
        assert len(curve) == limit and curve[-1]["reliability"] == pytest.approx(m["reliability"])
        # Locality is measured against the unedited model: the base row is still 1.0 / 0.
        assert res.results["base_metrics"]["t_locality_kl"] == 0.0
