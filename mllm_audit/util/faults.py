"""Faults of the system named in one line: a full disk, a read-only folder, a refused permission.

CI reads exit 1 as "a bias check failed", so a fault must never leave as a traceback (exit 1): it
becomes an AuditError (exit 2) that names the path and says what was kept. Used by every writer
(util/files.py's atomic writes, util/outputs.py, util/folders.py).
"""

from __future__ import annotations

import contextlib
import errno
import re
from collections.abc import Iterator
from pathlib import Path

from mllm_audit.errors import AuditError

NAMED_FAULTS = {errno.ENOSPC: "disk full", errno.EROFS: "read-only file system", errno.EACCES: "permission denied",
                errno.EDQUOT: "disk quota exceeded", errno.EPERM: "operation not permitted"}


def fault_message(e: OSError, path: Path | str | None, kept: str) -> str | None:
    """One line for a fault of the system (disk full, read-only, no permission), or None for others."""
    why = NAMED_FAULTS.get(e.errno or 0)
    if why is None:
        return None
    where = e.filename if e.filename else path
    return f"cannot write {where}: {why}; {kept}"


@contextlib.contextmanager
def named_faults(path: Path | str | None, kept: str = "nothing was replaced") -> Iterator[None]:
    """Turn ENOSPC / EROFS / EACCES (and quota, EPERM) inside the block into one AuditError line (exit 2)."""
    try:
        yield
    except OSError as e:
        msg = fault_message(e, path, kept)
        if msg is None:
            raise
        raise AuditError(msg) from None


# Libraries that write files in native code (safetensors, torch.save) report faults in their own
# exception types; their messages carry the OS's text or number.
_TEXT = (
    (re.compile(r"No space left on device|StorageFull|os error 28|code: 28\b", re.I), "disk full"),
    (re.compile(r"Read-only file system|ReadOnlyFilesystem|os error 30|code: 30\b", re.I), "read-only file system"),
    (re.compile(r"Permission denied|PermissionDenied|os error 13|code: 13\b", re.I), "permission denied"),
    (re.compile(r"Disk quota exceeded|os error 122", re.I), "disk quota exceeded"),
)
_WRITING: list[tuple[Path, str]] = []  # what this process is writing now, innermost last


def fault_reason(e: BaseException) -> str | None:
    """"disk full" etc. for a fault of the system raised by Python or by a library's native code."""
    if isinstance(e, OSError) and e.errno in NAMED_FAULTS:
        return NAMED_FAULTS[e.errno]
    text = str(e)
    for pattern, why in _TEXT:
        if pattern.search(text):
            return why
    return None


_FAILED: list[tuple[tuple[Path, str], BaseException]] = []  # the innermost writer the last exception left


@contextlib.contextmanager
def writing(path: Path, kept: str) -> Iterator[None]:
    """Declare what is being written (and what survives if it fails) for the CLI's fault line."""
    entry = (Path(path), kept)
    _WRITING.append(entry)
    try:
        yield
    except BaseException as e:
        if not (_FAILED and _FAILED[0][1] is e):  # an outer writer the same exception passes keeps the inner one
            _FAILED[:] = [(entry, e)]
        raise
    finally:
        _WRITING.remove(entry)


def describe_fault(e: BaseException) -> str | None:
    """The CLI's one line for a fault that reached it: the path (the failing file, else what the
    command was writing), why, and what was kept; None when `e` is not a fault of the system."""
    why = fault_reason(e)
    if why is None:
        return None
    name = getattr(e, "filename", None)
    if _FAILED and _FAILED[0][1] is e:
        path, kept = _FAILED[0][0]
    else:
        path, kept = _WRITING[-1] if _WRITING else (None, "files written before it are kept")
    where = name or path or "a file being written"
    return f"cannot write {where}: {why}; {kept}"
