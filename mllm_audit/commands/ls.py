"""`mllm-audit ls models|suites`: what can be named on the command line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer


def register(app: typer.Typer) -> None:
    @app.command("ls")
    def ls(what: str = typer.Argument(..., help="models or suites")) -> None:
        """List the model cards or the registered suites, one line each."""
        from ..console import console
        from ..errors import AuditError
        from ..text import shown

        if what == "models":
            from rich.table import Table

            from ..models.cards import read_card, registered_cards
            from ..resources import adapters_dir

            table = Table()
            for col in ("model", "family", "weights", "description"):
                table.add_column(col, overflow="fold")
            for name, path in registered_cards().items():
                card = read_card(path)
                if card.weights.startswith(str(adapters_dir())):
                    where = "shipped" if Path(card.weights).is_dir() else f"not built yet: {card.weights}"
                else:
                    where = card.weights
                table.add_row(*(shown(v) for v in (name, card.family, where, card.description)))
            console.print(table)
        elif what == "suites":
            from rich.table import Table

            from ..suites import registered_suites, suite_info

            table = Table(show_lines=False)
            for col in ("suite", "kind", "items", "source", "license", "description"):
                table.add_column(col, overflow="fold")
            for name, path in registered_suites().items():
                info = suite_info(path)
                table.add_row(*(shown(v) for v in (
                    name, info.get("kind", "likelihood"), count_items(path, info), info.get("source", "?"),
                    info.get("license", "?"), info.get("description", ""))))
            console.print(table)
        else:
            raise AuditError(f"ls takes 'models' or 'suites', got {what!r}")


def count_items(path: Path, info: dict[str, Any]) -> int | str:
    """Lines of the suite's items (or prompts) file, without loading it."""
    rel = info.get("items") or info.get("prompts")
    target = path.parent / str(rel) if rel else None
    if target is None or not target.is_file():
        return "?"
    with open(target, "rb") as fh:
        return sum(1 for line in fh if line.strip())
