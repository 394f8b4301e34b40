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
    assert study_pairs("scan", recs) == []  # not a study that compares settings
    # Negative control: the same setting against itself differs by nothing.
    same = paired_edits(recs[:10], recs[:10], ["reliability"])["reliability"]
    assert same.diff == 0 and same.p_value == 1.0


def _cross(item: str, src: str, parity: float, rel: float) -> dict:
    return {"item_id": item, "editor": "ike", "edit_type": src, "eval_type": "gender", "cluster": f"img{item}",
            "meta": {"scenario": f"s{int(item[1:]) // 4}"}, "edited": True, "reliability": rel,
            "parity_after": parity, "t_locality": None, "m_locality": None}


def _cross_records() -> list[dict]:
    """Item difficulty dominates: parity after the in-type edit runs 0..5.7 over items; editing on race
    leaves every item 0.3 higher (+-0.05)."""
    base = [0.3 * i for i in range(20)]
    recs = [_cross(f"g{i}", "gender", b, 1.0) for i, b in enumerate(base)]
    recs += [_cross(f"g{i}", "race", b + 0.3 + (0.05 if i % 2 else -0.05), float(i % 4 != 0))
             for i, b in enumerate(base)]
    return recs


def test_cross_bias_pairs_each_source_type_with_the_in_type_edit_on_the_same_items() -> None:
    (pair,) = study_pairs("cross-bias", _cross_records())
    assert (pair["eval_type"], pair["key"]) == ("gender", "race")
    assert (pair["a"], pair["b"]) == ("edit on gender", "edit on race")
    par, rel = pair["diffs"]["parity_after"], pair["diffs"]["reliability"]
    assert par["diff"] == pytest.approx(0.3) and 0.27 < par["ci_low"] < 0.3 < par["ci_high"] < 0.33
    assert par["p_value"] < 0.01 and par["n_clusters"] == 20
    assert rel["diff"] == pytest.approx(-0.25)
    by_scenario = study_pairs("cross-bias", _cross_records(), cluster="scenario")[0]["diffs"]["reliability"]
    assert by_scenario["n_clusters"] == 5 and by_scenario["diff"] == pytest.approx(-0.25)


def test_negative_controls_unpaired_and_shuffled_pairings_give_wide_intervals() -> None:
    """The same numbers without the pairing: the item spread is no longer cancelled, so the interval of the
    difference of two independent bootstrap means is ~25x wider and covers 0; pairing each in-type item with
    another item's cross-type value (shuffled) gives a different, wide interval too."""
    import numpy as np

    from mllm_audit.metrics.stats import cluster_replicates

    recs = _cross_records()
    a = [r["parity_after"] for r in recs if r["edit_type"] == "gender"]
    b = [r["parity_after"] for r in recs if r["edit_type"] == "race"]
    paired = study_pairs("cross-bias", recs)[0]["diffs"]["parity_after"]
    reps = cluster_replicates(b, None, seed=1) - cluster_replicates(a, None, seed=2)
    lo, hi = np.quantile(reps, [0.025, 0.975])
    assert lo < 0 < hi and (hi - lo) > 20 * (paired["ci_high"] - paired["ci_low"])
    shuffled = [dict(r, item_id=f"g{(int(r['item_id'][1:]) + 7) % 20}") if r["edit_type"] == "race" else r
                for r in recs]
    sh = study_pairs("cross-bias", shuffled)[0]["diffs"]["parity_after"]
    assert sh["diff"] == pytest.approx(0.3)  # same means ...
    assert sh["ci_high"] - sh["ci_low"] > 10 * (paired["ci_high"] - paired["ci_low"])  # ... not the same interval
