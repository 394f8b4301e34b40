"""Study settings compared on the same edits (metrics/paired_edits.py)."""

from __future__ import annotations

import pytest

from mllm_audit.metrics.paired_edits import paired_edits, study_pairs


def _rec(item: str, editor: str, module: str, rel: float, cluster: str) -> dict:
    return {"item_id": item, "editor": editor, "module": module, "cluster": cluster, "edited": True,
            "reliability": rel, "t_generality": None, "v_generality": None, "t_locality": None, "m_locality": None}


def test_modules_vision_minus_language_on_the_same_items() -> None:
    recs = [_rec(f"i{i}", "ft", "language", 1.0, f"c{i // 2}") for i in range(10)]
    recs += [_rec(f"i{i}", "ft", "vision", 1.0 if i < 3 else 0.0, f"c{i // 2}") for i in range(10)]
    (pair,) = study_pairs("modules", recs)
    d = pair["diffs"]["reliability"]
    assert (pair["a"], pair["b"]) == ("module language", "module vision")
    assert d["diff"] == pytest.approx(-0.7) and d["ci_high"] < 0 and d["n_clusters"] == 5
    assert study_pairs("cross-bias", recs) == []  # its cells edit different items: nothing to pair
    # Negative control: the same setting against itself differs by nothing.
    same = paired_edits(recs[:10], recs[:10], ["reliability"])["reliability"]
    assert same.diff == 0 and same.p_value == 1.0
