"""`mllm-audit ls models|suites`: what can be named on the command line."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    @app.command("ls")
    def ls(what: str = typer.Argument(..., help="models or suites")) -> None:
        """List the model cards or the registered suites, one line each."""
        from ..console import console
        from ..errors import AuditError

        if what == "models":
            from ..models.cards import read_card, registered_cards
            from ..resources import adapters_dir

            for name, path in registered_cards().items():
                card = read_card(path)
                where = "shipped" if card.weights.startswith(str(adapters_dir())) else card.weights
                console.print(f"[bold]{name:16}[/] {card.family:12} {where:34} {card.description}")
        elif what == "suites":
            from ..suites import registered_suites, suite_info

            for name, path in registered_suites().items():
                info = suite_info(path)
                n = info.get("n_items", "?")
                console.print(
                    f"[bold]{name:14}[/] {info.get('description', '')} "
                    f"[dim](source: {info.get('source', '?')}; license: {info.get('license', '?')}; items: {n})[/]"
                )
        else:
            raise AuditError(f"ls takes 'models' or 'suites', got {what!r}")
