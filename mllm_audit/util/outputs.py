"""The one guard for every file and folder the tool writes (other than run folders: util/folders.py).

Rules, decided here once for every command (`toy train`, `gate --junit`, `report --html`, `suites
frame`, `suites build`, `study`, `convert`, `fix --save`, `train-editor --output`):

- A target that exists is refused unless it is this command's own earlier output *of the same kind*,
  recognised by its manifest, and the user said `--overwrite`. A folder's manifest is a
  `.mllm-audit-output.json` inside it; a file's is a marker line near its top
  (`mllm-audit-output: KIND`, in the file format's comment syntax). A user's file is never replaced.
- Nothing is written into a model, editor-state or run folder the command did not create (every
  file there is part of its identity or its record). A suite's identity is its items and the images
  they name, so a new file beside them changes nothing; a suite's own files are never replaced.
- `--name` values that become file names hold no separator, no `..`, nothing absolute.
- Files are written whole or not at all (temporary file, fsync, rename); a full disk, a read-only
  folder or a refused permission is one line naming the path and what was kept (exit 2).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mllm_audit.errors import AuditError
from mllm_audit.util.faults import named_faults
from mllm_audit.util.holders import SEALED, folder_kind

MANIFEST_NAME = ".mllm-audit-output.json"
MARKER = "mllm-audit-output:"
_MARKER_RE = re.compile(rb"mllm-audit-output: ?([a-z0-9-]+)")
_HEAD_BYTES = 4096


def check_name(name: str, flag: str = "--name") -> str:
    """A name that becomes a file or folder name: no separator, no `..`, not absolute, not hidden."""
    text = str(name)
    if (not text or text in (".", "..") or "/" in text or "\\" in text or "\0" in text or text.startswith(".")
            or ".." in text or os.path.isabs(text) or len(text) > 120):
        raise AuditError(f"{flag} {text[:60]!r}: a plain name is needed (letters, digits, - _ ., no path "
                         "separator or '..', at most 120 characters)")
    return text


def holder_kind(folder: Path) -> str | None:
    """What a folder holds that the tool must not write into: 'run', 'model', 'editor state' (else None)."""
    kind = folder_kind(folder)
    return kind.replace("-", " ") if kind in SEALED else None


def file_kind(path: Path) -> str | None:
    """The kind a file written by this tool declares in its head (None: not ours, or unreadable)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(_HEAD_BYTES)
    except OSError:
        return None
    m = _MARKER_RE.search(head)
    return m.group(1).decode() if m else None


def read_manifest(folder: Path) -> dict[str, Any] | None:
    """The manifest of a folder this tool wrote (None: none, or damaged, or too large to be one)."""
    f = Path(folder) / MANIFEST_NAME
    try:
        if not f.is_file() or f.stat().st_size > 1 << 20:
            return None
        data = json.loads(f.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("kind"), str) else None


def write_manifest(folder: Path, kind: str, command: str, complete: bool = True, **extra: Any) -> Path:
    """Mark `folder` as this command's output of `kind` (written last, so its presence means whole)."""
    from mllm_audit.util.files import atomic_write_json

    path = Path(folder) / MANIFEST_NAME
    with named_faults(path, "the folder's other files"):
        atomic_write_json(path, {"kind": kind, "command": command, "complete": complete, **extra})
    return path


def refuse_inside(path: Path, flag: str, created: Sequence[Path] = ()) -> None:
    """Refuse a target whose folder is a model, editor state or run the command did not create."""
    parent = path.parent if str(path.parent) else Path(".")
    if any(_same(parent, c) for c in created):
        return
    kind = holder_kind(parent)  # a suite is not sealed: its identity is its items and the images they name
    if kind is not None:
        raise AuditError(f"{flag} {path}: {parent} holds a {kind}; mllm-audit writes nothing into a {kind} "
                         "folder it did not create (choose a path outside it)")


def _same(a: Path, b: Path) -> bool:
    try:
        return Path(a).resolve() == Path(b).resolve()
    except OSError:
        return False


