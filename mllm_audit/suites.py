"""Suites: the item schema, loading, validation and image access.

A suite is a list of items. Each item asks one question of the model: given `image` and `prompt`,
is the more stereotypical answer `y_more` more likely than `y_less`? Optional fields carry the
material editing needs (rephrased prompt and image for generality, locality probes).

`--suite` takes a registered name (`suites/<name>.yaml`), a suite YAML, or a `.jsonl` of items.
Everything is validated on load; any problem is an `AuditError` naming file, line and field.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .errors import AuditError
from .files import read_yaml_mapping
from .resources import suites_dir

TASKS = ("ic", "vqa")
SPLITS = ("train", "val", "eval")
# Pixel budget checked from the header before any decode (decompression-bomb guard).
MAX_IMAGE_PIXELS = 40_000_000
MAX_IMAGE_BYTES = 64 * 1024 * 1024
# Decoders PIL may use: the common raster formats only (no EPS/PostScript, which shells out).
IMAGE_FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "GIF", "TIFF")

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
        """Resolve an item's image path, refusing paths that escape the images root."""
        return resolve_image_path(self.images_root, rel, self.allow_outside_paths)

    def select(self, split: str | None = None, limit: int | None = None) -> list[Item]:
        items = [it for it in self.items if split is None or it.split == split]
        return items[:limit] if limit is not None else items


def resolve_image_path(root: Path, rel: str, allow_outside: bool = False) -> Path:
    p = Path(rel)
    if p.is_absolute() and not allow_outside:
        raise AuditError(f"image path {rel!r} is absolute; pass --allow-outside-paths to permit it")
    full = (root / p).resolve()
    if not allow_outside:
        try:
            full.relative_to(root.resolve())
        except ValueError:
            raise AuditError(
                f"image path {rel!r} escapes the suite folder {root}; pass --allow-outside-paths to permit it"
            ) from None
    return full


def load_image(path: Path) -> Any:
    """Open an image as RGB after checking its size and format; errors name the file."""
    from PIL import Image, UnidentifiedImageError

    if not path.is_file():
        raise AuditError(f"image not found: {path}")
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
        with Image.open(path, formats=IMAGE_FORMATS) as img:
            return img.convert("RGB")
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
        raise AuditError(f"{where}: unknown field {unknown[0]!r}")
    for key in _REQUIRED:
        if key not in obj:
            raise AuditError(f"{where}: missing required field {key!r}")
        if not isinstance(obj[key], str) or not obj[key].strip():
            raise AuditError(f"{where}: field {key!r} must be a non-empty string")
    if obj["task"] not in TASKS:
        raise AuditError(f"{where}: task must be one of {', '.join(TASKS)}, got {obj['task']!r}")
    if obj["y_more"] == obj["y_less"]:
        raise AuditError(f"{where}: y_more and y_less are identical ({obj['y_more']!r})")
    for key in _OPTIONAL_STR:
        if obj.get(key) is not None and (not isinstance(obj[key], str) or not obj[key].strip()):
            raise AuditError(f"{where}: field {key!r} must be a non-empty string when present")
    if obj.get("split") is not None and obj["split"] not in SPLITS:
        raise AuditError(f"{where}: split must be one of {', '.join(SPLITS)}, got {obj['split']!r}")
    if "meta" in obj and obj["meta"] is not None and not isinstance(obj["meta"], dict):
        raise AuditError(f"{where}: field 'meta' must be an object")
    for a, b in (("loc_prompt", "loc_answer"), ("m_loc_prompt", "m_loc_answer"), ("m_loc_image", "m_loc_prompt")):
        if (obj.get(a) is None) != (obj.get(b) is None):
            raise AuditError(f"{where}: fields {a!r} and {b!r} go together")
    kwargs = {k: obj.get(k) for k in _ALLOWED}
    kwargs["meta"] = obj.get("meta") or {}
    return Item(**kwargs)


def read_items(path: Path) -> tuple[list[Item], str]:
    """Read and validate a JSONL file of items; returns items and the file's sha256."""
    if not path.is_file():
        raise AuditError(f"suite items file not found: {path}")
    raw = path.read_bytes()
    items: list[Item] = []
    seen: set[str] = set()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise AuditError(f"{path}: not UTF-8 text") from None
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise AuditError(f"{path}:{n}: malformed JSON ({e.msg})") from None
        item = parse_item(obj, f"{path}:{n}")
        if item.id in seen:
            raise AuditError(f"{path}:{n}: duplicate item id {item.id!r}")
        seen.add(item.id)
        items.append(item)
    if not items:
        raise AuditError(f"{path}: the suite has no items")
    return items, hashlib.sha256(raw).hexdigest()


def _read_yaml(path: Path) -> dict[str, Any]:
    return read_yaml_mapping(path)


def registered_suites() -> dict[str, Path]:
    """Registered suite names -> their YAML files."""
    return {p.stem: p for p in sorted(suites_dir().glob("*.yaml"))}


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
        if not path.exists():
            known = ", ".join(reg) or "none"
            if path.suffix in (".yaml", ".yml", ".jsonl") or "/" in spec_s or spec_s.startswith("."):
                raise AuditError(f"suite file {spec_s!r} not found")
            raise AuditError(f"unknown suite {spec_s!r} (registered: {known}; or give a .yaml/.jsonl path)")
    header: dict[str, Any] = {}
    if path.suffix in (".yaml", ".yml"):
        header = _read_yaml(path)
        kind = header.get("kind", "likelihood")
        if kind != "likelihood":
            raise AuditError(f"{path}: suite kind {kind!r} is not a likelihood suite")
        if "items" not in header:
            raise AuditError(f"{path}: missing 'items' (the JSONL file of items, relative to the YAML)")
        items_path = (path.parent / str(header["items"])).resolve()
        images_root = (path.parent / str(header.get("images_dir", Path(str(header["items"])).parent))).resolve()
        name = str(header.get("name", path.stem))
    elif path.suffix == ".jsonl":
        items_path = path.resolve()
        images_root = items_path.parent
        name = path.stem
    else:
        raise AuditError(f"suite {spec_s!r}: expected a registered name, a .yaml or a .jsonl file")
    if data_dir is not None:
        images_root = Path(data_dir).expanduser().resolve()
        if not images_root.is_dir():
            raise AuditError(f"--data-dir {data_dir} is not a folder")
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
    )


def iter_image_refs(item: Item) -> Iterator[str]:
    """Every image path an item mentions (for validation and prefetch)."""
    for key in ("image", "rephrase_image", "m_loc_image"):
        v = getattr(item, key)
        if v:
            yield v
