# Over 350 lines: the item schema and every check on a suite file: the suite contract, read end to end.
"""Suites: the item schema, loading, validation and image access.

A suite is a list of items. Each item asks one question of the model: given `image` and `prompt`,
is the more stereotypical answer `y_more` more likely than `y_less`? Optional fields carry the
material editing needs (rephrased prompt and image for generality, locality probes).

`--suite` takes a registered name (`suites/<name>.yaml`), a suite YAML, or a `.jsonl` of items.
Everything is validated on load; any problem is an `AuditError` naming file, line and field.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mllm_audit.errors import AuditError
from mllm_audit.util.files import (
    MAX_ITEMS_FILE_BYTES,
    MAX_LINE_CHARS,
    MAX_TEXT_CHARS,
    jsonl_objects,
    read_capped,
    read_yaml_mapping,
)
from mllm_audit.util.registry import Registry, yaml_folder
from mllm_audit.util.resources import suites_dir

TASKS = ("ic", "vqa")
SPLITS = ("train", "val", "eval")
# Pixel budget checked from the header before any decode (decompression-bomb guard).
MAX_IMAGE_PIXELS = 40_000_000
MAX_IMAGE_BYTES = 64 * 1024 * 1024
# Pixels an image keeps once decoded (`--max-pixels`, MLLM_AUDIT_MAX_PIXELS): a larger one is reduced
# while it is decoded (JPEG decodes at the reduced scale), aspect kept, so a batch of camera images
# holds at most batch size x this many pixels instead of their full resolution. 4 MP is 15 times the
# largest model input here (Emu3's 512 x 512); images at or under it are untouched.
DEFAULT_MAX_PIXELS = 4_000_000
MAX_PIXELS_ENV = "MLLM_AUDIT_MAX_PIXELS"
# Decoders PIL may use: the common raster formats only (no EPS/PostScript, which shells out).
IMAGE_FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "GIF", "TIFF")
MAX_META_DEPTH = 16

_REQUIRED = ("id", "task", "bias_type", "image", "prompt", "y_more", "y_less")
_OPTIONAL_STR = (
    "cluster",
    "split",
    "rephrase_prompt",
    "rephrase_image",
    "loc_prompt",
    "loc_answer",
    "m_loc_image",
    "m_loc_prompt",
    "m_loc_answer",
)
_ALLOWED = set(_REQUIRED) | set(_OPTIONAL_STR) | {"meta"}


@dataclass(frozen=True)
class Item:
    """One bias probe. Image paths are as written in the suite (relative)."""

    id: str
    task: str
    bias_type: str
    image: str
    prompt: str
    y_more: str
    y_less: str
    meta: dict[str, Any] = field(default_factory=dict)
    cluster: str | None = None
    split: str | None = None
    rephrase_prompt: str | None = None
    rephrase_image: str | None = None
    loc_prompt: str | None = None
    loc_answer: str | None = None
    m_loc_image: str | None = None
    m_loc_prompt: str | None = None
    m_loc_answer: str | None = None

    @property
    def cluster_key(self) -> str:
        """Items sharing this key are not independent (same image or scenario)."""
        return self.cluster or self.image

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass
class Suite:
    """A validated list of items plus where its images live."""

    name: str
    source: str
    items: list[Item]
    images_root: Path
    content_hash: str
    kind: str = "likelihood"
    description: str = ""
    license: str = ""
    allow_outside_paths: bool = False
    extra: dict[str, Any] = field(default_factory=dict)
    # Folders the suite's paths may name: the suite's own folder and --data-dir (see contained_path).
    roots: tuple[Path, ...] = ()

    def identity(self) -> dict[str, Any]:
        """What results.json records about the suite."""
        return {
            "name": self.name,
            "source": self.source,
            "content_hash": self.content_hash,
            "n_items": len(self.items),
            "kind": self.kind,
        }

    def image_path(self, rel: str) -> Path:
        """Resolve an item's image path, refusing paths that escape the suite's folder (or --data-dir)."""
        return contained_path(rel, self.images_root, self.roots or (self.images_root,), "image path",
                              self.allow_outside_paths)

    def select(self, split: str | None = None, limit: int | None = None) -> list[Item]:
        items = [it for it in self.items if split is None or it.split == split]
        return items[:limit] if limit is not None else items


def resolve_image_path(root: Path, rel: str, allow_outside: bool = False) -> Path:
    return contained_path(rel, root, (root,), "image path", allow_outside)


def contained_path(rel: str, base: Path, roots: tuple[Path, ...], what: str, allow_outside: bool = False) -> Path:
    """THE resolution of a path a suite file names (items, images_dir, item and probe images).

    `rel` is taken relative to `base` and resolved once (symlinks followed); the result must lie in
    one of `roots` (the suite's folder, --data-dir) unless `allow_outside` (--allow-outside-paths).
    Errors name the path and what it is; a NUL byte, a symlink loop or an over-long name is one of them.
    """
    if not isinstance(rel, str) or not rel.strip():
        raise AuditError(f"{what} must be a non-empty string, got {rel!r}")
    if "\x00" in rel:
        raise AuditError(f"{what} {rel!r} contains a NUL byte")
    p = Path(rel).expanduser() if allow_outside else Path(rel)
    if p.is_absolute() and not allow_outside:
        raise AuditError(f"{what} {rel!r} is absolute; pass --allow-outside-paths to permit it")
    try:
        full = (Path(base) / p).resolve()
        resolved_roots = [Path(r).resolve() for r in roots]
    except RuntimeError:  # Python < 3.13 reports a symlink loop this way
        raise AuditError(f"{what} {rel!r}: symlink loop") from None
    except OSError as e:
        raise AuditError(f"{what} {rel!r}: {e.strerror or type(e).__name__}") from None
    if not allow_outside and not any(full == r or r in full.parents for r in resolved_roots):
        raise AuditError(
            f"{what} {rel!r} escapes the suite folder {roots[0]}; pass --allow-outside-paths to permit it"
        )
    return full


def _regular_file(path: Path, what: str) -> None:
    """A readable regular file, or a one-line error saying what it is instead (FIFO, folder, loop)."""
    import stat

    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise AuditError(f"{what} not found: {path}") from None
    except OSError as e:
        raise AuditError(f"{what} {path}: {e.strerror or type(e).__name__}") from None
    if not stat.S_ISREG(mode):
        kind = "a folder" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode) else "a special file"
        raise AuditError(f"{what} {path} is not a regular file ({kind})")


def pixel_budget() -> int:
    """Pixels a decoded image may keep (`--max-pixels`; DEFAULT_MAX_PIXELS when not set)."""
    raw = os.environ.get(MAX_PIXELS_ENV, "")
    return int(raw) if raw.isdigit() and int(raw) > 0 else DEFAULT_MAX_PIXELS


def load_image(path: Path, max_pixels: int | None = None) -> Any:
    """Open an image as RGB after checking its size and format; errors name the file. An image over
    `max_pixels` (default: pixel_budget()) is reduced while decoding, so it never stays at full size."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    _regular_file(path, "image")
    if path.stat().st_size > MAX_IMAGE_BYTES:
        raise AuditError(f"image too large on disk ({path.stat().st_size} bytes): {path}")
    try:
        # Our own pixel limit (below) is lower than PIL's warning threshold: silence its warning,
        # which would otherwise print a multi-line message for a file we refuse anyway.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            probe = Image.open(path, formats=IMAGE_FORMATS)
        with probe:
            w, h = probe.size
            if w * h > MAX_IMAGE_PIXELS:
                raise AuditError(f"image has {w}x{h} pixels, over the {MAX_IMAGE_PIXELS} limit: {path}")
            probe.verify()
        budget = pixel_budget() if max_pixels is None else max_pixels
        with Image.open(path, formats=IMAGE_FORMATS) as img:
            if w * h > budget:  # thumbnail() decodes a JPEG at the reduced scale (draft) and reduces in place
                scale = (budget / (w * h)) ** 0.5
                img.thumbnail((max(1, int(w * scale)), max(1, int(h * scale))), Image.Resampling.LANCZOS)
            # The camera's "rotate 90" tag, applied as transformers.image_utils.load_image does.
            return ImageOps.exif_transpose(img).convert("RGB")
    except AuditError:
        raise
    except UnidentifiedImageError:
        raise AuditError(f"not a {'/'.join(IMAGE_FORMATS)} image (or corrupt): {path}") from None
    except (OSError, ValueError, SyntaxError) as e:
        raise AuditError(f"corrupt or unreadable image {path}: {e}") from None
    except Image.DecompressionBombError as e:  # pragma: no cover - guarded above
        raise AuditError(f"image refused as a decompression bomb: {path}: {e}") from None


def parse_item(obj: Any, where: str) -> Item:
    """Validate one JSON object as an Item; `where` names file:line for errors."""
    if not isinstance(obj, dict):
        raise AuditError(f"{where}: an item must be a JSON object, got {type(obj).__name__}")
    unknown = sorted(set(obj) - _ALLOWED)
    if unknown:
        from mllm_audit.util.text import clipped

        raise AuditError(f"{where}: unknown field {clipped(unknown[0])}")
    for key in _REQUIRED:
        if key not in obj:
            raise AuditError(f"{where}: missing required field {key!r}")
        if not isinstance(obj[key], str) or not obj[key].strip():
            raise AuditError(f"{where}: field {key!r} must be a non-empty string")
    for key in (*_REQUIRED, *_OPTIONAL_STR):
        if isinstance(obj.get(key), str) and len(obj[key]) > MAX_TEXT_CHARS:
            raise AuditError(f"{where}: field {key!r} has {len(obj[key])} characters, over the {MAX_TEXT_CHARS} limit")
    if obj["task"] not in TASKS:
        raise AuditError(f"{where}: task must be one of {', '.join(TASKS)}, got {obj['task']!r}")
    if obj["y_more"] == obj["y_less"]:
        raise AuditError(f"{where}: y_more and y_less are identical ({obj['y_more']!r})")
    if _continuation(obj["y_more"]) == _continuation(obj["y_less"]):
        raise AuditError(
            f"{where}: item {obj['id']!r}: y_more {obj['y_more']!r} and y_less {obj['y_less']!r} are the same "
            "continuation once a leading space is added (scoring.continuation_text); they cannot be told apart"
        )
    for key in _OPTIONAL_STR:
        if obj.get(key) is not None and (not isinstance(obj[key], str) or not obj[key].strip()):
            raise AuditError(f"{where}: field {key!r} must be a non-empty string when present")
    if obj.get("split") is not None and obj["split"] not in SPLITS:
        raise AuditError(f"{where}: split must be one of {', '.join(SPLITS)}, got {obj['split']!r}")
    if "meta" in obj and obj["meta"] is not None and not isinstance(obj["meta"], dict):
        raise AuditError(f"{where}: field 'meta' must be an object")
    if _depth(obj.get("meta")) > MAX_META_DEPTH:
        raise AuditError(f"{where}: field 'meta' is nested deeper than {MAX_META_DEPTH} levels")
    for a, b in (("loc_prompt", "loc_answer"), ("m_loc_prompt", "m_loc_answer"), ("m_loc_image", "m_loc_prompt")):
        if (obj.get(a) is None) != (obj.get(b) is None):
            raise AuditError(f"{where}: fields {a!r} and {b!r} go together")
    kwargs: dict[str, Any] = {k: obj.get(k) for k in _ALLOWED}
    kwargs["meta"] = obj.get("meta") or {}
    return Item(**kwargs)


def _continuation(answer: str) -> str:
    from mllm_audit.scoring.contract import continuation_text  # the scoring contract's rule, not a copy of it

    return continuation_text(answer)


def _depth(value: Any, limit: int = MAX_META_DEPTH + 1) -> int:
    """Nesting depth of JSON data, counted no further than `limit`."""
    if limit <= 0 or not isinstance(value, (dict, list)):
        return 0
    children = value.values() if isinstance(value, dict) else value
    return 1 + max((_depth(v, limit - 1) for v in children), default=0)


def read_items(path: Path) -> tuple[list[Item], str]:
    """Read and validate a JSONL file of items; returns items and the file's sha256."""
    _regular_file(path, "suite items file")
    raw = read_capped(path, MAX_ITEMS_FILE_BYTES, f"suite items file {path}")
    items: list[Item] = []
    seen: set[str] = set()
    for where, obj in jsonl_objects(path, "suite items file", max_line_chars=MAX_LINE_CHARS, raw=raw):
        item = parse_item(obj, where)
        if item.id in seen:
            raise AuditError(f"{where}: duplicate item id {item.id!r}")
        seen.add(item.id)
        items.append(item)
    if not items:
        raise AuditError(f"{path}: the suite has no items")
    return items, hashlib.sha256(raw).hexdigest()


def _read_yaml(path: Path) -> dict[str, Any]:
    return read_yaml_mapping(path)


SUITES = Registry("suite", yaml_folder(suites_dir, group="mllm_audit.suites"))


def registered_suites() -> dict[str, Path]:
    """Registered suite names -> their YAML files."""
    return dict(SUITES.entries())


def suite_info(path: Path) -> dict[str, Any]:
    """The YAML header of a registered suite, without loading its items (for `ls suites`)."""
    return _read_yaml(path)


def load_suite(spec: str | Path, data_dir: str | Path | None = None, allow_outside_paths: bool = False) -> Suite:
    """Load a suite from a registered name, a suite YAML, or a JSONL file of items."""
    spec_s = str(spec)
    reg = registered_suites()
    if spec_s in reg:
        path = reg[spec_s]
    else:
        path = Path(spec_s).expanduser()
        if not path.exists() and path.is_symlink():
            raise AuditError(f"suite {spec_s!r} is a broken symlink or a symlink loop")
        if not path.exists():
            known = ", ".join(reg) or "none"
            if path.suffix in (".yaml", ".yml", ".jsonl") or "/" in spec_s or spec_s.startswith("."):
                raise AuditError(f"suite file {spec_s!r} not found")
            raise AuditError(f"unknown suite {spec_s!r} (registered: {known}; or give a .yaml/.jsonl path)")
    header: dict[str, Any] = {}
    data_root: Path | None = None
    if data_dir is not None:
        data_root = Path(data_dir).expanduser().resolve()
        if not data_root.is_dir():
            raise AuditError(f"--data-dir {data_dir} is not a folder")
    suite_dir = path.parent.resolve()
    roots = (suite_dir,) if data_root is None else (suite_dir, data_root)
    if path.suffix in (".yaml", ".yml"):
        header = _read_yaml(path)
        kind = header.get("kind", "likelihood")
        if kind != "likelihood":
            raise AuditError(f"{path}: suite kind {kind!r} is not a likelihood suite")
        if "items" not in header:
            raise AuditError(f"{path}: missing 'items' (the JSONL file of items, relative to the YAML)")
        for key in ("items", "images_dir"):
            if key in header and not isinstance(header[key], str):
                raise AuditError(f"{path}: {key!r} must be a path (a string), got {type(header[key]).__name__}")
        items_path = contained_path(header["items"], suite_dir, roots, f"{path}: 'items'", allow_outside_paths)
        images_rel = header.get("images_dir") or (Path(header["items"]).parent.as_posix() or ".")
        images_root = contained_path(images_rel, suite_dir, roots, f"{path}: 'images_dir'", allow_outside_paths)
        name = str(header.get("name", path.stem))
    elif path.suffix == ".jsonl":
        items_path = path.resolve()
        images_root = items_path.parent
        name = path.stem
    else:
        raise AuditError(f"suite {spec_s!r}: expected a registered name, a .yaml or a .jsonl file")
    if data_root is not None:
        images_root = data_root
    items, digest = read_items(items_path)
    return Suite(
        name=name,
        source=str(path),
        items=items,
        images_root=images_root,
        content_hash=digest,
        description=str(header.get("description", "")),
        license=str(header.get("license", "")),
        allow_outside_paths=allow_outside_paths,
        extra={k: v for k, v in header.items() if k not in {"name", "items", "images_dir", "description", "license"}},
        roots=(images_root, *roots),
    )


def iter_image_refs(item: Item) -> Iterator[str]:
    """Every image path an item mentions (for validation and prefetch)."""
    for key in ("image", "rephrase_image", "m_loc_image"):
        v = getattr(item, key)
        if v:
            yield v


def blank_image(size: int = 384) -> Any:
    from PIL import Image

    return Image.new("RGB", (size, size), (255, 255, 255))


def sample_margin(s: Mapping[str, Any]) -> float:
    """The one sign: margin = logp(y_more) - logp(y_less), > 0 when the model prefers the stereotype."""
    if s.get("margin") is not None:
        return float(s["margin"])
    return float(s["logp_more"]) - float(s["logp_less"])
