"""`mllm-audit ls models|suites`: what can be named on the command line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from mllm_audit.report.tables import new_table


def register(app: typer.Typer) -> None:
    @app.command("ls")
    def ls(
        what: str = typer.Argument(..., help="models or suites"),
        long: bool = typer.Option(False, "--long", "-l", help="Full text of every field, one block per entry."),
    ) -> None:
        """List the model cards or the registered suites, one line each (fits 80 columns)."""
        from mllm_audit.errors import AuditError
        from mllm_audit.util.console import console

        if what == "models":
            rows = model_rows()
            header = ("model", "family", "weights", "description")
        elif what == "suites":
            rows = suite_rows()
            header = ("suite", "kind", "items", "license", "source", "description")
        else:
            raise AuditError(f"ls takes 'models' or 'suites', got {what!r}")
        if long:
            from mllm_audit.util.text import shown as escape

            for row in rows:
                console.print(f"[bold]{escape(row[0])}[/]")
                for key, value in zip(header[1:], row[1:], strict=True):
                    console.print(f"  {key}: {escape(value)}", soft_wrap=True)
            return
        console.print(short_table(header, rows))


def short_table(header: tuple[str, ...], rows: list[tuple[str, ...]], width: int | None = None) -> Any:
    """Names and counts never wrap. Free text (source, description) shares what is left of the terminal;
    where that is under 30 characters a column the source steps aside (it is in `ls --long`) and the
    description wraps onto as many lines as it needs, so it is read whole, never cut to a few letters."""

    from mllm_audit.util.console import console
    from mllm_audit.util.text import shown as escape

    total = width or console.width
    fixed = [i for i, c in enumerate(header) if c not in ("description", "source", "weights")]
    sizes = {i: max([len(header[i]), *(len(r[i]) for r in rows)]) for i in fixed}
    free = [i for i in range(len(header)) if i not in sizes]
    left = total - sum(sizes.values()) - (3 * len(header) + 1)  # "│ x " per column and the closing bar
    caption = "ls --long: every field in full"
    if "weights" in header:  # models: the names whole, the weights in what is left (cut with …), the rest in --long
        free = [header.index("weights")]
        left += 3 * (len(header) - len(fixed) - 1)
    if len(free) > 1 and left // len(free) < 30 and "source" in header:
        free.remove(header.index("source"))
        left += 3
        caption = "source and every field in full: ls --long"
    if free and left // len(free) < 10:  # too narrow even for wrapped text: it is in --long
        left += 3 * len(free)
        free = []
    for i in free:
        sizes[i] = left // len(free)
    table = new_table(caption=caption)
    shown = [i for i in range(len(header)) if i in sizes]
    for i in shown:
        wrap = header[i] == "description"
        table.add_column(header[i], no_wrap=not wrap, overflow="fold" if wrap else "ellipsis", width=sizes[i],
                         min_width=sizes[i] if i in fixed else None)
    for row in rows:
        table.add_row(*(escape(row[i]) for i in shown))
    return table


def model_rows() -> list[tuple[str, ...]]:
    from mllm_audit.models.cards import read_card, registered_cards
    from mllm_audit.util.resources import adapters_dir

    rows: list[tuple[str, ...]] = []
    for name, path in registered_cards().items():
        card = read_card(path)
        if card.weights.startswith(str(adapters_dir())):
            where = "shipped" if Path(card.weights).is_dir() else "not built (see --long)"
        else:
            where = card.weights
        rows.append((name, card.family, where, card.description))
    return rows


def suite_rows() -> list[tuple[str, ...]]:
    from mllm_audit.suites.items import registered_suites, suite_info

    rows: list[tuple[str, ...]] = []
    for name, path in registered_suites().items():
        info = suite_info(path)
        licence = str(info.get("license", "?"))
        rows.append((name, str(info.get("kind", "likelihood")), str(count_items(path, info)),
                     licence.split(" (")[0], str(info.get("source", "?")), str(info.get("description", ""))))
    return rows


def count_items(path: Path, info: dict[str, Any]) -> int | str:
    """Lines of the suite's items (or prompts) file, without loading it."""
    rel = info.get("items") or info.get("prompts")
    target = path.parent / str(rel) if rel else None
    if target is None or not target.is_file():
        return "?"
    with open(target, "rb") as fh:
        return sum(1 for line in fh if line.strip())
