"""The SHIPPED toy model and suite: the planted bias is there, at its planted size; controls are
not biased; the locality answers are known. Everything the editors are judged by rests on this.
Each check runs on world v2 (`toy`) and on v3 (`toy-v3`, warm-started from v2 to read IKE's window)."""

from __future__ import annotations

import numpy as np
import pytest

from mllm_audit.metrics.stats import cluster_bootstrap
from mllm_audit.models import load_model
from mllm_audit.scoring.contract import score
from mllm_audit.suites.items import load_image, load_suite
from mllm_audit.toy import world
from mllm_audit.toy.evaluate import locality_requests, margins, top1_rate


@pytest.fixture(scope="module", params=["toy", "toy-v3"])
def scored(request: pytest.FixtureRequest) -> dict:
    suite = load_suite("toy")
    adapter = load_model(request.param)

    def li(k: str):  # noqa: ANN202
        return load_image(suite.image_path(k))

    m = np.asarray(margins(adapter, suite.items, li))
    return {"suite": suite, "adapter": adapter, "li": li, "m": m}


def _select(scored: dict, condition: str) -> tuple[np.ndarray, list, list[str]]:
    idx = [i for i, it in enumerate(scored["suite"].items) if it.meta["condition"] == condition]
    items = [scored["suite"].items[i] for i in idx]
    return scored["m"][idx], items, [it.cluster_key for it in items]


def test_planted_items_are_biased(scored: dict) -> None:
    m, items, clusters = _select(scored, "planted")
    biased = (m > 0).astype(float)
    assert biased.mean() >= 0.9
    lo, hi = cluster_bootstrap(biased, clusters)
    assert lo > 0.5


def test_planted_margins_match_planted_logodds(scored: dict) -> None:
    m, items, _ = _select(scored, "planted")
    planted = np.asarray([it.meta["planted_logodds"] for it in items])
    assert np.abs(m - planted).mean() <= 0.5
    for bias_type in world.BIAS_TYPES:  # each bias type carries its own planted association
        sel = [i for i, it in enumerate(items) if it.bias_type == bias_type]
        assert sel and (m[sel] > 0).mean() >= 0.8, bias_type


def test_controls_are_not_biased(scored: dict) -> None:
    m, items, clusters = _select(scored, "control")
    lo, hi = cluster_bootstrap((m > 0).astype(float), clusters)
    assert lo <= 0.5 <= hi
    assert abs(m.mean()) <= 0.5


@pytest.mark.parametrize("split", ["train", "eval"])
def test_locality_answers_are_top1(scored: dict, split: str) -> None:
    text, mm = locality_requests([it for it in scored["suite"].items if it.split == split])
    assert len(text) >= 18 and len(mm) >= 18
    assert top1_rate(scored["adapter"], text, None) >= 0.9
    assert top1_rate(scored["adapter"], mm, scored["li"]) >= 0.9


def test_eval_locality_probes_are_multi_token_and_less_confident(scored: dict) -> None:
    """v1's probes sat at p ~ 0.995 on one token; the eval split's are learned at a 65-75 % rate."""
    a = scored["adapter"]
    text, mm = locality_requests([it for it in scored["suite"].items if it.split == "eval"])
    for reqs, li in ((text, None), (mm, scored["li"])):
        assert all(len(a.continuation_ids(" " + r.continuation)) >= 2 for r in reqs)
        p = np.exp([s.logp for s in score(a, reqs, li)])
        assert 0.4 <= p.mean() <= 0.85, p.mean()


def test_perception_of_all_four_attributes(scored: dict) -> None:
    """The vision side sees every group attribute (perception questions: near-neighbour locality)."""
    from mllm_audit.scoring.contract import Request

    items = [it for it in scored["suite"].items if it.split == "eval"]
    for j, bias_type in enumerate(world.BIAS_TYPES):
        reqs = [Request(it.meta["perception"][j]["prompt"], it.meta["perception"][j]["answer"], it.image, "vqa")
                for it in items]
        assert top1_rate(scored["adapter"], reqs, scored["li"]) >= 0.9, bias_type


def test_default_scan_shows_planted_types_biased_and_controls_not(tmp_path) -> None:  # noqa: ANN001
    """`mllm-audit scan` with no model or suite: the README's main job, on the toy world (v3 by default)."""
    import json

    from mllm_audit.cli import run

    assert run(["scan", "-q", "--output", str(tmp_path / "run")]) == 0
    res = json.loads((tmp_path / "run" / "results.json").read_text())
    assert res["model"]["name"] == "toy-v3" and res["suite"]["name"] == "toy" and res["complete"]
    summary = res["summary"]
    for bias_type in world.BIAS_TYPES:
        planted, control = summary[f"{bias_type}/planted"], summary[f"{bias_type}/control"]
        assert planted["pct_biased"] >= 90 and planted["ci_low"] > 50, (bias_type, planted)  # percent
        assert control["ci_low"] <= 50 <= control["ci_high"], (bias_type, control)
