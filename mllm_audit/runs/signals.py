"""Ctrl-C and SIGTERM in long commands: one line saying what was kept and how to continue.

`stop_signals()` turns SIGTERM into an exception (a BaseException, so no `except Exception`
swallows it) for its duration; `interrupted(err, message)` maps that or a KeyboardInterrupt to a
`RunInterrupted` error carrying exit code 130 (SIGINT) or 143 (SIGTERM), which the CLI prints on
one line. The run record is left as it was: `complete: false`.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from mllm_audit.errors import AuditError


class RunInterrupted(AuditError):
    """Ctrl-C or SIGTERM: one line saying what was kept and how to resume; exit 128 + the signal."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class Terminated(BaseException):
    """Raised by our SIGTERM handler."""


STOPS = (KeyboardInterrupt, Terminated)


@contextmanager
def stop_signals() -> Iterator[None]:
    """Turn SIGTERM into `Terminated` for the duration (main thread only; elsewhere a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise Terminated(signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def interrupted(err: BaseException, kept: str) -> RunInterrupted:
    """The error to raise for a stop signal; `kept` says what is on disk and how to continue."""
    code, what = (130, "interrupted") if isinstance(err, KeyboardInterrupt) else (143, "terminated (SIGTERM)")
    return RunInterrupted(f"{what}; {kept}", code)
