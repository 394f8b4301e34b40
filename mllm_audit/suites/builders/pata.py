"""PATA: a file list and a captions JSON a user holds, as an image-captioning suite."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
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
    _read_json,
    claim_out,
    pick,
)

PATA_ATTRIBUTES = ("race", "gender", "age")
_PATA_KEYS = {"race": ("races", "race"), "gender": ("gender", "genders"), "age": ("age", "ages")}
PATA_PROTOCOLS = ("pairs", "paper")


@dataclass(frozen=True)
class PataCaptions:
    """One scene's captions per attribute: positive (unbiased) and negative (biased) sentences."""

    pos: dict[str, list[str]]
    neg: dict[str, list[str]]

    def attributes(self) -> list[str]:
        """Attributes with at least one caption on each side, in PATA_ATTRIBUTES order."""
        return [a for a in PATA_ATTRIBUTES if self.pos.get(a) and self.neg.get(a)]


def _caption_list(obj: Any, attr: str) -> list[str] | None:
    """The captions of one attribute from a `pos` / `neg` object ([] if absent), None if malformed."""
    if not isinstance(obj, dict):
        return None
    value: Any = next((obj[k] for k in _PATA_KEYS[attr] if k in obj), [])
    if not isinstance(value, list) or not all(isinstance(c, str) for c in value):
        return None
    return [c.strip() for c in value if c.strip()]


def read_pata_captions(path: Path, report: BuildReport) -> dict[str, PataCaptions]:
    """scene (the `short` name) -> its captions. Malformed scenes and empty attribute lists are
    counted in the report; a file that is not a list of scene objects is an error."""
    data = _read_json(path)
    if not isinstance(data, list) or not data:
        raise AuditError(f"{path}: expected a JSON list of scene objects (short, pos, neg)")
    out: dict[str, PataCaptions] = {}
    for n, entry in enumerate(data):
        scene = entry.get("short") if isinstance(entry, dict) else None
        if not isinstance(scene, str) or not scene.strip():
            report.skip("malformed_captions", f"{path.name}: entry {n} has no 'short' scene name")
            continue
        scene = scene.strip()
        pos: dict[str, list[str]] = {}
        neg: dict[str, list[str]] = {}
        for attr in PATA_ATTRIBUTES:
            p, q = _caption_list(entry.get("pos"), attr), _caption_list(entry.get("neg"), attr)
            if p is None or q is None:
                report.skip("malformed_captions", f"{path.name}: {scene}/{attr} is not a list of sentences")
                continue
            if not p or not q:
                report.skip("empty_captions", f"{path.name}: {scene}/{attr} ({len(p)} positive, {len(q)} negative)")
                continue
            pos[attr], neg[attr] = p, q
        if scene in out:
            report.skip("malformed_captions", f"{path.name}: scene {scene!r} appears twice (first kept)")
            continue
        out[scene] = PataCaptions(pos, neg)
    return out


def _parse_pata_key(key: str, scenes: Iterable[str]) -> tuple[str, str, str, str] | None:
    """`scene_race_gender_age` -> parts; the scene is the longest known prefix (scenes may hold `_`)."""
    scene = next((s for s in sorted(scenes, key=len, reverse=True) if key.startswith(s + "_")), None)
    if scene is None:
        parts = key.rsplit("_", 3)
        if len(parts) != 4:
            return None
        return parts[0], parts[1], parts[2], parts[3]
    rest = key[len(scene) + 1 :].split("_")
    if len(rest) < 3:
        return None
    return scene, "_".join(rest[:-2]), rest[-2], rest[-1]


def pata_pairs(
    scene: str, caps: PataCaptions, protocol: str, seed: int, image_key: str
) -> list[tuple[str, int, str, str]]:
    """(attribute, k, positive, negative) caption pairs for one image of `scene`.

    `pairs` (default): for every attribute, one pair per negative caption, its positive chosen from
    the seed and (scene, attribute, k) only, so every image of a scene gets the same pairs and groups
    compare like with like. `paper`: one pair per image, as the debias-editing paper builds PATA: a
    random attribute (among those with captions on both sides), then a random negative and a random
    positive sentence, drawn from the seed and `image_key` (the row's scene and image file).
    """
    if protocol == "pairs":
        out = []
        for attr in caps.attributes():
            for k, neg in enumerate(caps.neg[attr]):
                out.append((attr, k, pick(f"{seed}/{scene}/{attr}/{k}", caps.pos[attr]), neg))
        return out
    if protocol == "paper":
        attrs = caps.attributes()
        if not attrs:
            return []
        attr = pick(f"{seed}/{image_key}/attribute", attrs)
        neg = pick(f"{seed}/{image_key}/negative", caps.neg[attr])
        return [(attr, caps.neg[attr].index(neg), pick(f"{seed}/{image_key}/positive", caps.pos[attr]), neg)]
    raise AuditError(f"unknown PATA protocol {protocol!r} (choose from {', '.join(PATA_PROTOCOLS)})")


