"""The one exception users see: a one-line message, exit code 2.

Every bad input (missing image, malformed suite line, unknown model, bad policy) is raised as an
`AuditError` naming the culprit; the CLI prints it on one line and exits 2, never a traceback.
"""

from __future__ import annotations


class AuditError(Exception):
    """A user-facing error. `str(err)` is the single line printed by the CLI."""

    exit_code = 2

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))
