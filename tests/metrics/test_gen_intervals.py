"""Generation-bias intervals that cover the true bias: a coverage simulation (issue 26, item 6).

Generators: balanced, mild and strong, for gender (K 2) and 4-group race; N 64 images per prompt;
300 draws each from a fixed seed. The old percentile bootstrap of the plug-in |.| is the negative
control: it misses a balanced race generator's true 0 in every draw.
"""

from __future__ import annotations

import numpy as np
import pytest

from mllm_audit.metrics.gen_intervals import bias_interval, clopper_pearson, suite_interval
from mllm_audit.metrics.generation import normalised_bias, prompt_interval

GENERATORS = {
    ("gender", "balanced"): [0.5, 0.5], ("gender", "mild"): [0.6, 0.4], ("gender", "strong"): [0.9, 0.1],
    ("race", "balanced"): [0.25] * 4, ("race", "mild"): [0.35, 0.25, 0.2, 0.2],
    ("race", "strong"): [0.7, 0.1, 0.1, 0.1],
}
N, DRAWS = 64, 300


def coverage(p: list[float], n: int, draws: int, seed: int = 0) -> float:
    truth = normalised_bias(p)
    rng = np.random.default_rng(seed)
    hits = 0
    for _ in range(draws):
        lo, hi = bias_interval(rng.multinomial(n, p))
        hits += lo - 1e-12 <= truth <= hi + 1e-12
    return hits / draws


@pytest.mark.parametrize("key", list(GENERATORS))
def test_intervals_cover_the_true_bias_at_n64(key: tuple[str, str]) -> None:
    cov = coverage(GENERATORS[key], N, DRAWS)
    assert cov >= 0.93, (key, cov)


def test_the_old_percentile_bootstrap_misses_balance() -> None:
    """Negative control: the plug-in bootstrap's interval excludes a balanced race generator's 0."""
    rng = np.random.default_rng(1)
    misses = sum(prompt_interval(rng.multinomial(N, [0.25] * 4), n_boot=300)[0] > 0 for _ in range(40))
    assert misses == 40
    assert bias_interval([16, 16, 16, 16])[0] == 0.0  # the new one reaches 0


def test_exact_pieces() -> None:
    lo, hi = clopper_pearson(0, 8, 0.05)  # the textbook exact interval: 1 - 0.025 ** (1/8)
    assert lo == 0.0 and hi == pytest.approx(1 - 0.025 ** (1 / 8), abs=1e-9)
    lo, hi = clopper_pearson(32, 64, 0.05)
    assert lo == pytest.approx(1 - hi, abs=1e-9) and 0.37 < lo < 0.38
    blo, bhi = bias_interval([58, 6])  # gender: |2p - 1| over p's exact interval
    plo, phi = clopper_pearson(58, 64, 0.05)
    assert (blo, bhi) == pytest.approx((2 * plo - 1, 2 * phi - 1), abs=1e-9)
    assert suite_interval([(0.0, 0.4), (0.5, 0.9)]) == (0.25, 0.65)


def test_a_fix_that_skews_a_control_fails_its_check() -> None:
    """The anchored SFT/BPO failure (issue 26): held-out targets improve while a balanced control skews."""
    from mllm_audit.metrics.gen_intervals import control_check

    attrs = {"gender": ["male", "female"]}

    def s(pid: str, group: str, m: int, f: int) -> dict:
        return {"prompt_id": pid, "group": group, "counts": {"gender": {"male": m, "female": f}}}

    before = [s("student", "control", 32, 32), s("person", "control", 36, 28), s("nurse", "test", 4, 60)]
    skewed = [s("student", "control", 58, 6), s("person", "control", 31, 33), s("nurse", "test", 30, 34)]
    res = control_check(before, skewed, attrs)
    assert not res["passed"] and res["failed"] == ["student/gender"]
    assert set(res["prompts"]) == {"student", "person"}  # targets are judged elsewhere
    # Negative control: sampling noise of the same size as the intervals does not fail it.
    noisy = [s("student", "control", 38, 26), s("person", "control", 27, 37), s("nurse", "test", 30, 34)]
    assert control_check(before, noisy, attrs)["passed"]


def test_the_exact_control_check_fails_a_control_moved_beyond_tolerance() -> None:
    """Exact shares measured on the toy before / after the anchored SFT (tests/runs/test_gen_exact.py):
    student 0.4941 -> 0.6517 male (normalised 0.012 -> 0.303) fails; cook 0.4402 -> 0.4235 (0.120 ->
    0.153, +0.033 < 0.05) and writer (toward balance) pass."""
    from mllm_audit.metrics.gen_intervals import control_check_exact

    def ex(p_male: float, pruned: float = 2e-6) -> dict:
        return {"shares": {"gender": [p_male, 1 - p_male]}, "pruned_mass": pruned, "person_mass": 1 - pruned}

    before = {"student": ex(0.4941), "cook": ex(0.4402), "writer": ex(0.3717)}
    after = {"student": ex(0.6517), "cook": ex(0.4235), "writer": ex(0.4347)}
    res = control_check_exact(before, after)
    assert res["method"] == "exact" and res["failed"] == ["student/gender"]
    assert res["prompts"]["student"]["gender"]["change"] == pytest.approx(0.2916, abs=1e-9)
    assert res["prompts"]["cook"]["gender"]["change"] == pytest.approx(0.0334, abs=1e-9)
    # Negative controls: the same move inside the tolerance passes; a large pruned mass widens the bound.
    assert control_check_exact(before, {**after, "student": ex(0.52)})["passed"]
    assert control_check_exact(before, {**after, "student": ex(0.6517, pruned=0.15)})["passed"]


def test_the_sampled_check_records_its_method_and_one_bias_definition() -> None:
    import mllm_audit.metrics.gen_intervals as gi
    from mllm_audit.metrics.gen_intervals import control_check

    row = {"prompt_id": "student", "group": "control", "counts": {"gender": {"male": 40, "female": 24}}}
    check = control_check([row], [row], {"gender": ["male", "female"]})
    assert (check["method"], check["classified_max"]) == ("sampled", 64)
    p = np.array([0.5, 0.2, 0.2, 0.1])
    assert normalised_bias(p) == pytest.approx(0.4) and not hasattr(gi, "_bias")  # the old duplicate is gone
    assert gi.normalised_bias is normalised_bias  # intervals and metric share one definition
