"""What a run's numbers depend on, as hashes: the model's files, the suite's items and images.

Every byte counts: a model changed in the middle of one weight file is another model, so files are
hashed whole (sha256, streamed). Hashing a 15 GB model takes a minute, so digests are cached in a
sidecar file keyed by the file's resolved path, size, mtime and inode: a second run of the same
files reads the cache, and any change to a file (which moves its size or mtime) hashes it again.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

# Files whose bytes change what a model computes: weights, configs, tokenizers, remote code.
MODEL_FILE_SUFFIXES = (
    ".safetensors", ".bin", ".pth", ".pt", ".ckpt", ".json", ".model", ".txt", ".tiktoken", ".py", ".yaml",
)
CACHE_ENV = "MLLM_AUDIT_HASH_CACHE"
_CHUNK = 8 << 20


def cache_path() -> Path:
    """The sidecar cache: $MLLM_AUDIT_HASH_CACHE, else the user's cache folder."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "mllm-audit" / "file-hashes.json"


class HashCache:
    """sha256 digests of files, remembered by (path, size, mtime_ns, inode)."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or cache_path()
        self._entries: dict[str, dict[str, Any]] | None = None
        self._dirty = False
        self.hits = 0
        self.misses = 0

    def _load(self) -> dict[str, dict[str, Any]]:
        if self._entries is None:
            try:
                data = json.loads(self.path.read_text(encoding="utf-8"))
                self._entries = data if isinstance(data, dict) else {}
            except (OSError, ValueError):
                self._entries = {}  # a missing or damaged cache only costs a re-hash
        return self._entries

    def sha256(self, file: Path) -> str:
        """The full sha256 of `file` (hex), from the cache when the file is unchanged."""
        real = Path(file).resolve()
        st = real.stat()
        key = str(real)
        stamp = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "inode": st.st_ino}
        entry = self._load().get(key)
        if isinstance(entry, dict) and all(entry.get(k) == v for k, v in stamp.items()) and entry.get("sha256"):
            self.hits += 1
            return str(entry["sha256"])
        self.misses += 1
        digest = sha256_file(real)
        self._load()[key] = {**stamp, "sha256": digest}
        self._dirty = True
        return digest

    def save(self) -> None:
        """Write the cache back (atomically; a cache that cannot be written is skipped)."""
        if not self._dirty or self._entries is None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            current: dict[str, Any] = {}
            try:  # another process may have added entries meanwhile: keep them
                loaded = json.loads(self.path.read_text(encoding="utf-8"))
                current = loaded if isinstance(loaded, dict) else {}
            except (OSError, ValueError):
                pass
            current.update(self._entries)
            tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(current), encoding="utf-8")
            os.replace(tmp, self.path)
            self._dirty = False
        except OSError:
            pass


def sha256_file(path: Path) -> str:
    """sha256 over every byte of a file, streamed in 8 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(_CHUNK):
            h.update(block)
    return h.hexdigest()


def _combine(named: Iterable[tuple[str, str]]) -> str:
    h = hashlib.sha256()
    for name, digest in sorted(named):
        h.update(f"{name}\0{digest}\n".encode())
    return h.hexdigest()


def model_files(folder: Path) -> list[Path]:
    """The files of a model folder that change its numbers (hidden files and folders skipped)."""
    out = []
    for f in sorted(Path(folder).rglob("*")):
        rel = f.relative_to(folder)
        if any(part.startswith(".") for part in rel.parts) or not f.is_file():
            continue
        if f.suffix.lower() in MODEL_FILE_SUFFIXES:
            out.append(f)
    return out


def model_digest(folder: Path | str, cache: HashCache | None = None) -> tuple[str, dict[str, str]] | None:
    """("sha256:<hex>" over all files, {relative name: sha256}) of a local model folder; None for a hub id."""
    path = Path(folder)
    if not path.is_dir():
        return None
    own = cache is None
    cache = cache or HashCache()
    files = {str(f.relative_to(path)): cache.sha256(f) for f in model_files(path)}
    if own:
        cache.save()
    return "sha256:" + _combine(files.items()), files


def text_digest(obj: Any) -> str:
    """sha256 of a JSON-able value (templates, options), key order ignored."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def images_digest(root: Path, refs: Iterable[str], resolve: Any, cache: HashCache | None = None) -> dict[str, Any]:
    """Identity of the images a run reads: one hash over (relative path, sha256) and where they live.

    `resolve(rel)` maps a suite's relative path to the file (the suite's own path rules).
    """
    own = cache is None
    cache = cache or HashCache()
    names = sorted(set(refs))
    digests = [(rel, cache.sha256(Path(resolve(rel)))) for rel in names]
    if own:
        cache.save()
    return {"images_root": str(Path(root).resolve()), "n_images": len(names), "images_hash": _combine(digests)}


def first_difference(old: Any, new: Any, prefix: str = "") -> tuple[str, Any, Any] | None:
    """The first (dotted field, old value, new value) where two JSON-like values differ, or None."""
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        for key in sorted(set(old) | set(new), key=str):
            found = first_difference(old.get(key), new.get(key), f"{prefix}.{key}" if prefix else str(key))
            if found:
                return found
        return None
    if isinstance(old, (list, tuple)) and isinstance(new, (list, tuple)) and len(old) == len(new):
        for k, (a, b) in enumerate(zip(old, new, strict=True)):
            found = first_difference(a, b, f"{prefix}[{k}]")
            if found:
                return found
        return None
    return None if old == new else (prefix or "(value)", old, new)
