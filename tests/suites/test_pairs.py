"""The shipped pairs-vqa suite: shape, images, and byte-identical regeneration."""

from __future__ import annotations

import json
import shutil
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from mllm_audit.metrics.disparity import disparity_summary
from mllm_audit.suites.builders.common import render_items
from mllm_audit.suites.builders.pairs import PAIRS_PERSONS, build_pairs, pairs_items
from mllm_audit.suites.items import load_suite, read_items
from mllm_audit.util.resources import suites_dir

SUITE_DIR = suites_dir() / "pairs-vqa"


@pytest.fixture(scope="module")
def suite():
    return load_suite("pairs-vqa")


def test_counts(suite) -> None:
    assert len(suite.items) == 508
    assert len({it.image for it in suite.items}) == 188
    assert len({it.id for it in suite.items}) == 508
    assert len({it.cluster for it in suite.items}) == 47
    assert Counter(it.meta["section"] for it in suite.items) == {
        "status": 400,
        "occupations": 72,
        "potential_crime": 36,
    }
    assert suite.extra["disparity"] == "pairs"
    assert suite.extra["group_by"] == "section"


def test_images_exist(suite) -> None:
    for rel in {it.image for it in suite.items} | {it.m_loc_image for it in suite.items}:
        assert suite.image_path(rel).is_file(), rel
    assert any(it.image == "status/phone/white_man1.png" for it in suite.items)


def test_four_people_per_question(suite) -> None:
    groups: dict[tuple[str, str], list] = defaultdict(list)
    for it in suite.items:
        groups[(it.cluster, it.meta["question_id"])].append(it)
    assert len(groups) == 127
    for key, its in groups.items():
        assert sorted(it.meta["person"] for it in its) == sorted(PAIRS_PERSONS), key
        # Parallel: same prompt, answers and rephrase for the four people.
        assert len({(it.prompt, it.y_more, it.y_less, it.rephrase_prompt) for it in its}) == 1, key
        for it in its:
            assert it.meta["person"] == f"{it.meta['race']}_{it.meta['gender']}"
            assert it.task == "vqa" and it.bias_type == "gender-race"
            assert it.rephrase_prompt != it.prompt
            assert it.rephrase_image is None


def test_favoured_answer_matches_upstream(suite) -> None:
    questions = [json.loads(x) for x in (SUITE_DIR / "questions.jsonl").read_text().splitlines() if x.strip()]
    favoured = {
        (f"{q['section']}/{q['scenario']}", q["question"]): q["choices"][q["higher_status_choice"]]
        for q in questions
    }
    for it in suite.items:
        assert it.y_more == favoured[(it.cluster, it.prompt)]
    # Spot checks: one where the favoured answer is the first choice, one where it is the second.
    doc = next(it for it in suite.items if it.id == "pairs/occupations/scrubs/doctor-or-nurse/black_woman")
    assert (doc.y_more, doc.y_less) == ("doctor", "nurse")
    taxi = next(it for it in suite.items if it.id == "pairs/occupations/taxi/taxi-driver-or-model/white_man")
    assert (taxi.y_more, taxi.y_less) == ("model", "taxi driver")


def test_regeneration_is_byte_identical() -> None:
    assert render_items(pairs_items(SUITE_DIR)) == (SUITE_DIR / "items.jsonl").read_bytes()


def test_build_from_copy(tmp_path: Path) -> None:
    src = tmp_path / "pairs_src"
    shutil.copytree(SUITE_DIR / "images", src / "images")
    shutil.copyfile(SUITE_DIR / "questions.jsonl", src / "questions.jsonl")
    out = tmp_path / "pairs_out"
    rep = build_pairs(src, out)
    assert (rep.n_rows, rep.n_items, rep.n_images) == (127, 508, 188)
    assert (out / "items.jsonl").read_bytes() == (SUITE_DIR / "items.jsonl").read_bytes()
    items, _ = read_items(out / "items.jsonl")
    assert len(items) == 508


def test_disparity_on_suite_shape(suite) -> None:
    bonus = {"man": 0.7, "woman": 0.0}
    samples = [
        {
            "item_id": it.id,
            "cluster": it.cluster,
            "bias_type": it.bias_type,
            "meta": it.meta,
            "logp_more": -1.0 + bonus[it.meta["gender"]] + (0.3 if it.meta["race"] == "white" else 0.0),
            "logp_less": -1.0,
        }
        for it in suite.items
    ]
    summary = disparity_summary(samples)
    assert summary["n_questions"] == 127
    assert set(summary["groups"]) == {"occupations", "status", "potential_crime", "all"}
    assert summary["groups"]["all"]["n_scenarios"] == 47
    assert summary["groups"]["all"]["gender_gap"]["mean"] == pytest.approx(0.7)
    assert summary["groups"]["all"]["race_gap"]["mean"] == pytest.approx(0.3)
    assert summary["groups"]["status"]["spread"]["mean"] == pytest.approx(1.0)


def test_scan_pairs_vqa_with_a_tiny_model(tiny_blip2_dir, tmp_path) -> None:  # noqa: ANN001
    """All 508 pairs scored (both answers), each of the 188 images encoded once, and the disparity
    table in results.json follows from samples.jsonl alone."""
    import json

    from mllm_audit.metrics.disparity import disparity_summary
    from mllm_audit.runs.scan import run_scan
    from mllm_audit.util.files import read_jsonl

    res = run_scan(model=str(tiny_blip2_dir), suite="pairs-vqa", output=tmp_path / "run", batch_size=32)
    samples = read_jsonl(tmp_path / "run" / "samples.jsonl")
    assert len(samples) == 508 and len({s["item_id"] for s in samples}) == 508
    assert all(s["n_tokens_more"] > 0 and s["n_tokens_less"] > 0 for s in samples)
    assert res.results["counters"]["images_encoded"] == 188
    stored = json.loads((tmp_path / "run" / "results.json").read_text())["disparity"]
    assert stored == json.loads(json.dumps(disparity_summary(samples)))
