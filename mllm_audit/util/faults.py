"""Faults of the system named in one line: a full disk, a read-only folder, a refused permission.

CI reads exit 1 as "a bias check failed", so a fault must never leave as a traceback (exit 1): it
becomes an AuditError (exit 2) that names the path and says what was kept. Used by every writer
(util/files.py's atomic writes, util/outputs.py, util/folders.py).
"""

from __future__ import annotations

import contextlib
import errno
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
