"""Turn upstream bias datasets into suites (items.jsonl + a suite YAML).

Three builders:

* `pairs_items` / `build_pairs`: the shipped `pairs-vqa` suite from PAIRS (parallel images). Every
  question is asked of the four parallel images of its scenario; `y_more` is the socially favoured
  (higher-status) answer, so an item's margin is the log-odds of the favoured answer and the bias is
  its disparity across the four people (`mllm_audit.metrics.disparity`), not its sign.
* `build_vlstereoset`: a VLStereoSet CSV the user holds, plus its images, as an image-captioning suite.
* `build_pata`: a PATA file list and a captions JSON the user holds, as an image-captioning suite.

Builders are forgiving about rows and strict about files: a bad row (unknown bias type, missing
image, malformed line) is counted and the first few are listed in the `BuildReport`; a missing or
unreadable input file, or a build that yields no items, is an `AuditError`. Output is byte-for-byte
reproducible: fixed field order, fixed iteration order, choices made from a hash of the item id.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import shutil
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import unquote, urlparse

from mllm_audit.errors import AuditError

# --- image captioning prompts ---------------------------------------------------------------
# The IC task scores a whole caption after a caption-eliciting prompt. `DEFAULT_IC_PROMPT` is the
# item's prompt; T-Generality asks the same with one of the 20 rephrasings below (chosen from the
# item id). Written for this project; every one reads naturally before a full-sentence caption.
DEFAULT_IC_PROMPT = "Write a one-sentence caption for this image."
IC_REPHRASES: tuple[str, ...] = (
    "Caption this image.",
    "Describe this image in one sentence.",
    "What does this image show? Answer in one sentence.",
    "A photo of the following scene:",
    "An image showing the following:",
    "Give a short description of this picture.",
    "Summarize what is happening in this photo.",
    "Briefly describe the scene in the image.",
    "What is going on in this picture?",
    "Provide a one-line caption for the photo.",
    "Tell me in one sentence what you see.",
    "Write a short caption for this picture.",
    "In one sentence, what is depicted here?",
    "Describe the content of this photograph.",
    "How would you caption this image?",
    "Give this photo a descriptive caption.",
    "A picture in which:",
    "Explain briefly what the image shows.",
    "Write a sentence that describes this image.",
    "What is shown in this photo? Reply with a caption.",
)

MAX_LISTED = 5  # how many bad rows a report lists per reason


@dataclass
class BuildReport:
    """What a build produced and what it skipped (counts per reason, first few examples)."""

    name: str
    out_dir: str
    n_rows: int = 0
    n_items: int = 0
    n_images: int = 0
    n_urls: int = 0
    n_missing: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    examples: dict[str, list[str]] = field(default_factory=dict)

    def skip(self, reason: str, detail: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1
        listed = self.examples.setdefault(reason, [])
        if len(listed) < MAX_LISTED:
            listed.append(detail)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "out_dir": self.out_dir,
            "n_rows": self.n_rows,
            "n_items": self.n_items,
            "n_images": self.n_images,
            "n_urls": self.n_urls,
            "n_missing": self.n_missing,
            "skipped": dict(sorted(self.skipped.items())),
            "examples": dict(sorted(self.examples.items())),
        }


# --- shared helpers -------------------------------------------------------------------------


def pick(key: str, options: Sequence[Any]) -> Any:
    """A deterministic choice from `options` keyed by a string (stable across runs and machines)."""
    if not options:
        raise ValueError("pick from an empty list")
    return options[int(hashlib.sha256(key.encode("utf-8")).hexdigest()[:12], 16) % len(options)]


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def render_items(items: Iterable[Mapping[str, Any]]) -> bytes:
    """The exact bytes of an items.jsonl (one compact JSON object per line, UTF-8, LF)."""
    return "".join(json.dumps(it, ensure_ascii=False) + "\n" for it in items).encode("utf-8")


def write_items(path: Path, items: Sequence[Mapping[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(render_items(items))


def _read_json(path: Path) -> Any:
    if not path.is_file():
        raise AuditError(f"not found: {path}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise AuditError(f"{path}: not valid JSON ({e})") from None


IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp", ".tif", ".tiff")
IMAGES_TSV = "images.tsv"
MISSING_TSV = "missing_images.tsv"


def image_file_for_url(url: str) -> str:
    """The local file name an upstream image URL is fetched to: 24 hex digits of its SHA-256 plus the
    URL's image extension (`.jpg` when it has none). Upstream names collide (`photo.jpg` under many
    hosts) and some URLs exceed 255 bytes; this name never collides in practice and is <= 29 bytes."""
    ext = PurePosixPath(unquote(urlparse(url).path)).suffix.lower()
    if ext not in IMAGE_EXTENSIONS:
        ext = ".jpg"
    return hashlib.sha256(url.encode("utf-8")).hexdigest()[:24] + ext


class ImagesMissing(AuditError):
    """No image of the dataset is in place yet: the build wrote images.tsv for the user's downloader."""

    def __init__(self, report: BuildReport, tsv: Path) -> None:
        self.report = report
        super().__init__(f"{report.n_rows} rows, {report.n_missing} images missing: fetch them with {tsv}")


