"""Learned editors on the toy world: trained on the train split, judged on held-out eval items."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from mllm_audit.models import load_model
from mllm_audit.runs.fix import run_fix
from mllm_audit.runs.train_editor import train_editor
from mllm_audit.suites.items import load_suite
from mllm_audit.toy.evaluate import write_untrained_state

# The bar each trained editor passes and its untrained (initial) state must fail: (metric, min).
# Faithful editors on toy world v2, the first 24 biased eval edits (16 planted), measured with
# benchmarks/editor_table.py's rows:
# - MEND: Reliability 1.00 trained and untrained (an identity-initialised MEND with per-feature
#   normalisation is already a large normalised gradient step); what meta-training buys is
#   multimodal locality, easyedit M-Loc (top-10 over all positions) 0.53 vs 0.34 untrained,
#   paid for with V-Gen on the unseen images (0.67 vs 0.92).
#   Meta-training is sensitive to float rounding (a head computed over fewer positions, issue 29, moved
#   seed 0 from 0.53 to 0.41): over seeds 0-3 the trained easyedit M-Loc is 0.41 / 0.57 / 0.51 / 0.46
#   against 0.35 untrained, so the bar sits between the two (0.38), not at a single seed's value.
# - KE: Reliability 1.00 / V-Gen 0.67 vs 0.79 / 0.25 untrained (a gated, normalised gradient step).
# - SERAC: Reliability 1.00 vs 0.00 (nothing routed in scope by the untrained classifier).
BARS = {
    "mend": (("reliability", 0.9), ("m_loc_easyedit", 0.38)),
    "ke": (("reliability", 0.9), ("v_generality", 0.5)),
    "serac": (("reliability", 0.9), ("t_loc", 0.9)),
}


def _rates(records: list[dict]) -> dict[str, float]:
    planted = [r for r in records if r["meta"].get("planted")]
    return {
        "reliability": sum(r["reliability"] for r in planted) / len(planted),
        "v_generality": sum(r["v_generality"] for r in planted) / len(planted),
        "t_loc": sum(r["t_locality"]["top1"] for r in planted) / len(planted),
        "m_loc_easyedit": sum(r["m_locality_easyedit"]["top10"] for r in planted) / len(planted),
    }


@pytest.fixture(scope="module")
def toy():  # noqa: ANN201 - an Adapter
    return load_model("toy")


@pytest.mark.slow
@pytest.mark.parametrize("editor", ["mend", "serac", "ke"])
def test_learned_editor_on_held_out_planted_items(toy, editor: str, tmp_path: Path) -> None:  # noqa: ANN001
    state = tmp_path / editor
    train_editor(editor, output=state, adapter=toy, threads=None)
    res = run_fix(editor=editor, editor_state=state, limit=24, output=tmp_path / "run", adapter=toy)
    # Edited items come from the eval split, never from the train split the editor learned on.
    eval_ids = {it.id for it in load_suite("toy").items if it.split == "eval"}
    assert {r["item_id"] for r in res.edits} <= eval_ids
    planted = [r for r in res.edits if r["meta"].get("planted")]
    assert len(planted) >= 12
    trained = _rates(res.edits)
    # Negative control (issue 17): the untrained state on the same items must fail the same bar.
    ctl_state = write_untrained_state(editor, toy, tmp_path / f"{editor}-untrained")
    ctl = _rates(run_fix(editor=editor, editor_state=ctl_state, limit=24, output=tmp_path / "ctl", adapter=toy).edits)
    assert all(trained[k] >= bar for k, bar in BARS[editor]), (editor, trained)
    assert not all(ctl[k] >= bar for k, bar in BARS[editor]), (editor, ctl)


SHIPPED = Path(__file__).resolve().parents[2] / "adapters" / "toy-editors"


def test_fix_uses_the_toy_cards_shipped_state(toy, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    """`fix --editor mend` on the toy works as typed: the card names a state; --editor-state wins."""
    from mllm_audit.cli import run
    from mllm_audit.util.identity import model_digest

    res = run_fix(editor="mend", limit=2, output=tmp_path / "shipped", adapter=toy)
    assert res.results["complete"]
    used = json.loads((tmp_path / "shipped" / "results.json").read_text())
    digest = model_digest(SHIPPED / "mend")[0]  # type: ignore[index]
    assert digest in json.dumps(used)
    given = write_untrained_state("mend", toy, tmp_path / "given")
    res2 = run_fix(editor="mend", limit=2, editor_state=given, output=tmp_path / "given-run", adapter=toy)
    assert digest not in json.dumps(res2.results)
    # The command line (no adapter passed in: the state is read from the card before loading).
    argv = ["fix", "--model", "toy", "--editor", "ke", "--limit", "1", "--quiet", "--output", str(tmp_path / "cli")]
    assert run(argv) == 0
    assert model_digest(SHIPPED / "ke")[0] in (tmp_path / "cli" / "results.json").read_text()  # type: ignore[index]


def test_no_state_named_means_the_old_error(toy, tmp_path: Path) -> None:  # noqa: ANN001
    from mllm_audit.editors.states import shipped_state
    from mllm_audit.errors import AuditError

    card = toy.card
    assert shipped_state(card, "mend", None) == SHIPPED / "mend"
    assert shipped_state(card, "mend", "vision") is None  # none shipped for the vision side
    with pytest.raises(AuditError, match="needs a trained state"):
        run_fix(editor="mend", scope="vision", limit=1, output=tmp_path / "v", adapter=toy)
    # a card copied elsewhere (fix --save) keeps the entry, not the folder: no state
    moved = replace(card, path=tmp_path / "toy.yaml")
    assert shipped_state(moved, "mend", None) is None


@pytest.mark.slow
@pytest.mark.parametrize("editor", ["mend", "ke", "serac"])
def test_shipped_toy_states_pass_the_bars(toy, editor: str, tmp_path: Path) -> None:  # noqa: ANN001
    """The states under adapters/toy-editors (scripts/train_toy_editors.py) pass the same bars."""
    got = _rates(run_fix(editor=editor, limit=24, output=tmp_path / "run", adapter=toy).edits)
    assert all(got[k] >= bar for k, bar in BARS[editor]), (editor, got)
