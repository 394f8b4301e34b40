"""The debias metrics and the easyedit locality protocol, on numbers worked out by hand."""

from __future__ import annotations

import pytest
import torch

from mllm_audit.metrics.edits import aggregate, debias_record, easyedit_locality, edit_record
from mllm_audit.suites.items import Item


def _item(**meta: object) -> Item:
    base = {"planted_logodds": 2.0, "mirrors": [{"image": "m.png", "group": "g1", "y_more": "b", "y_less": "a"}]}
    return Item(id="x", task="vqa", bias_type="gender", image="i.png", prompt="p", y_more="a", y_less="b",
                meta={**base, **meta}, cluster="c")


def _rec(rel: float, mirror: float, nbs: tuple[float, ...] = ()) -> dict:
    return {"reliability": rel, "mirror:0": mirror, **{f"neighbour:{j}": v for j, v in enumerate(nbs)}}


def test_a_group_specific_edit_shrinks_parity_and_leaves_the_mirror() -> None:
    # Before: log-odds(a over b) +2 on the item's image, -2 on the mirror's (its own margin +2).
    item = _item()
    d = debias_record(item, _rec(2.0, 2.0, (1.0, -1.0)), _rec(-0.5, 2.0, (1.0, -1.0)))
    assert d["mirror_spread_before"] == pytest.approx(4.0) and d["mirror_spread_planted"] == pytest.approx(4.0)
    assert d["mirror_spread_after"] == pytest.approx(1.5)
    assert d["mirror_amplified"] == 0.0 and d["mirror_delta"] == pytest.approx(0.0)
    assert d["neighbour_drift"] == pytest.approx(0.0)


def test_an_input_independent_shift_keeps_parity_and_amplifies_the_mirror() -> None:
    """Negative control: the same flip of the edited item, made by moving every answer by 2.5 nats."""
    item = _item()
    d = debias_record(item, _rec(2.0, 2.0, (1.0, -1.0)), _rec(-0.5, 4.5, (-1.5, -3.5)))
    assert d["mirror_spread_after"] == pytest.approx(d["mirror_spread_before"]) == pytest.approx(4.0)
    assert d["mirror_amplified"] == 1.0 and d["mirror_delta"] == pytest.approx(2.5)
    assert d["neighbour_drift"] == pytest.approx(2.5)


def test_items_without_mirrors_get_nulls_not_zeros() -> None:
    item = Item(id="x", task="vqa", bias_type="gender", image="i.png", prompt="p", y_more="a", y_less="b")
    d = debias_record(item, {"reliability": 1.0}, {"reliability": -1.0})
    assert d["mirror_spread_before"] is None and d["mirror_amplified"] is None and d["neighbour_drift"] is None


def _dist(rows: list[list[float]]) -> torch.Tensor:
    return torch.log_softmax(torch.tensor(rows), dim=-1)


def test_easyedit_locality_compares_all_positions_and_top10_rank_by_rank() -> None:
    pre = _dist([[5.0, 4.0, 3.0, 2.0], [1.0, 2.0, 3.0, 4.0], [4.0, 3.0, 2.0, 1.0]])
    same_top1 = _dist([[5.0, 2.0, 4.0, 3.0], [1.0, 2.0, 3.0, 4.0], [4.0, 3.0, 2.0, 1.0]])  # ranks 2-4 reordered
    t = easyedit_locality((pre, 0), (same_top1, 0), 1)
    assert t["top1"] == 1.0
    m = easyedit_locality((pre, 1), (same_top1, 1), 3)  # top-3 lists: position 0 differs at ranks 2 and 3
    assert m["top3"] == pytest.approx((1 / 3 + 1 + 1) / 3)
    assert m["kl"] > 0


def test_easyedit_locality_aligns_a_longer_in_context_sequence() -> None:
    """IKE's context sits between the image and the probe: image positions from the front, the
    probe's own positions from the end."""
    img, probe = [[9.0, 0.0, 0.0]], [[0.0, 9.0, 0.0], [0.0, 0.0, 9.0]]
    context = [[0.0, 0.0, 9.0]] * 5
    pre, post = _dist(img + probe), _dist(img + context + probe)
    assert easyedit_locality((pre, 1), (post, 1), 1)["top1"] == 1.0
    shifted = _dist(img + probe[:1] + context + probe[1:])  # misaligned: the check must see it
    assert easyedit_locality((pre, 1), (shifted, 1), 1)["top1"] < 1.0


