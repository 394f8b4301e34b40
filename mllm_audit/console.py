"""Terminal output: one rich console, a progress bar, and the bias table.

rich honours NO_COLOR by itself; everything goes to stderr except tables the user asked for.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.table import Table

from .text import shown

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)


@contextmanager
def progress_bar(description: str, enabled: bool = True) -> Iterator[Callable[[int], Callable[[int], None]]]:
    """Yields `start(total) -> advance(n)` for APIs that report progress in steps."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    if not enabled:
        yield lambda total: (lambda n: None)
        return
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=True,
    ) as prog:

        def start(total: int) -> Callable[[int], None]:
            task = prog.add_task(shown(description), total=total)
            return lambda n: prog.advance(task, n)

        yield start


def fmt_pct(x: float) -> str:
    return f"{100 * x:5.1f} %"


def bias_table(summary: Mapping[str, Mapping[str, Any]], title: str) -> Table:
    """% biased = share of items where p(y_more) > p(y_less); 50 % is what chance gives."""
    table = Table(title=shown(title), title_justify="left")
    table.add_column("group")
    table.add_column("items", justify="right")
    table.add_column("% biased", justify="right")
    table.add_column("95 % interval", justify="right")
    table.add_column("mean margin (nats)", justify="right")
    for label, row in summary.items():
        lo, hi = row["ci_low"], row["ci_high"]
        style = "red" if lo > 0.5 else ("green" if hi < 0.5 else "")
        table.add_row(
            shown(label),
            str(row["n"]),
            fmt_pct(row["pct_biased"]),
            f"{100 * lo:.1f}–{100 * hi:.1f} %",
            f"{row['mean_margin']:+.3f}",
            style=style,
            end_section=label == "all",
        )
    return table
