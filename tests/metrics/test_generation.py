"""The U-MLLM fairness metric on constructed class counts, against values worked out by hand."""

from __future__ import annotations

import math

import pytest

from mllm_audit.metrics.generation import (
    attribute_metrics,
    gen_summary,
    normalised_bias,
    p_uniform,
    pairwise_bias,
    prompt_interval,
    understanding_record,
)


@pytest.mark.parametrize(
    ("counts", "raw", "norm"),
    [
        ([3, 1], 0.5, 0.5),  # |.75 - .25| on both ordered pairs
        ([5, 5], 0.0, 0.0),
        ([7, 0], 1.0, 1.0),  # K = 2: max 2/K = 1
        ([4, 2, 2, 0], 3.0 / 12, 0.5),  # ordered |diffs| sum 2 x (.25+.25+.5+0+.25+.25) = 3 over 12 pairs
        ([1, 1, 1, 1], 0.0, 0.0),
        ([9, 0, 0, 0], 0.5, 1.0),  # K = 4: max 2/K = .5
        ([8, 0, 0, 0, 0, 0, 0, 0], 0.25, 1.0),  # K = 8: max 2/K = .25
        ([2, 2, 0, 0, 0, 0, 0, 0], 2 * 12 * 0.5 / 56, 2 * 12 * 0.5 / 56 * 4),  # 12 pairs (.5 vs 0), both orders
    ],
)
def test_metric_equals_hand_computed(counts: list[int], raw: float, norm: float) -> None:
    assert pairwise_bias(counts) == pytest.approx(raw, abs=1e-12)
    assert normalised_bias(counts) == pytest.approx(norm, abs=1e-12)


def test_nothing_detected_is_nan() -> None:
    assert math.isnan(pairwise_bias([0, 0]))
    assert attribute_metrics({}, ["male", "female"])["normalised"] is None


def test_interval_and_balance() -> None:
    lo, hi = prompt_interval([90, 10])
    assert lo < 0.8 < hi and hi <= 1.0
    assert p_uniform([50, 50]) > 0.5  # a balanced prompt is not flagged
    assert p_uniform([90, 10]) < 0.01
    assert prompt_interval([90, 10]) == (lo, hi)  # fixed seeds: the same numbers every time


def test_summary_means_over_prompts_and_groups() -> None:
    attrs = {"gender": ["male", "female"], "race": ["a", "b", "c", "d"]}

    def sample(pid: str, g: list[int], r: list[int], group: str) -> dict:
        joint = {f"{x}/{y}": 0 for x in attrs["gender"] for y in attrs["race"]}
        joint["male/a"] = sum(g)
        return {"prompt_id": pid, "group": group, "n_person": sum(g),
                "counts": {"gender": dict(zip(attrs["gender"], g, strict=True)),
                           "race": dict(zip(attrs["race"], r, strict=True)), "gender_x_race": joint},
                "understanding": understanding_record({"male": -1.0, "female": -1.0, "unknown": -1.0})}

    s = [sample("p1", [3, 1], [4, 2, 2, 0], "x"), sample("p2", [1, 1], [1, 1, 1, 1], "x"),
         sample("p3", [0, 0], [0, 0, 0, 0], "y")]
    out = gen_summary(s, attrs)
    assert out["all"]["gender"]["normalised"] == pytest.approx(0.25)  # mean of .5 and 0; p3 has no people
    assert out["all"]["gender"]["n_prompts"] == 2
    assert out["x"]["race"]["normalised"] == pytest.approx(0.25)
    assert out["all"]["gender_x_race"]["normalised"] == pytest.approx(1.0)
    assert out["all"]["understanding_skew"] == pytest.approx(0.0)
    assert out["all"]["understanding_p_unknown"] == pytest.approx(1 / 3)
