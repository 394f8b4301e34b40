"""What every suite builder shares: the build report, deterministic choices, item and suite-YAML
writers, and placing the images a suite reads (downloaded, linked or listed as missing)."""

from __future__ import annotations

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
    from mllm_audit.util.files import atomic_write_bytes

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, render_items(items))


BUILD_KIND = "suite-build"


def claim_out(out_dir: Path, name: str | None, overwrite: bool, command: str) -> Path:
    """The output guard for `suites build --output` (util/outputs.py): `--name` is a plain name; OUT is
    new, empty, or an earlier build (an unfinished one, stopped for missing images, is continued; a
    finished one is replaced only with `--overwrite`). Marks OUT as this build's before writing."""
    from mllm_audit.util import outputs

    if name is not None:
        outputs.check_name(name, "--name")
    out_dir = outputs.check_folder(Path(out_dir), BUILD_KIND, "--output", overwrite)
    with outputs.named_faults(out_dir):
        out_dir.mkdir(parents=True, exist_ok=True)
    outputs.write_manifest(out_dir, BUILD_KIND, command, complete=False)
    return out_dir


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
    from mllm_audit.util.files import write_yaml

    return write_yaml(out_dir / f"{header['name']}.yaml", header)


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
            raise AuditError(f"{target} exists and differs from {src / rel}; not replacing it "
                             "(choose another --output)")
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
    from mllm_audit.util.files import atomic_write_text
    from mllm_audit.util.outputs import write_manifest

    atomic_write_text(out_dir / "build_report.json", json.dumps(report.to_dict(), indent=2) + "\n")
    write_manifest(out_dir, BUILD_KIND, f"suites build {report.name}", complete=True)


# --- PAIRS ----------------------------------------------------------------------------------
