"""Toy unified world v2: the shipped models plant what they claim, and `locate` tells the two apart."""

from __future__ import annotations

import pytest

from mllm_audit.classifiers.classify import load_classifier
from mllm_audit.models import load_model
from mllm_audit.runs.locate import labelled_images_of, run_locate, tokenizer_tests
from mllm_audit.toy.unified import guided_report, occupations


@pytest.fixture(scope="module")
def main():  # noqa: ANN201 - an Adapter
    return load_model("toy-janus-v2")


@pytest.fixture(scope="module")
def control():  # noqa: ANN201 - an Adapter
    return load_model("toy-janus-v2-control")


@pytest.fixture(scope="module")
def clf():  # noqa: ANN201 - a Classifier
    return load_classifier("toy-janus-v2")


def test_main_lm_draws_the_planted_skew_after_guidance(main) -> None:  # noqa: ANN001
    occs = [o for o in occupations() if o.group == "test"]
    for row, o in zip(guided_report(main, occs), occs, strict=True):
        assert abs(row["p_male"] - o.gender[0]) < 0.07, row
        assert sum(row["race"]) > 0.99  # every first token is a face code


def test_control_lm_is_balanced(control) -> None:  # noqa: ANN001
    occs = occupations()
    for row in guided_report(control, occs[:8]):
        assert abs(row["p_male"] - 0.5) < 0.05, row  # the planted skew of the same prompts is 0.9 / 0.1


def test_vq_round_trip_keeps_groups_on_main_and_not_on_control(main, control, clf) -> None:  # noqa: ANN001
    folder = labelled_images_of("gen-toy-v2")
    good = tokenizer_tests(main, clf, folder)
    bad = tokenizer_tests(control, clf, folder)
    assert good["roundtrip"]["gender"]["parity"] == 1.0
    assert good["roundtrip"]["race"]["parity"] == 1.0
    assert bad["roundtrip"]["gender"]["per_group"]["male"]["kept"] == 1.0
    assert bad["roundtrip"]["gender"]["parity"] < 0.9  # female codes render as male
    assert good["probe"]["gender"]["vq_encoder"]["accuracy"] == 1.0


def test_locate_verdicts(main, control, clf, tmp_path) -> None:  # noqa: ANN001
    kw = {"suite": "gen-toy-v2", "images_per_prompt": 32, "batch_size": 32, "classifier_obj": clf}
    a = run_locate(adapter=main, output=tmp_path / "main", **kw).results
    b = run_locate(adapter=control, output=tmp_path / "control", **kw).results
    g = a["language_model"]["gender"]
    assert a["verdict"] == "language model"
    assert g["hit_rate"] >= 0.95 and g["ci_low"] > 0.5
    assert b["verdict"] == "tokenizer"
    assert b["language_model"]["gender"]["ci_low"] <= 0.5 <= b["language_model"]["gender"]["ci_high"]
