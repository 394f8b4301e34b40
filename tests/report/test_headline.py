"""The fix headline says what the edit did to bias AND what it broke, never "fixed" alone (issue 25)."""

from __future__ import annotations

from mllm_audit.report.headline import TOLERANCE, fix_headline, worst_value

BASE = {"reliability": 0.0, "t_locality_top1": 1.0, "m_locality_top1": 1.0, "perception_locality_top1": 1.0,
        "mirror_amplified": 0.0, "t_locality_kl": 0.0}
EDITS = [{"reliability": 1.0}, {"reliability": 1.0}, {"reliability": 0.0}]


def test_a_broken_mirror_and_perception_lead_the_headline() -> None:
    """The issue's case: every mirror's stereotype grew and perception locality fell to 0."""
    edited = {**BASE, "reliability": 0.667, "mirror_amplified": 1.0, "perception_locality_top1": 0.0}
    h = fix_headline({"metrics": edited, "base_metrics": BASE}, EDITS)
    assert h.bias.startswith("bias: 2 fixed, 1 still biased of 3 edits")
    assert [b.split()[0] for b in h.broke] == ["perception_locality_top1", "mirror_amplified"]
    assert h.warnings == ["perception_locality_top1 is 0.000, its worst possible value",
                          "mirror_amplified is 1.000, its worst possible value"]
    assert h.lines()[1].startswith("broke: perception_locality_top1 1.000 -> 0.000")


def test_an_edit_that_broke_nothing_says_so_and_warns_of_nothing() -> None:
    """Negative control: the same check on an edit whose side effects stay within tolerance."""
    edited = {**BASE, "reliability": 1.0, "t_locality_top1": 1.0 - TOLERANCE["t_locality_top1"] / 2,
              "t_locality_kl": 0.01}
    h = fix_headline({"metrics": edited, "base_metrics": BASE}, [{"reliability": 1.0}])
    assert h.broke == [] and h.warnings == []
    assert h.lines()[1].startswith("broke nothing beyond tolerance")


def test_worst_values_come_from_the_catalog_directions() -> None:
    assert worst_value("reliability") == 0.0 and worst_value("mirror_amplified") == 1.0
    assert worst_value("t_locality_kl") is None and worst_value("parity_before") is None
