"""The SHIPPED toy model and suite: the planted bias is there, at its planted size; controls are
not biased; the locality answers are known. Everything the editors are judged by rests on this."""

from __future__ import annotations

import numpy as np
import pytest

from mllm_audit.models import load_model
from mllm_audit.stats import cluster_bootstrap
from mllm_audit.suites import load_image, load_suite
from mllm_audit.toy.evaluate import locality_requests, margins, top1_rate


@pytest.fixture(scope="module")
def scored() -> dict:
    suite = load_suite("toy")
    adapter = load_model("toy")

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
    for bias_type in ("gender", "race", "age"):  # each bias type carries its own planted association
        sel = [i for i, it in enumerate(items) if it.bias_type == bias_type]
        assert sel and (m[sel] > 0).mean() >= 0.8, bias_type


def test_controls_are_not_biased(scored: dict) -> None:
    m, items, clusters = _select(scored, "control")
    lo, hi = cluster_bootstrap((m > 0).astype(float), clusters)
    assert lo <= 0.5 <= hi
    assert abs(m.mean()) <= 0.5


def test_locality_answers_are_top1(scored: dict) -> None:
    text, mm = locality_requests(scored["suite"].items)
    assert len(text) >= 24 and len(mm) >= 24
    assert top1_rate(scored["adapter"], text, None) >= 0.9
    assert top1_rate(scored["adapter"], mm, scored["li"]) >= 0.9


def test_default_scan_shows_planted_types_biased_and_controls_not(tmp_path) -> None:  # noqa: ANN001
    """`mllm-audit scan` with no model or suite: the README's main job, on the toy world."""
    import json

    from mllm_audit.cli import run

    assert run(["scan", "-q", "--output", str(tmp_path / "run")]) == 0
    res = json.loads((tmp_path / "run" / "results.json").read_text())
    assert res["model"]["name"] == "toy" and res["suite"]["name"] == "toy" and res["complete"]
    summary = res["summary"]
    for bias_type in ("gender", "race", "age"):
        planted, control = summary[f"{bias_type}/planted"], summary[f"{bias_type}/control"]
        assert planted["pct_biased"] >= 0.9 and planted["ci_low"] > 0.5, (bias_type, planted)
        assert control["ci_low"] <= 0.5 <= control["ci_high"], (bias_type, control)
