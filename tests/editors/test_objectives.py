"""Edit objectives (editors/objectives.py): paired edits stop moving the stereotype onto the other group.

Measured on the toy (planted eval items, FT-L easyedit, 12 edits): flip mirror_amplified 1.00,
paired 0.00 (paired interval of the difference excludes 0); neutral keeps both margins near 0
(balanced up, Reliability down: Reliability rewards the overshoot).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mllm_audit.editors.base import EditRequest
from mllm_audit.editors.objectives import edit_loss, expand, partner
from mllm_audit.errors import AuditError
from mllm_audit.models import load_model
from mllm_audit.report.compare_edits import compare_edit_runs
from mllm_audit.runs.fix import run_fix
from mllm_audit.suites.items import load_suite

N_EDITS = 12


@pytest.fixture(scope="module")
def toy():  # noqa: ANN201 - an Adapter
    return load_model("toy")


@pytest.fixture(scope="module")
def runs(toy, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:  # noqa: ANN001
    out = tmp_path_factory.mktemp("objectives")
    for obj in ("flip", "paired", "neutral"):
        run_fix(editor="ft-l", limit=N_EDITS, output=out / obj, adapter=toy, objective=obj)
    return {o: out / o for o in ("flip", "paired", "neutral")}


def test_partners_come_from_train_never_from_eval_mirrors() -> None:
    suite = load_suite("toy")
    train = suite.select(split="train")
    evals = [it for it in suite.items if it.split == "eval" and it.meta.get("planted")]
    eval_images = {it.image for it in suite.items if it.split != "train"}
    mirrors = {m["image"] for it in suite.items for m in it.meta["mirrors"]}
    for it in evals:
        req = EditRequest(it.id, it.prompt, it.y_less, it.y_more, it.image, it.task)
        p = partner(it, req, train)
        assert p is not None and p.split == "train" and p.task == it.task
        assert p.meta["scenario"] == it.meta["scenario"] and p.meta["group"] != it.meta["group"]
        assert p.image not in mirrors and p.image not in eval_images
        assert partner(it, req, train) is p  # deterministic
    # paired asks the edited prompt on the partner image with the answers reversed; flip adds nothing
    it = evals[0]
    req = EditRequest(it.id, it.prompt, it.y_less, it.y_more, it.image, it.task)
    flip, (_, pr) = expand([req], "flip", train, {it.id: it}), expand([req], "paired", train, {it.id: it})
    assert flip == [req] and (pr.prompt, pr.target, pr.avoid) == (it.prompt, it.y_more, it.y_less)
    with pytest.raises(AuditError, match="no train-split image of the other group"):
        expand([req], "paired", [], {it.id: it})


def test_neutral_loss_is_zero_at_balance_and_rises_past_it() -> None:
    import torch

    lp_t, lp_a, n = torch.tensor([-1.0, -3.0, -1.0]), torch.tensor([-1.0, -1.0, -3.0]), torch.ones(3)
    neutral = edit_loss("neutral", lp_t, n, lp_a)
    assert neutral.tolist() == [0.0, 4.0, 4.0]  # overshooting by 2 nats costs as much as being 2 nats biased
    assert edit_loss("flip", lp_t, n, None).tolist() == [1.0, 3.0, 1.0]  # flip keeps rewarding the overshoot


def test_paired_lowers_mirror_amplification_for_ft_l(runs: dict[str, Path]) -> None:
    cmp = compare_edit_runs(runs["flip"], runs["paired"])
    amp = cmp.rows["mirror_amplified"]
    assert amp.mean_a >= 0.9 and amp.mean_b <= 0.3, amp
    assert amp.ci_high < 0 and amp.p_value < 0.05  # the paired interval excludes 0
    assert cmp.rows["reliability"].mean_b >= 0.9  # still fixes the edited items
    # Negative control: flip against itself differs by nothing.
    same = compare_edit_runs(runs["flip"], runs["flip"]).rows["mirror_amplified"]
    assert same.diff == 0 and same.ci_low == 0 == same.ci_high and same.p_value == 1.0


def test_neutral_balances_where_flip_overshoots(runs: dict[str, Path]) -> None:
    cmp = compare_edit_runs(runs["flip"], runs["neutral"])
    bal, rel = cmp.rows["balanced"], cmp.rows["reliability"]
    assert bal.mean_a <= 0.1 and bal.mean_b >= 0.4 and bal.ci_low > 0, bal
    assert rel.mean_a == 1.0 and rel.mean_b < 0.5  # Reliability reads balance as failure: why `balanced` exists


def test_learned_state_refuses_another_objective(toy, tmp_path: Path) -> None:  # noqa: ANN001
    with pytest.raises(AuditError, match="trained under objective 'flip', not 'paired'"):
        run_fix(editor="mend", limit=1, output=tmp_path / "r", adapter=toy, objective="paired")
    assert not (tmp_path / "r").exists()  # refused before the run folder is written
    with pytest.raises(AuditError, match="applies to ft-l, ft-v, mend, ke"):
        run_fix(editor="ike", limit=1, output=tmp_path / "r", adapter=toy, objective="paired")