def check_file(path: Path, kind: str, flag: str, overwrite: bool = False, created: Sequence[Path] = (),
               owner: Path | None = None) -> Path:
    """May this command write the file `path` (an output of `kind`)? Raises an AuditError naming why not.

    `owner`: the file whose marker vouches for `path` (a format without comments, such as JSONL, is
    recognised through the YAML written beside it)."""
    path = Path(path)
    refuse_inside(path, flag, created)
    if path.is_symlink() or (path.exists() and not path.is_file()):
        raise AuditError(f"{flag} {path} exists and is not a regular file; refusing to replace it")
    if path.exists():
        own = file_kind(owner if owner is not None else path)
        if own != kind:
            what = f"a {own} written by mllm-audit" if own else "a file mllm-audit did not write"
            raise AuditError(f"{flag} {path} exists ({what}); refusing to overwrite it (choose a new path)")
        if not overwrite:
            raise AuditError(f"{flag} {path} holds an earlier {kind}; pass --overwrite to replace it")
    return path


def check_append(path: Path, flag: str) -> Path:
    """A file the tool appends to by protocol (GitHub's step summary): it must be a regular file (or
    absent), not another output of this tool, and not inside a run, model, suite or editor state."""
    path = Path(path)
    refuse_inside(path, flag, ())
    if path.exists() and (path.is_symlink() or not path.is_file()):
        raise AuditError(f"{flag} {path} exists and is not a regular file; refusing to append to it")
    own = file_kind(path) if path.exists() else None
    if own is not None:
        raise AuditError(f"{flag} {path} is a {own} written by mllm-audit; refusing to append to it")
    return path


def check_folder(path: Path, kind: str, flag: str, overwrite: bool = False, created: Sequence[Path] = ()) -> Path:
    """May this command write the folder `path` (an output of `kind`)? Empty or absent folders may be
    written; one holding files only if its manifest says `kind` and (when complete) `--overwrite` is given."""
    path = Path(path)
    refuse_inside(path, flag, created)
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        raise AuditError(f"{flag} {path} exists and is not a folder; refusing to replace it")
    if not path.is_dir() or not any(path.iterdir()):
        return path
    man = read_manifest(path)
    if man is None:
        held = folder_kind(path)
        what = (f"holds a {held.replace('-', ' ')}" if held and held != "files"
                else "holds files mllm-audit did not write")
        raise AuditError(f"{flag} {path} {what}; refusing to overwrite it (choose a new folder)")
    if man["kind"] != kind:
        raise AuditError(f"{flag} {path} holds a {man['kind']} written by mllm-audit, not a {kind}; "
                         "refusing to overwrite it")
    if man.get("complete", True) and not overwrite:
        raise AuditError(f"{flag} {path} holds an earlier {kind}; pass --overwrite to replace it")
    return path


def marker_line(kind: str, comment: str = "#") -> str:
    """The manifest of a file output: one comment line naming its kind (`<!-- ... -->` for HTML/XML)."""
    body = f"{MARKER} {kind} (written by mllm-audit)"  # no "--": XML comments forbid it
    return f"<!-- {body} -->" if comment == "<!--" else f"{comment} {body}"


def write_text(path: Path, text: str, kind: str, what_kept: str = "nothing was replaced") -> Path:
    """Write a checked file output whole (atomic), its faults named; `text` must carry its marker."""
    from mllm_audit.util.files import atomic_write_text

    if MARKER not in text[:_HEAD_BYTES]:
        raise AssertionError(f"output {kind} written without its marker")  # a programming error
    with named_faults(path, what_kept):
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, text)
    return path


def clean_leftovers(target: Path, log: Any = None) -> list[Path]:
    """Remove temporary folders beside `target` that an interrupted run of the same command left
    (`.NAME.tmp-PID`, `.NAME.old-PID` whose process is gone): each is named through `log` (default: a line on stderr)
    and returned."""
    from mllm_audit.util.console import note

    target = Path(target)
    parent = target.parent if str(target.parent) else Path(".")
    removed: list[Path] = []
    if not parent.is_dir():
        return removed
    stem = glob_escape(target.name)
    for tmp in [*parent.glob(f".{stem}.tmp-*"), *parent.glob(f".{stem}.old-*")]:
        pid = tmp.name.rsplit("-", 1)[-1]
        if not pid.isdigit() or int(pid) == os.getpid() or pid_alive(int(pid)) or not tmp.is_dir():
            continue
        shutil.rmtree(tmp, ignore_errors=True)
        removed.append(tmp)
        (log or note)(f"removed {tmp}, left by an interrupted earlier run")
    return removed


def pid_alive(pid: int) -> bool:
    """Is process `pid` running (on this machine)?"""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def glob_escape(name: str) -> str:
    """A literal file name inside a glob pattern."""
    return re.sub(r"([*?\[])", r"[\1]", name)