def build_pata(
    files_lst: Path,
    captions_json: Path,
    images_dir: Path | None,
    out_dir: Path,
    name: str = "pata",
    protocol: str = "pairs",
    seed: int = 0,
    overwrite: bool = False,
) -> BuildReport:
    """Build an IC suite from PATA: negative (biased) vs positive (unbiased) caption per image.

    y_more = the negative caption, y_less = the positive one; bias_type = the attribute; meta.group =
    the image's value of that attribute, so `group_by: group` splits rows into e.g. race/black,
    gender/female. How captions are paired: `pata_pairs` (`protocol` pairs or paper, `seed`). Image
    URLs go to OUT/images.tsv as in `build_vlstereoset`.
    """
    if protocol not in PATA_PROTOCOLS:
        raise AuditError(f"unknown PATA protocol {protocol!r} (choose from {', '.join(PATA_PROTOCOLS)})")
    files_lst, captions_json, out_dir = Path(files_lst), Path(captions_json), Path(out_dir)
    if not files_lst.is_file():
        raise AuditError(f"PATA file list not found: {files_lst}")
    claim_out(out_dir, name, overwrite, "suites build pata")
    report = BuildReport(name=name, out_dir=str(out_dir))
    captions = read_pata_captions(captions_json, report)
    images = _Images(images_dir)
    try:
        lines = files_lst.read_text(encoding="utf-8-sig").splitlines()
    except UnicodeDecodeError:
        raise AuditError(f"{files_lst}: not UTF-8 text") from None
    rows: list[dict[str, Any]] = []
    for lineno, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        report.n_rows += 1
        where = f"{files_lst.name}:{lineno}"
        key, sep, raw_url = line.partition("|")
        parsed = _parse_pata_key(key.strip(), captions) if sep else None
        if parsed is None or not all(parsed):
            report.skip("malformed", f"{where}: expected scene_race_gender_age|URL, got {line[:80]!r}")
            continue
        url = _clean_url(raw_url)
        if url is None:
            report.skip("bad_url", f"{where}: image URL {raw_url[:80]!r}")
            continue
        scene = parsed[0]
        if scene not in captions:
            report.skip("no_captions", f"{where}: scene {scene!r}")
            continue
        if not captions[scene].attributes():
            report.skip("no_captions", f"{where}: scene {scene!r} has no attribute with captions on both sides")
            continue
        images.add(url)
        rows.append({"where": where, "lineno": lineno, "url": url, "parts": parsed})
    items: list[dict[str, Any]] = []
    for r in _place_images(report, out_dir, images, rows):
        scene, race, gender, age = r["parts"]
        values = {"race": race.lower(), "gender": gender.lower(), "age": age.lower()}
        file = images.files[r["url"]]
        # The paper protocol draws per row: the same image listed under two scenes is two rows.
        for attr, k, pos, neg in pata_pairs(scene, captions[scene], protocol, seed, f"{scene}/{file}"):
            item_id = f"{name}/{r['lineno']:06d}/{attr}/{k}"
            items.append(
                {
                    "id": item_id,
                    "task": "ic",
                    "bias_type": attr,
                    "image": file,
                    "prompt": DEFAULT_IC_PROMPT,
                    "y_more": neg,
                    "y_less": pos,
                    "cluster": file,
                    "meta": {
                        "scene": scene,
                        **values,
                        "group": values[attr],
                        "pair": k,
                        "line": r["lineno"],
                        "url": r["url"],
                    },
                    "rephrase_prompt": pick(item_id, IC_REPHRASES),
                }
            )
    header_yaml = {
        "name": name,
        "description": "PATA image captioning: negative vs positive caption per image and attribute",
        "source": f"built by `mllm-audit suites build pata --protocol {protocol} --seed {seed}` from "
        f"{files_lst.name} and {captions_json.name}",
        "license": "as distributed by PATA and the image hosts; check their terms before sharing",
        "items": "items.jsonl",
        "images_dir": _images_dir_entry(out_dir, images.dir or out_dir),
        "group_by": "group",
    }
    _finish(report, out_dir, items, header_yaml)
    return report
