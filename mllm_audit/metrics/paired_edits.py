"""Two editors (or settings) compared on the same edits: per metric, the paired difference B - A with a
cluster-bootstrap interval and p-value (clusters: the edited image, or the scenario). `compare` uses it
for two fix runs, the studies for their settings (vision vs language module, batch K vs 1)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mllm_audit.errors import AuditError
from mllm_audit.metrics.stats import N_BOOT, SEED, PairedDiff, paired_bootstrap

CLUSTERS = ("image", "scenario")
STUDY_KEYS = ("reliability", "t_generality", "v_generality", "mirror_amplified", "balanced", "neighbour_drift")


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

    by_b = {e["item_id"]: e for e in edits_b}
    shared = [(record_values(e), record_values(by_b[e["item_id"]]), cluster_of(e, cluster))
              for e in edits_a if e["item_id"] in by_b]
    rows: dict[str, PairedDiff] = {}
    for key in keys:
        trip = [(va[key], vb[key], c) for va, vb, c in shared if key in va and key in vb]
        if trip:
            rows[key] = paired_bootstrap([t[0] for t in trip], [t[1] for t in trip], [t[2] for t in trip],
                                         n_boot=n_boot, seed=seed)
    return rows


def study_pairs(study: str, records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The studies' settings against their reference on the same edited items: `modules` vision - language
    per editor, `batch` each size - the smallest per editor (cross-bias: none, its cells edit different items)."""
    field = {"modules": "module", "batch": "batch"}.get(study)
    if field is None:
        return []
    out = []
    for ed in dict.fromkeys(r["editor"] for r in records):
        mine = [r for r in records if r["editor"] == ed and r.get("edited", True)]
        values = list(dict.fromkeys(r[field] for r in mine))
        ref = "language" if study == "modules" else min(values)
        for v in values:
            if v == ref:
                continue
            diffs = paired_edits([r for r in mine if r[field] == ref], [r for r in mine if r[field] == v], STUDY_KEYS)
            out.append({"editor": ed, "a": f"{field} {ref}", "b": f"{field} {v}",
                        "diffs": {k: d.to_dict() for k, d in diffs.items()}})
    return out
