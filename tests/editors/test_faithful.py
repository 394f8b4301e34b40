"""The faithful editors do what their originals do (docs/editors.md), each checked against a control
that visibly fails the same check: the earlier variant, or the option turned off."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from mllm_audit.editors import make_editor
from mllm_audit.editors.base import EditContext, EditRequest
from mllm_audit.errors import AuditError
from mllm_audit.models import load_model
from mllm_audit.runs.fix import run_fix
from mllm_audit.runs.score import image_loader
from mllm_audit.suites.items import load_suite


@pytest.fixture(scope="module")
def toy():  # noqa: ANN201 - an Adapter
    return load_model("toy")


@pytest.fixture(scope="module")
def suite():  # noqa: ANN201 - a Suite
    return load_suite("toy")


def _planted_eval(suite, n: int) -> list:  # noqa: ANN001
    return [it for it in suite.items if it.split == "eval" and it.meta.get("planted")][:n]


def _req(it) -> EditRequest:  # noqa: ANN001
    return EditRequest(it.id, it.prompt, it.y_less, it.y_more, it.image, it.task, it.rephrase_prompt)


def test_layers_follow_the_card(toy) -> None:  # noqa: ANN001
    from mllm_audit.editors.layers import last_layers, whole_last_layer

    names = toy.module_names("text")  # layers.1.fc1 / fc2 of a 2-layer toy
    assert whole_last_layer(toy, names) == ["language_model.model.decoder.layers.1"]
    assert last_layers(toy, names, 3) == [
        "language_model.model.decoder.layers.0.fc1", "language_model.model.decoder.layers.1.fc1",
        "language_model.model.decoder.layers.0.fc2", "language_model.model.decoder.layers.1.fc2",
    ]


def test_ft_l_easyedit_tunes_the_whole_last_layer_and_stops_on_loss(toy, suite) -> None:  # noqa: ANN001
    ctx = EditContext(load_image=image_loader(suite))
    ed = make_editor("ft-l")
    h = ed.apply(toy, [_req(_planted_eval(suite, 1)[0])], ctx)
    try:
        touched = h.touched
    finally:
        h.restore()
    assert any("self_attn" in n for n in touched) and any("fc1" in n for n in touched)
    assert all(".layers.1." in n for n in touched)
    assert 1 <= ed.steps_taken <= 15  # EasyEdit's cap
    # The earlier variant touches the card's two MLP matrices only.
    old = make_editor("ft-l")
    h = old.apply(toy, [_req(_planted_eval(suite, 1)[0])], EditContext(load_image=ctx.load_image,
                                                                       options={"variant": "margin"}))
    try:
        assert sorted(h.touched) == sorted(f"{m}.{p}" for m in toy.module_names("text") for p in ("weight", "bias"))
    finally:
        h.restore()


def test_ft_norm_clamp_bounds_every_weight(toy, suite) -> None:  # noqa: ANN001
    load = image_loader(suite)
    req = [_req(_planted_eval(suite, 1)[0])]
    deltas = {}
    for eps in (1e-4, None):
        h = make_editor("ft-l").apply(toy, req, EditContext(load_image=load, options={"norm_constraint": eps,
                                                                                        "lr": 1e-3}))
        try:
            deltas[eps] = max(float(d.abs().max()) for d in h.delta().values())
        finally:
            h.restore()
    assert deltas[1e-4] <= 1e-4 + 1e-7
    assert deltas[None] > 1e-3  # the control: without the clamp the same edit moves weights 10x further


def test_ft_l_easyedit_removes_the_planted_bias(toy, tmp_path: Path) -> None:  # noqa: ANN001
    # Measured: 1.00 reliability on the first 16 biased eval items (15 steps at lr 2e-4 suffice on the toy).
    m = run_fix(editor="ft-l", limit=16, output=tmp_path / "run", adapter=toy).results["metrics"]
    assert m["reliability"] >= 0.9 and m["t_locality_top1"] >= 0.9


def test_ike_fills_the_context_window_and_retrieves_by_fact(toy, suite) -> None:  # noqa: ANN001
    from mllm_audit.scoring.contract import tokenize

    train = [it for it in suite.items if it.split == "train"]
    load = image_loader(suite)
    ed = make_editor("ike")
    item = _planted_eval(suite, 1)[0]
    h = ed.apply(toy, [_req(item)], EditContext(load_image=load, train_items=train))
    k_faithful = ed.last_k[0]
    asked = h.transform(__import__("mllm_audit.scoring.contract", fromlist=["Request"]).Request(
        item.prompt, item.y_less, item.image, item.task))
    prompt_ids, cont_ids = tokenize(toy, asked)
    assert 2 < k_faithful <= 32
    assert len(prompt_ids) + len(cont_ids) <= toy.max_positions
    old = make_editor("ike")
    old.apply(toy, [_req(item)], EditContext(load_image=load, train_items=train, options={"variant": "prompt"}))
    assert old.last_k == [2]  # the toy card's k applies to the earlier variant only
    with pytest.raises(AuditError, match="ike variant"):
        make_editor("ike").apply(toy, [_req(item)], EditContext(load_image=load, options={"variant": "x"}))


def test_mend_feature_norm_centres_and_scales_each_feature() -> None:
    from mllm_audit.editors.learned.mend import MendNet

    torch.manual_seed(0)
    shapes = {"a": (3, 5)}
    scale = torch.tensor([1, 10, 100, 0.1, 1, 1e-3, 1e-4, 1e-2])
    rows = (torch.randn(200, 8) + 5.0) * scale
    feat, rms = MendNet(shapes, 4, 1e-3, "feature"), MendNet(shapes, 4, 1e-3, "rms")
    for net in (feat, rms):
        net.train()
        net._standardise_features(0, rows, 5) if net.norm == "feature" else net._standardise(0, rows, 5)
        net.eval()
    z = feat._standardise_features(0, rows, 5)
    assert torch.allclose(z.mean(0), torch.zeros(8), atol=1e-4)
    assert torch.allclose(z.std(0), torch.ones(8), atol=1e-3)
    # The control (the earlier RMS scaling) leaves the means and the per-feature scales in place.
    zr = rms._standardise(0, rows, 5)
    assert float(zr.mean(0).abs().max()) > 0.5 and float(zr.std(0).max() / zr.std(0).min()) > 100


def test_mend_feature_norm_leaves_out_features_that_never_varied() -> None:
    """A ReLU unit dead on every training row has std 0; the first input that activated it was
    multiplied by 1e8 and MEND trained on one bias type of the toy went to NaN."""
    from mllm_audit.editors.learned.mend import MendNet

    torch.manual_seed(0)
    net = MendNet({"a": (3, 5)}, 4, 1e-3, "feature")
    rows = torch.randn(50, 8)
    rows[:, 2] = 0.0  # input feature 2: never active in training
    net.train()
    net._standardise_features(0, rows, 5)
    net.eval()
    probe = torch.randn(1, 8)
    probe[0, 2] = 1.0
    z = net._standardise_features(0, probe, 5)
    assert float(z.abs().max()) < 10 and float(z[0, 2]) == 0.0
    kept = [0, 1, 3, 4, 5, 6, 7]  # every other feature is standardised as before
    want = (probe - rows.mean(0)) / rows.std(0)
    torch.testing.assert_close(z[0, kept], want[0, kept], atol=1e-3, rtol=1e-3)


def test_ke_lagrange_multiplier_rises_only_while_kl_exceeds_the_margin(toy) -> None:  # noqa: ANN001
    ke = make_editor("ke")
    ke.setup(toy)
    assert ke.hp["variant"] == "decao" and ke.hp["conditioner"] == "bilstm"
    net = ke.require_net()
    assert ke.kl_margin() == pytest.approx(0.1)
    net.anneal_step.fill_(300)
    assert ke.kl_margin() == pytest.approx(1e-3)
    for kl, rises in ((1.0, True), (0.0, False)):
        net.lag_raw.data.fill_(math.log(math.e - 1))
        net.lag_raw.grad = None
        term = ke.locality_term(torch.tensor(kl))
        assert float(term.detach()) == pytest.approx(1.0 * (kl - 1e-3), abs=1e-6)  # lambda = 1 at the start
        term.backward()
        with torch.no_grad():
            net.lag_raw -= 0.1 * net.lag_raw.grad  # a descent step on the total loss
        assert (float(net.lag_raw.detach()) > math.log(math.e - 1)) == rises
    # The earlier variant: a fixed penalty, no multiplier.
    old = make_editor("ke")
    old.setup(toy, {"variant": "margin"})
    assert float(old.locality_term(torch.tensor(0.5))) == pytest.approx(0.5)


def test_serac_soft_routing_mixes_and_hard_routing_does_not(toy, suite) -> None:  # noqa: ANN001
    from mllm_audit.scoring.contract import Request, next_token_logprobs

    load = image_loader(suite)
    item = _planted_eval(suite, 1)[0]
    torch.manual_seed(0)
    ed = make_editor("serac")
    ed.setup(toy)  # untrained: the mixing arithmetic does not depend on training
    with torch.no_grad():
        ed.require_net().lora_b[0].normal_(0, 0.5)  # a counterfactual model that differs from the base
    reqs = [Request(item.prompt, item.y_less, item.image, item.task), Request(item.loc_prompt, item.loc_answer,
                                                                             None, None)]
    soft = ed.apply(toy, [_req(item)], EditContext(load_image=load, options={"routing": "soft"}))
    got = soft.score(reqs, load, 8)
    s = soft.weights
    base = next_token_logprobs(toy, reqs, load, batch_size=8)
    cf = ed.cf_model(toy)
    with ed.counterfactual(toy):
        alt = next_token_logprobs(cf, [ed.cf_request(cf, _req(item), r) for r in reqs], load, batch_size=8)
    eps = torch.finfo(torch.float32).eps
    for i in range(2):
        want = torch.log((1 - s[i]) * base[i].exp() + s[i] * alt[i].exp() + eps)
        torch.testing.assert_close(got[i], want, atol=1e-5, rtol=1e-5)
    assert 0 < s[1] < 1 and not torch.allclose(got[1], base[1], atol=1e-4)  # soft moves even out-of-scope
    hard = ed.apply(toy, [_req(item)], EditContext(load_image=load, options={"routing": "hard"}))
    got_h = hard.score(reqs, load, 8)
    for i, inside in enumerate(hard.routed):
        if not inside:
            torch.testing.assert_close(got_h[i], base[i])  # hard leaves out-of-scope inputs exactly as they were
    assert not all(hard.routed)
    with pytest.raises(AuditError, match="serac-routing"):
        ed.apply(toy, [_req(item)], EditContext(load_image=load, options={"routing": "both"}))


def test_serac_easyedit_protocol_follows_the_routing(toy, suite) -> None:  # noqa: ANN001
    """`full_score` (the easyedit locality protocol) mixes softly under soft routing; it used to route hard."""
    from mllm_audit.scoring.contract import Request
    from mllm_audit.scoring.differentiable import all_position_logprobs

    load = image_loader(suite)
    item = _planted_eval(suite, 1)[0]
    torch.manual_seed(0)
    ed = make_editor("serac")
    ed.setup(toy)
    with torch.no_grad():
        ed.require_net().lora_b[0].normal_(0, 0.5)
    reqs = [Request(item.prompt, item.y_less, item.image, item.task),
            Request(item.loc_prompt, item.loc_answer, None, None)]
    base = all_position_logprobs(toy, reqs, load, 8)
    soft = ed.apply(toy, [_req(item)], EditContext(load_image=load, options={"routing": "soft"}))
    soft.score(reqs, load, 8)  # the scope scores s of these requests
    s = soft.weights
    got = soft.full_score(reqs, load, 8)
    cf = ed.cf_model(toy)
    with ed.counterfactual(toy):
        alt = all_position_logprobs(cf, [ed.cf_request(cf, _req(item), r) for r in reqs], load, 8)
    eps = torch.finfo(torch.float32).eps
    for i in range(2):
        (b, n_img), (a, _) = base[i], alt[i]
        assert got[i][1] == n_img and got[i][0].shape == b.shape
        a = torch.cat([a[:n_img], a[a.shape[0] - (b.shape[0] - n_img):]])
        torch.testing.assert_close(got[i][0], torch.log((1 - s[i]) * b.exp() + s[i] * a.exp() + eps),
                                   atol=1e-5, rtol=1e-5)
    assert 0 < s[1] < 1 and not torch.allclose(got[1][0], base[1][0], atol=1e-4)  # out of scope, still moved
    hard = ed.apply(toy, [_req(item)], EditContext(load_image=load, options={"routing": "hard"}))
    got_h = hard.full_score(reqs, load, 8)
    hard.score(reqs, load, 8)
    assert not hard.routed[1]
    torch.testing.assert_close(got_h[1][0], base[1][0])  # hard: out-of-scope exactly as the base model
