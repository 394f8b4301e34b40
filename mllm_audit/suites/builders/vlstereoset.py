"""VLStereoSet: the CSV a user holds, plus its images, as an image-captioning suite."""

from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import Any

from mllm_audit.errors import AuditError
from mllm_audit.suites.builders.common import (
    DEFAULT_IC_PROMPT,
    IC_REPHRASES,
    BuildReport,
    _clean_url,
    _finish,
    _Images,
    _images_dir_entry,
    _place_images,
    claim_out,
    pick,
)

STEREOSET_BIAS_TYPES = ("gender", "profession", "race", "religion")
_VLS_ALIASES = {
    "bias_type": ("bias_type", "biastype", "type"),
    "target": ("target",),
    "context": ("context",),
    "stereotype": ("stereotype",),
    "anti_stereotype": ("anti_stereotype", "antistereotype"),
    "unrelated": ("unrelated",),
    "label": ("label",),
    "image_url": ("image_url", "imaeg_url", "url", "image", "img_url"),
}
_VLS_REQUIRED = ("bias_type", "target", "stereotype", "anti_stereotype", "image_url")
# `label` -> the image's side; the suite's `group_by: image_label` splits the summary on it.
VLS_IMAGE_LABELS = {"1": "stereotypical", "0": "anti-stereotypical"}


def _norm_header(h: str) -> str:
    return re.sub(r"[\s_-]+", "_", h.strip().lower())


def _caption(context: str, candidate: str) -> str:
    """A full caption: StereoSet-style fill-ins (context with BLANK, candidate a word) are filled in."""
    candidate = candidate.strip()
    if "BLANK" in context and not re.search(r"[.!?]$", candidate):
        return context.replace("BLANK", candidate, 1).strip()
    return candidate


def _csv_columns(csv_path: Path, header: list[str]) -> dict[str, int]:
    norm = [_norm_header(h) for h in header]
    col: dict[str, int] = {}
    for key, aliases in _VLS_ALIASES.items():
        for a in aliases:
            if a in norm:
                col[key] = norm.index(a)
                break
    missing = [k for k in _VLS_REQUIRED if k not in col]
    if missing:
        raise AuditError(f"{csv_path}: missing column(s) {', '.join(missing)} (header: {', '.join(header)})")
    return col


def build_vlstereoset(
    csv_path: Path, images_dir: Path | None, out_dir: Path, name: str = "vlstereoset", overwrite: bool = False
) -> BuildReport:
    """Build an IC suite from the VLStereoSet CSV: y_more = stereotype caption, y_less = anti-stereotype.

    Columns are matched by name (case, separators and the upstream `Imaeg URL` typo tolerated; empty
    trailing columns ignored). Every usable row's image URL goes to OUT/images.tsv with the file name
    it is expected under in `images_dir`; with no image in place the build stops (`ImagesMissing`),
    otherwise rows whose image is missing are counted and listed. `label` is kept in `meta` and as
    `meta.image_label` (stereotypical / anti-stereotypical), which the summary splits on.
    """
    csv_path, out_dir = Path(csv_path), Path(out_dir)
    if not csv_path.is_file():
        raise AuditError(f"VLStereoSet CSV not found: {csv_path}")
    images = _Images(images_dir)
    claim_out(out_dir, name, overwrite, "suites build vlstereoset")
    report = BuildReport(name=name, out_dir=str(out_dir))
    try:
        text = csv_path.read_text(encoding="utf-8-sig")  # -sig: the published file starts with a BOM
    except UnicodeDecodeError:
        raise AuditError(f"{csv_path}: not UTF-8 text") from None
    reader = csv.reader(text.splitlines())
    header = next(reader, None)
    if not header:
        raise AuditError(f"{csv_path}: empty CSV")
    col = _csv_columns(csv_path, header)
    rows: list[dict[str, Any]] = []
    for rownum, row in enumerate(reader, 2):
        if not any(c.strip() for c in row):
            continue
        report.n_rows += 1
        where = f"{csv_path.name}:{rownum}"
        # Short or long rows are fine as long as only empty columns are missing or extra.
        if len(row) > len(header) and any(c.strip() for c in row[len(header) :]):
            report.skip("malformed", f"{where}: {len(row)} fields, header has {len(header)}")
            continue
        row = row + [""] * (len(header) - len(row))
        rec = {k: row[i].strip() for k, i in col.items()}
        bias_type = rec["bias_type"].lower()
        if bias_type not in STEREOSET_BIAS_TYPES:
            report.skip("unknown_bias_type", f"{where}: {rec['bias_type']!r}")
            continue
        context = rec.get("context", "")
        stereo, anti = _caption(context, rec["stereotype"]), _caption(context, rec["anti_stereotype"])
        if not stereo or not anti or stereo == anti or not rec["target"]:
            report.skip("malformed", f"{where}: empty target or captions, or stereotype == anti-stereotype")
            continue
        label = rec.get("label", "")
        if "label" in col and label not in VLS_IMAGE_LABELS:
            report.skip("bad_label", f"{where}: label {label!r} (expected 1 or 0)")
            continue
        url = _clean_url(rec["image_url"])
        if url is None:
            report.skip("bad_url", f"{where}: image URL {rec['image_url'][:80]!r}")
            continue
        images.add(url)
        rows.append(
            {"where": where, "rownum": rownum, "url": url, "rec": rec, "bias_type": bias_type}
            | {"stereo": stereo, "anti": anti, "label": label}
        )
    items: list[dict[str, Any]] = []
    for r in _place_images(report, out_dir, images, rows):
        rec, bias_type = r["rec"], r["bias_type"]
        item_id = f"{name}/{r['rownum']:06d}"
        meta: dict[str, Any] = {"target": rec["target"], "row": r["rownum"], "url": r["url"]}
        if r["label"]:
            meta["label"] = int(r["label"])
            meta["image_label"] = VLS_IMAGE_LABELS[r["label"]]
        for key in ("context", "unrelated"):
            if rec.get(key):
                meta[key] = rec[key]
        items.append(
            {
                "id": item_id,
                "task": "ic",
                "bias_type": bias_type,
                "image": images.files[r["url"]],
                "prompt": DEFAULT_IC_PROMPT,
                "y_more": r["stereo"],
                "y_less": r["anti"],
                "cluster": f"{bias_type}/{rec['target'].lower()}",
                "meta": meta,
                "rephrase_prompt": pick(item_id, IC_REPHRASES),
            }
        )
    header_yaml: dict[str, Any] = {
        "name": name,
        "description": "VLStereoSet image captioning: stereotype vs anti-stereotype caption per image",
        "source": f"built by `mllm-audit suites build vlstereoset` from {csv_path.name}",
        "license": "as distributed by VLStereoSet and the image hosts; check their terms before sharing",
        "items": "items.jsonl",
        "images_dir": _images_dir_entry(out_dir, images.dir or out_dir),
    }
    if "label" in col:
        header_yaml["group_by"] = "image_label"
    _finish(report, out_dir, items, header_yaml)
    return report


# --- PATA -----------------------------------------------------------------------------------
# pata-fairness/pata_dataset: `pata_fairness.files.lst` lines are `scene_race_gender_age|URL` (scenes
# may hold underscores); `pata_fairness.captions.json` is a JSON list of scene objects
# {"long": ..., "short": SCENE, "pos": {"races": [...], "gender": [...], "age": [...]}, "neg": {...}};
# lists may be empty and positive / negative lists differ in length.
