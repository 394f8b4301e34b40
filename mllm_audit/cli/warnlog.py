"""Third-party warnings go to a log file, not the console: the command's own lines stay readable.

Python warnings (FutureWarning, UserWarning, ... of transformers, peft, torch) and library log records
(bitsandbytes' "Failed to load CPU gemm_4bit_forward ...") are appended to `$MLLM_AUDIT_LOG`, by default
`~/.cache/mllm-audit/warnings.log`; one line on stderr at the end says how many went there. Only the
command-line entry point does this: library callers keep Python's defaults.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

_STATE: dict[str, object] = {}


def log_path() -> Path:
    return Path(os.environ.get("MLLM_AUDIT_LOG") or Path.home() / ".cache" / "mllm-audit" / "warnings.log")


class _Counting(logging.FileHandler):
    def emit(self, record: logging.LogRecord) -> None:
        _STATE["count"] = int(_STATE.get("count", 0)) + 1  # type: ignore[call-overload]
        super().emit(record)


def route_warnings_to_log() -> Path | None:
    """Send warnings and library log records to the log file (idempotent); None when it cannot be opened."""
    if "handler" in _STATE:
        return log_path()
    path = log_path()
    try:
        from mllm_audit.errors import AuditError
        from mllm_audit.util.outputs import check_append

        check_append(path, "$MLLM_AUDIT_LOG")  # never inside a run, model or suite, nor a file the tool wrote
    except AuditError:
        return None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = _Counting(path, encoding="utf-8", delay=True)
    except OSError:
        return None
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s: %(message)s"))
    logging.captureWarnings(True)
    for name in ("py.warnings", ""):  # "" = the root logger: libraries' own loggers propagate to it
        logger = logging.getLogger(name)
        logger.addHandler(handler)
        if name:
            logger.propagate = False
    logging.getLogger().setLevel(logging.WARNING)
    _STATE["handler"] = handler
    return path


def count() -> int:
    return int(_STATE.get("count", 0))  # type: ignore[call-overload]
