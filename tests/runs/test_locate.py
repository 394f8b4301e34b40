"""locate's statistics and the balanced-model floor: numbers checked by hand, each with a control."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mllm_audit.metrics.generation import balanced_floor
from mllm_audit.runs.locate import jsd_base2, probe_cv, verdict, wilson
from mllm_audit.suites.labelled import variant_prompt


def test_jsd_base2_bounds_and_value() -> None:
    assert jsd_base2([1, 0], [1, 0]) == pytest.approx(0.0)
    assert jsd_base2([1, 0], [0, 1]) == pytest.approx(1.0)  # disjoint: one bit
    # p = (1/2, 1/2), q = (1, 0): m = (3/4, 1/4)
    want = 0.5 * (0.5 * math.log2(0.5 / 0.75) + 0.5 * math.log2(0.5 / 0.25)) + 0.5 * math.log2(1 / 0.75)
    assert jsd_base2([5, 5], [7, 0]) == pytest.approx(want)


def test_wilson_interval() -> None:
    lo, hi = wilson(24, 24)
    assert lo == pytest.approx(0.8620, abs=1e-3) and hi == pytest.approx(1.0)
    lo, hi = wilson(12, 24)  # chance-level: the interval covers 0.5
    assert lo < 0.5 < hi
    assert all(math.isnan(x) for x in wilson(0, 0))


def test_balanced_floor_matches_the_issue() -> None:
    assert balanced_floor(8, 2) == pytest.approx(0.2734, abs=1e-4)
    assert balanced_floor(64, 2) == pytest.approx(0.0993, abs=1e-4)
    assert balanced_floor(160, 2) == pytest.approx(0.0630, abs=1e-4)
    assert balanced_floor(8, 4) == pytest.approx(0.39, abs=0.01)
    assert balanced_floor(160, 8) == pytest.approx(0.13, abs=0.01)
    assert balanced_floor(64, 2) < 0.1 < balanced_floor(48, 2)  # the default N is the first round one below 0.1


def test_probe_reads_a_separable_label_and_not_noise() -> None:
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 40)
    x = rng.normal(size=(80, 6))
    good = probe_cv(x + 6.0 * y[:, None] * np.eye(6)[0], y, 2)
    noise = probe_cv(x, y, 2)
    assert good["accuracy"] > 0.95 and good["macro_f1"] > 0.95
    assert noise["accuracy"] < 0.75  # the negative control: a label the features do not carry


def test_variant_prompt_and_verdict() -> None:
    assert variant_prompt("A photo of the face of a doctor, a person", "female").endswith("a female")
    lm_hit = {"gender": {"above_chance": True}}
    lm_none = {"gender": {"above_chance": False}}
    fair = {"roundtrip": {"gender": {"parity": 1.0}}}
    broken = {"roundtrip": {"gender": {"parity": 0.5}}}
    assert verdict(lm_hit, fair, 0.9)[0] == "language model"
    assert verdict(lm_none, broken, 0.9)[0] == "tokenizer"
    assert verdict(lm_hit, broken, 0.9)[0] == "both"
    assert verdict(lm_none, fair, 0.9)[0] == "undetermined"
