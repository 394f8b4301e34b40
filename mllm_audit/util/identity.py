"""What a run's numbers depend on, as hashes: the model's files, the suite's items and images.

Every byte counts: a model changed in the middle of one weight file is another model, so files are
hashed whole (sha256, streamed). Hashing a 15 GB model takes a minute, so digests are cached in a
sidecar file keyed by the file's resolved path, size, mtime, inode *and ctime*: `touch -d` can set
mtime back after an in-place edit, but not ctime (the kernel sets it on every change), so a file
changed in place is hashed again. The cache is read with a size cap (a huge, damaged or hostile
cache costs a re-hash, never a hang or the memory), only regular files are hashed (a FIFO or a
device named as a weight is refused), entries of files that are gone are pruned when it is written,
and `--rehash` (or MLLM_AUDIT_REHASH=1) ignores it for one run.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from mllm_audit.errors import AuditError
from mllm_audit.util.files import atomic_write_text

# Files whose bytes change what a model computes: weights, configs, tokenizers, remote code.
MODEL_FILE_SUFFIXES = (
    ".safetensors", ".bin", ".pth", ".pt", ".ckpt", ".json", ".model", ".txt", ".tiktoken", ".py", ".yaml",
)
CACHE_ENV = "MLLM_AUDIT_HASH_CACHE"
REHASH_ENV = "MLLM_AUDIT_REHASH"
MAX_CACHE_BYTES = 32 << 20  # about 150,000 entries; a larger cache is ignored (and rewritten pruned)
MAX_CACHE_ENTRIES = 100_000
_CHUNK = 8 << 20
_STAMP = ("size", "mtime_ns", "ctime_ns", "inode")


def cache_path() -> Path:
    """The sidecar cache: $MLLM_AUDIT_HASH_CACHE, else the user's cache folder."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "mllm-audit" / "file-hashes.json"


def rehash_requested() -> bool:
    """`--rehash` (the CLI sets MLLM_AUDIT_REHASH=1): ignore cached digests, hash every file again."""
    return os.environ.get(REHASH_ENV, "") not in ("", "0")


def _read_cache(path: Path) -> dict[str, dict[str, Any]]:
    """The cache's entries, or {} when it is missing, not a regular file, over the cap or damaged."""
    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_CACHE_BYTES:
            return {}
        with open(path, "rb") as fh:
            raw = fh.read(MAX_CACHE_BYTES + 1)
        data = json.loads(raw) if len(raw) <= MAX_CACHE_BYTES else None
    except (OSError, ValueError, RecursionError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, dict)}


def file_stamp(path: Path) -> dict[str, int]:
    """What the cache keys a file by; a file that is not a regular file is refused, naming it."""
    try:
        st = os.stat(path)
    except OSError as e:
        raise AuditError(f"cannot read {path}: {e.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise AuditError(f"{path} is not a regular file (a FIFO, device or folder); refusing to hash it")
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "ctime_ns": st.st_ctime_ns, "inode": st.st_ino}


class HashCache:
    """sha256 digests of files, remembered by (path, size, mtime_ns, ctime_ns, inode)."""

    def __init__(self, path: Path | None = None, rehash: bool | None = None) -> None:
        self.path = path or cache_path()
        self.rehash = rehash_requested() if rehash is None else rehash
        self._entries: dict[str, dict[str, Any]] | None = None
        self._dirty = False
        self.hits = 0
        self.misses = 0

    def _load(self) -> dict[str, dict[str, Any]]:
        if self._entries is None:
            self._entries = {} if self.rehash else _read_cache(self.path)
        return self._entries

    def sha256(self, file: Path) -> str:
        """The full sha256 of `file` (hex), from the cache when the file is unchanged."""
        real = Path(file).resolve()
        stamp = file_stamp(real)
        key = str(real)
        entry = self._load().get(key)
        if isinstance(entry, dict) and all(entry.get(k) == stamp[k] for k in _STAMP) and entry.get("sha256"):
            self.hits += 1
            return str(entry["sha256"])
        self.misses += 1
        digest = sha256_file(real)
        if file_stamp(real) != stamp:  # changed while being read: do not remember a digest of neither
            raise AuditError(f"{real} changed while it was being hashed; run again once it is written")
        self._load()[key] = {**stamp, "sha256": digest}
        self._dirty = True
        return digest

    def save(self) -> None:
        """Write the cache back (atomically; a cache that cannot be written is skipped), keeping other
        processes' entries and pruning those whose files are gone or over MAX_CACHE_ENTRIES (oldest first)."""
        if not self._dirty or self._entries is None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            current = _read_cache(self.path)  # another process may have added entries meanwhile: keep them
            current.update(self._entries)
            kept = {k: v for k, v in current.items() if os.path.isfile(k)}
            if len(kept) > MAX_CACHE_ENTRIES:
                newest = sorted(kept, key=lambda k: kept[k].get("ctime_ns") or 0)[-MAX_CACHE_ENTRIES:]
                kept = {k: kept[k] for k in newest}
            atomic_write_text(self.path, json.dumps(kept))
            self._dirty = False
        except (OSError, AuditError):  # a cache that cannot be written is skipped
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
