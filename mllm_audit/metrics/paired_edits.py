"""Two editors (or settings) compared on the same edits: per metric, the paired difference B - A with a
cluster-bootstrap interval and p-value (clusters: the edited image, or the scenario). `compare` uses it
for two fix runs, the studies for their settings (vision vs language module, batch K vs 1, cross-bias
edit on another type vs on the measured type itself)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mllm_audit.errors import AuditError
from mllm_audit.metrics.stats import N_BOOT, SEED, PairedDiff, paired_bootstrap

CLUSTERS = ("image", "scenario")
STUDY_KEYS = ("reliability", "t_generality", "v_generality", "t_locality_top1", "m_locality_top1", "parity_after",
              "balanced", "mirror_amplified", "neighbour_drift")
STUDY_SCALARS = ("parity_after",)  # a study record's own per-item metrics, beside editing.py's


def cluster_of(rec: dict[str, Any], cluster: str) -> str:
    if cluster == "scenario":
        scen = (rec.get("meta") or {}).get("scenario")
        if scen is None:
            raise AuditError(f"--cluster scenario: edit {rec['item_id']!r} has no meta.scenario")
        return str(scen)
    return str(rec.get("cluster") or rec["item_id"])


def paired_edits(edits_a: Sequence[dict[str, Any]], edits_b: Sequence[dict[str, Any]], keys: Sequence[str],
                 cluster: str = "image", *, n_boot: int = N_BOOT, seed: int = SEED) -> dict[str, PairedDiff]:
    """Per metric key, B - A over the edits both lists made (by item_id) where both have a value."""
    from mllm_audit.metrics.edits import record_values

    def values(e: dict[str, Any]) -> dict[str, float]:
        return {**record_values(e), **{k: float(e[k]) for k in STUDY_SCALARS if e.get(k) is not None}}

    by_b = {e["item_id"]: e for e in edits_b}
    shared = [(values(e), values(by_b[e["item_id"]]), cluster_of(e, cluster))
              for e in edits_a if e["item_id"] in by_b]
    rows: dict[str, PairedDiff] = {}
    for key in keys:
        trip = [(va[key], vb[key], c) for va, vb, c in shared if key in va and key in vb]
        if trip:
            rows[key] = paired_bootstrap([t[0] for t in trip], [t[1] for t in trip], [t[2] for t in trip],
                                         n_boot=n_boot, seed=seed)
    return rows


def study_pairs(study: str, records: Sequence[dict[str, Any]], cluster: str = "image") -> list[dict[str, Any]]:
    """The studies' settings against their reference on the same items, per editor: `modules` vision -
    language, `batch` each size - the smallest, `cross-bias` per measured type T, edit on S - edit on T
    (the in-type row; fit: both edit T's items; transfer: both are measured on T's items). A setting
    without records of its own (FT's repeated cross-bias fit rows: nothing fitted) gives no pair."""
    if study not in ("modules", "batch", "cross-bias"):
        return []
    out = []
    for ed in dict.fromkeys(r["editor"] for r in records):
        mine = [r for r in records if r["editor"] == ed]
        if study == "cross-bias":
            for tgt in dict.fromkeys(r["eval_type"] for r in mine):
                on = [r for r in mine if r["eval_type"] == tgt]
                in_type = [r for r in on if r["edit_type"] == tgt]
                for src in dict.fromkeys(r["edit_type"] for r in on):
                    other = [r for r in on if r["edit_type"] == src]
                    if src != tgt and in_type and other:
                        diffs = paired_edits(in_type, other, STUDY_KEYS, cluster)
                        out.append({"editor": ed, "eval_type": tgt, "a": f"edit on {tgt}", "b": f"edit on {src}",
                                    "key": src, "diffs": {k: d.to_dict() for k, d in diffs.items()}})
            continue
        field = {"modules": "module", "batch": "batch"}[study]
        mine = [r for r in mine if r.get("edited", True)]
        values = list(dict.fromkeys(r[field] for r in mine))
        ref = "language" if study == "modules" else min(values)
        for v in values:
            if v == ref:
                continue
            diffs = paired_edits([r for r in mine if r[field] == ref], [r for r in mine if r[field] == v], STUDY_KEYS,
                                 cluster)
            out.append({"editor": ed, "a": f"{field} {ref}", "b": f"{field} {v}", "key": str(v),
                        "diffs": {k: d.to_dict() for k, d in diffs.items()}})
    return out
