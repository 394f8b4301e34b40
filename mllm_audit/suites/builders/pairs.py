"""PAIRS (parallel images): the shipped `pairs-vqa` suite. Every question is asked of the four parallel
images of its scenario; `y_more` is the socially favoured answer, so an item's margin is the log-odds
of the favoured answer and the bias is its disparity across the four people (metrics/disparity.py)."""

from __future__ import annotations

import re
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mllm_audit.errors import AuditError
from mllm_audit.suites.builders.common import (
    BUILD_KIND,
    BuildReport,
    _read_json,
    claim_out,
    pick,
    slug,
    write_items,
)

PAIRS_PERSONS = ("black_man", "black_woman", "white_man", "white_woman")
PAIRS_BIAS_TYPE = "gender-race"
# Upstream names images <race>_<gender>.png; one file carries a stray digit (status/phone/white_man1.png).
_PAIRS_FILE = re.compile(r"^(black|white)_(man|woman)\d*\.png$")
_PAIRS_COPY = ("questions.jsonl", "DATASHEET.md", "UPSTREAM_README.md")


def _pairs_question_id(choices: Sequence[str]) -> str:
    """A stable id shared by the same question across scenarios: `<choice0>-or-<choice1>`."""
    return f"{slug(choices[0])}-or-{slug(choices[1])}"


def _pairs_scenario_images(images_root: Path, section: str, scenario: str) -> dict[str, str]:
    folder = images_root / section / scenario
    if not folder.is_dir():
        raise AuditError(f"PAIRS: no image folder for {section}/{scenario} under {images_root}")
    found: dict[str, str] = {}
    for p in sorted(folder.iterdir()):
        m = _PAIRS_FILE.match(p.name)
        if not m:
            continue
        person = f"{m.group(1)}_{m.group(2)}"
        if person in found:
            raise AuditError(f"PAIRS: two images for {person} in {folder}")
        found[person] = p.relative_to(images_root).as_posix()
    missing = [p for p in PAIRS_PERSONS if p not in found]
    if missing:
        raise AuditError(f"PAIRS: {folder} lacks an image for {', '.join(missing)}")
    return found


def _read_pairs_questions(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        raise AuditError(f"PAIRS questions not found: {path}")
    from mllm_audit.util.files import jsonl_objects

    out: list[dict[str, Any]] = []
    for where, q in jsonl_objects(path, "PAIRS questions"):
        ok = (
            isinstance(q, dict)
            and all(isinstance(q.get(k), str) and q[k] for k in ("section", "scenario", "question"))
            and isinstance(q.get("choices"), list)
            and len(q["choices"]) == 2
            and all(isinstance(c, str) and c.strip() for c in q["choices"])
            and q.get("higher_status_choice") in (0, 1)
        )
        if not ok:
            raise AuditError(
                f"{where}: expected section, scenario, question, two choices, higher_status_choice"
            )
        out.append(q)
    return out


def _default_pairs_file(name: str) -> Path:
    from mllm_audit.util.resources import suites_dir

    return suites_dir() / "pairs-vqa" / name


def pairs_items(
    suite_dir: Path, rephrases: Path | None = None, locality: Path | None = None
) -> list[dict[str, Any]]:
    """Items of the pairs-vqa suite from `suite_dir` (questions.jsonl + images/), in question order.

    Four items per (scenario, question), one per person, in PAIRS_PERSONS order. The rephrase is
    chosen per (scenario, question), so the four parallel items stay parallel; locality probes are
    chosen per item id.
    """
    suite_dir = Path(suite_dir)
    images_root = suite_dir / "images"
    questions = _read_pairs_questions(suite_dir / "questions.jsonl")
    reph = _read_json(
        rephrases or _existing(suite_dir / "rephrases.json", _default_pairs_file("rephrases.json"))
    )
    loc = _read_json(locality or _existing(suite_dir / "locality.json", _default_pairs_file("locality.json")))
    m_loc, t_loc = loc.get("m_loc") or [], loc.get("t_loc") or []
    if not m_loc or not t_loc:
        raise AuditError("PAIRS locality file needs non-empty 'm_loc' and 't_loc' lists")
    items: list[dict[str, Any]] = []
    for q in questions:
        section, scenario, question = q["section"], q["scenario"], q["question"]
        qid = _pairs_question_id(q["choices"])
        favoured = q["choices"][q["higher_status_choice"]]
        other = q["choices"][1 - q["higher_status_choice"]]
        options = reph.get(question)
        if not options:
            raise AuditError(f"PAIRS: no rephrasings for question {question!r}")
        rephrase = pick(f"{section}/{scenario}/{qid}", options)
        images = _pairs_scenario_images(images_root, section, scenario)
        for person in PAIRS_PERSONS:
            race, gender = person.split("_")
            item_id = f"pairs/{section}/{scenario}/{qid}/{person}"
            ml = pick(item_id + "#m_loc", m_loc)
            tl = pick(item_id + "#t_loc", t_loc)
            items.append(
                {
                    "id": item_id,
                    "task": "vqa",
                    "bias_type": PAIRS_BIAS_TYPE,
                    "image": images[person],
                    "prompt": question,
                    "y_more": favoured,
                    "y_less": other,
                    "cluster": f"{section}/{scenario}",
                    "meta": {
                        "section": section,
                        "scenario": scenario,
                        "person": person,
                        "gender": gender,
                        "race": race,
                        "question_id": qid,
                    },
                    "rephrase_prompt": rephrase,
                    "loc_prompt": tl["prompt"],
                    "loc_answer": tl["answer"],
                    "m_loc_image": images[person],
                    "m_loc_prompt": ml["prompt"],
                    "m_loc_answer": ml["answer"],
                }
            )
    return items


def _existing(first: Path, fallback: Path) -> Path:
    return first if first.is_file() else fallback


def build_pairs(src: Path, out_dir: Path, overwrite: bool = False) -> BuildReport:
    """Copy PAIRS (images, questions, upstream documents) from `src` into `out_dir` and write items.jsonl.

    With `src == out_dir` (an earlier build, and `overwrite`) it only regenerates items.jsonl there.
    """
    src, out_dir = Path(src), Path(out_dir)
    if not (src / "questions.jsonl").is_file() or not (src / "images").is_dir():
        raise AuditError(f"{src} does not look like PAIRS (needs questions.jsonl and images/)")
    claim_out(out_dir, None, overwrite, "suites build pairs")
    if src.resolve() != out_dir.resolve():
        for name in _PAIRS_COPY:
            if (src / name).is_file():
                shutil.copyfile(src / name, out_dir / name)
        shutil.copytree(src / "images", out_dir / "images", dirs_exist_ok=True)
    items = pairs_items(out_dir)
    write_items(out_dir / "items.jsonl", items)
    report = BuildReport(name="pairs-vqa", out_dir=str(out_dir))
    report.n_rows = len(_read_pairs_questions(out_dir / "questions.jsonl"))
    report.n_items = len(items)
    report.n_images = len({it["image"] for it in items})
    from mllm_audit.util.outputs import write_manifest

    write_manifest(out_dir, BUILD_KIND, "suites build pairs", complete=True)
    return report


# --- VLStereoSet ----------------------------------------------------------------------------
# The published file (K-Square-00/VLStereo, data/VLStereoSet.csv) starts with a UTF-8 BOM, spells the
# URL column `Imaeg URL` and ends every line with an empty column; contexts have their blank removed
# (no `BLANK`), the three candidates are full sentences, and `label` is 1 when the image is
# stereotypical, 0 when it is not.
