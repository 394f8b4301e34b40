"""The CLI's leaf commands, walked once for the tests that check every command (options, outputs, API parity)."""

from __future__ import annotations

from typing import Any

import typer
from typer.main import get_command


def leaf_commands(command: typer.Typer | Any) -> dict[str, Any]:
    """`"suites build pata"` -> its click command, for every command that runs (groups walked through)."""
    found: dict[str, Any] = {}

    def walk(prefix: str, cmd: Any) -> None:
        subs = getattr(cmd, "commands", None)
        if subs:
            for name, sub in subs.items():
                walk(f"{prefix} {name}".strip(), sub)
        else:
            found[prefix] = cmd

    walk("", get_command(command) if isinstance(command, typer.Typer) else command)
    return found