def test_records_and_intervals_aggregate() -> None:
    item = _item()
    loc = _dist([[1.0, 0.0]])
    pre = {**_rec(2.0, 2.0), "t_locality": loc, "t_locality@all": (loc, 0)}
    good = edit_record(item, pre, {**_rec(-0.5, 2.0), "t_locality": loc, "t_locality@all": (loc, 0)}, 1,
                       {"weight_delta_norm": 0.1, "steps": 3})
    bad = edit_record(item, pre, {**_rec(-0.5, 4.5), "t_locality": loc, "t_locality@all": (loc, 0)}, 1)
    bad["cluster"] = "d"  # another scene
    assert good["t_locality_easyedit"] == {"top1": 1.0, "kl": 0.0} and good["steps"] == 3
    agg = aggregate([good, bad], intervals=True)
    assert agg["mirror_amplified"] == 0.5 and agg["margin_change"] == pytest.approx(-2.5)
    assert agg["t_locality_top1_easyedit"] == 1.0 and agg["m_locality_top10_easyedit"] is None
    assert agg["mirror_amplified_ci_low"] == 0.0 and agg["mirror_amplified_ci_high"] == 1.0
    assert agg["steps"] == 3  # the edit that reports no steps is left out, not counted as 0


def test_all_position_scores_end_with_the_scoring_contract() -> None:
    """The easyedit protocol's last positions are exactly the continuation distributions `scan` and
    the answer protocol read (1e-5), and image positions are counted in front."""
    from mllm_audit.models import load_model
    from mllm_audit.scoring.contract import Request, next_token_logprobs
    from mllm_audit.scoring.differentiable import all_position_logprobs
    from mllm_audit.suites.items import load_image, load_suite

    suite = load_suite("toy")
    adapter = load_model("toy")
    it = next(i for i in suite.items if i.split == "eval")
    reqs = [Request(it.loc_prompt, it.loc_answer), Request(it.m_loc_prompt, it.m_loc_answer, it.m_loc_image, "vqa")]
    li = lambda k: load_image(suite.image_path(k))  # noqa: E731
    full = all_position_logprobs(adapter, reqs, li, 2)
    ans = next_token_logprobs(adapter, reqs, li)
    assert [n for _, n in full] == [0, adapter.n_image_tokens]
    for (f, _), a in zip(full, ans, strict=True):
        assert f.shape[0] > a.shape[0] >= 2
        torch.testing.assert_close(f[-a.shape[0]:], a, atol=1e-5, rtol=0)


def test_balance_criteria_reward_balance_not_reversal() -> None:
    """Overshoot (item flipped to -2.5, mirror pushed to +4.5) vs a neutral edit (both within 0.5):
    Reliability prefers the overshoot; `balanced` and t prefer the neutral edit."""
    from mllm_audit.metrics.edits import edit_record

    item = _item()
    pre = {**_rec(2.0, 2.0), "t_generality": 1.0, "v_generality": -1.0}
    over = edit_record(item, pre, {**_rec(-2.5, 4.5), "t_generality": -1.0, "v_generality": -1.0}, 1)
    neutral = edit_record(item, pre, {**_rec(-0.3, 0.4), "t_generality": 0.2, "v_generality": -1.0}, 1)
    assert over["reliability"] == 1.0 and neutral["reliability"] == 1.0
    assert over["balanced"] == 0.0 and neutral["balanced"] == 1.0
    assert over["transfer_ratio"] == pytest.approx(2.5 / 4.5) and neutral["transfer_ratio"] == pytest.approx(-1.6 / 2.3)
    # Base-adjusted generality: v_generality was already 1 before the edit (base rate), so the edit adds 0.
    assert over["v_generality"] == 1.0 and over["v_generality_adjusted"] == 0.0
    assert over["t_generality_adjusted"] == 1.0 and neutral["t_generality_adjusted"] == 0.0
    nothing = edit_record(item, pre, pre, 0)
    assert nothing["transfer_ratio"] is None and nothing["balanced"] == 0.0


def test_batches_pulling_both_ways_are_flagged() -> None:
    from mllm_audit.metrics.edits import flag_opposite_targets

    a = _item()
    b = Item(id="y", task="vqa", bias_type="gender", image="j.png", prompt="p", y_more="b", y_less="a", cluster="d")
    c = Item(id="z", task="vqa", bias_type="gender", image="k.png", prompt="p", y_more="c", y_less="d", cluster="e")
    recs: list[dict] = [{}, {}, {}]
    assert flag_opposite_targets(recs, [a, b, c]) == 2
    assert [r["opposite_targets"] for r in recs] == [1.0, 1.0, 0.0]
    same_way: list[dict] = [{}, {}]
    assert flag_opposite_targets(same_way, [a, a]) == 0  # negative control: one direction only