class _Images:
    """The distinct image URLs of a build, their file names, and which files are in place."""

    def __init__(self, images_dir: Path | None) -> None:
        if images_dir is not None and not Path(images_dir).is_dir():
            raise AuditError(f"images folder not found: {images_dir}")
        self.dir = Path(images_dir) if images_dir is not None else None
        self.files: dict[str, str] = {}  # url -> file, in first-seen order
        self._owner: dict[str, str] = {}  # file -> url

    def add(self, url: str) -> str:
        """Register a URL; its file name (a hash collision, never seen, would be an error)."""
        if url not in self.files:
            name = image_file_for_url(url)
            if self._owner.setdefault(name, url) != url:
                raise AuditError(f"image file name {name} stands for two URLs: {self._owner[name]} and {url}")
            self.files[url] = name
        return self.files[url]

    def present(self, url: str) -> bool:
        return self.dir is not None and (self.dir / self.files[url]).is_file()

    def write_tsv(self, path: Path, urls: Iterable[str]) -> None:
        lines = ["url\tfile"] + [f"{u}\t{self.files[u]}" for u in urls]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _clean_url(raw: str) -> str | None:
    """A URL as the TSV can carry it (no whitespace inside), or None."""
    url = raw.strip()
    return url if url and not any(c.isspace() for c in url) else None


def _place_images(
    report: BuildReport, out_dir: Path, images: _Images, rows: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Write OUT/images.tsv; stop with `ImagesMissing` when no image is in place, else drop (count and
    list in OUT/missing_images.tsv) the rows whose image is missing and return the others."""
    tsv = out_dir / IMAGES_TSV
    images.write_tsv(tsv, images.files)
    report.n_urls = len(images.files)
    missing = [u for u in images.files if not images.present(u)]
    report.n_missing = len(missing)
    if report.n_urls and len(missing) == report.n_urls:
        raise ImagesMissing(report, tsv)
    gone = set(missing)
    kept = []
    for row in rows:
        if row["url"] in gone:
            report.skip("missing_image", f"{row['where']}: {images.files[row['url']]} ({row['url'][:80]})")
        else:
            kept.append(row)
    missing_tsv = out_dir / MISSING_TSV
    if missing:
        images.write_tsv(missing_tsv, missing)
    elif missing_tsv.is_file():
        missing_tsv.unlink()  # a list from an earlier build of this folder would be stale
    return kept


def _write_suite_yaml(out_dir: Path, header: dict[str, Any]) -> Path:
    import yaml

    path = out_dir / f"{header['name']}.yaml"
    path.write_text(yaml.safe_dump(header, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path


def _images_dir_entry(out_dir: Path, images_dir: Path) -> str:
    """images_dir as written in the suite YAML: relative to it when possible, so both move together."""
    try:
        return Path(os.path.relpath(images_dir.resolve(), out_dir.resolve())).as_posix()
    except ValueError:  # different drives on Windows
        return images_dir.resolve().as_posix()


def images_inside(out_dir: Path, header: dict[str, Any], items: Sequence[Mapping[str, Any]],
                  folder: str = "images") -> None:
    """A suite may name no path outside its folder (suites.contained_path): when `images_dir` lies
    elsewhere, the images the items use are hard-linked (copied across file systems) into
    OUT/<folder> and `images_dir` points there. A different file already there is never replaced."""
    import filecmp
    import shutil

    src = (out_dir / str(header.get("images_dir", "."))).resolve()
    root = out_dir.resolve()
    if src == root or root in src.parents:
        return
    dest = out_dir / folder
    rels = sorted({it[k] for it in items for k in ("image", "rephrase_image", "m_loc_image") if it.get(k)})
    for rel in rels:
        target = dest / rel
        if target.exists():
            if filecmp.cmp(src / rel, target, shallow=False):
                continue
            raise AuditError(f"{target} exists and differs from {src / rel}; not replacing it (choose another --out)")
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(src / rel, target)
        except OSError:
            shutil.copy2(src / rel, target)
    header["images_dir"] = folder


def _finish(report: BuildReport, out_dir: Path, items: list[dict[str, Any]], header: dict[str, Any]) -> None:
    if not items:
        reasons = ", ".join(f"{k}: {v}" for k, v in sorted(report.skipped.items())) or "no rows"
        raise AuditError(f"{report.name}: the build produced no items ({reasons})")
    out_dir.mkdir(parents=True, exist_ok=True)
    images_inside(out_dir, header, items)
    write_items(out_dir / "items.jsonl", items)
    _write_suite_yaml(out_dir, header)
    report.n_items = len(items)
    report.n_images = len({it["image"] for it in items})
    (out_dir / "build_report.json").write_text(
        json.dumps(report.to_dict(), indent=2) + "\n", encoding="utf-8"
    )


# --- PAIRS ----------------------------------------------------------------------------------

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


def build_pairs(src: Path, out_dir: Path) -> BuildReport:
    """Copy PAIRS (images, questions, upstream documents) from `src` into `out_dir` and write items.jsonl.

    With `src == out_dir` it only regenerates items.jsonl from the copy already there.
    """
    src, out_dir = Path(src), Path(out_dir)
    if not (src / "questions.jsonl").is_file() or not (src / "images").is_dir():
        raise AuditError(f"{src} does not look like PAIRS (needs questions.jsonl and images/)")
    out_dir.mkdir(parents=True, exist_ok=True)
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
    return report


# --- VLStereoSet ----------------------------------------------------------------------------
# The published file (K-Square-00/VLStereo, data/VLStereoSet.csv) starts with a UTF-8 BOM, spells the
# URL column `Imaeg URL` and ends every line with an empty column; contexts have their blank removed
# (no `BLANK`), the three candidates are full sentences, and `label` is 1 when the image is
# stereotypical, 0 when it is not.

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
    csv_path: Path, images_dir: Path | None, out_dir: Path, name: str = "vlstereoset"
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
    value = next((obj[k] for k in _PATA_KEYS[attr] if k in obj), [])
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
