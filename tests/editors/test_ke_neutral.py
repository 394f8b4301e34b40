"""KE under `neutral` (editors/learned/ke.py, `KE.unseen_pairs`): the meta-loss also scores the edited
prompt on a second train image of the other group that the edit never sees.

Without it, trained KE balanced the partner image it was given (val |margin| 0.4) and left the other
group's unseen images biased: on toy v3, `balanced` 0.05 [0.00, 0.12] over its untrained start (41
planted edits). With it: tests/toy/test_v3.py::test_trained_neutral_states_beat_their_untrained_start_on_balance.
"""

from __future__ import annotations

import pytest

from mllm_audit.editors import make_editor
from mllm_audit.editors.learned.objective import Data, edit_request
from mllm_audit.editors.learned.objectives import objective_requests
from mllm_audit.models import load_model
from mllm_audit.runs.score import image_loader
from mllm_audit.suites.items import load_suite


@pytest.fixture(scope="module")
def world():  # noqa: ANN201 - (adapter, suite)
    return load_model("toy-v3"), load_suite("toy")


def _ke(adapter, suite, objective: str):  # noqa: ANN001, ANN202
    ke = make_editor("ke")
    ke.setup(adapter, {"objective": objective})
    ke.partner_pool = suite.select(split="train")
    return ke


def test_neutral_scores_an_other_group_train_image_the_edit_does_not_see(world) -> None:  # noqa: ANN001
    adapter, suite = world
    mirrors = {m["image"] for it in suite.items for m in it.meta["mirrors"]}
    train_images = {it.image: it for it in suite.select(split="train")}
    ke = _ke(adapter, suite, "neutral")
    items = [it for it in suite.select(split="train") if it.meta.get("planted")][:8]
    for it in items:
        reqs = objective_requests(ke, [edit_request(it)], {it.id: it})
        (pair,) = ke.unseen_pairs(it, reqs)
        img = pair[0].image
        assert img in train_images and img not in mirrors, img
        assert img not in {r.image for r in reqs}  # neither the edited image nor the partner's
        assert train_images[img].meta["group"] != it.meta["group"]
        assert train_images[img].meta["scenario"] == it.meta["scenario"]
        # scored like the partner: the edited prompt, the answers as they are (only |margin| counts)
        assert (pair[0].prompt, pair[0].continuation, pair[1].continuation) == (it.prompt, it.y_more, it.y_less)
    # Negative controls: flip and paired add nothing (their meta-loss is what it was), nor does MEND.
    for objective in ("flip", "paired"):
        it = items[0]
        other = _ke(adapter, suite, objective)
        assert other.unseen_pairs(it, objective_requests(other, [edit_request(it)], {it.id: it})) == []
    mend = make_editor("mend")
    mend.setup(adapter, {"objective": "neutral"})
    mend.partner_pool = suite.select(split="train")
    it = items[0]
    assert mend.unseen_pairs(it, objective_requests(mend, [edit_request(it)], {it.id: it})) == []


def test_the_unseen_image_enters_the_neutral_meta_loss(world, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    adapter, suite = world
    ke = _ke(adapter, suite, "neutral")
    data = Data(adapter, image_loader(suite))
    it = [it for it in suite.select(split="train") if it.meta.get("planted")][0]
    ke.require_net().eval()
    with_unseen = float(ke.train_loss(adapter, [it], data)[0].detach())
    monkeypatch.setattr(type(ke), "unseen_pairs", lambda self, item, reqs: [])
    without = float(ke.train_loss(adapter, [it], data)[0].detach())
    assert abs(with_unseen - without) > 1e-3, (with_unseen, without)
