"""Terminal output: one rich console, a progress bar, and the bias table.

rich honours NO_COLOR by itself; everything goes to stderr except tables the user asked for.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console

from mllm_audit.util.text import shown

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)

# Spinners and "what is happening" lines for long phases: on for the CLI (`cli.run` turns it on), off
# for library callers and tests that do not ask.
_FEEDBACK = {"on": False}


def set_feedback(on: bool) -> None:
    _FEEDBACK["on"] = on


def note(message: str) -> None:
    """One line on stderr about what the command is doing (the CLI's only; silent for the library)."""
    if _FEEDBACK["on"]:
        err_console.print(shown(message, markup=False), highlight=False, markup=False, soft_wrap=True)


@contextmanager
def progress_bar(description: str, enabled: bool = True) -> Iterator[Callable[[int], Callable[[int], None]]]:
    """Yields `start(total) -> advance(n)` for APIs that report progress in steps.

    In a terminal: a rich bar. Piped (CI logs), where a bar prints nothing: one line every
    `MLLM_AUDIT_PROGRESS_EVERY` seconds (default 10) with the count, rate and time left, and one at the end.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    if not enabled:
        yield lambda total: (lambda n: None)
        return
    if not err_console.is_terminal:
        yield lambda total: _line_progress(description, total)
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


def _line_progress(description: str, total: int) -> Callable[[int], None]:
    """Plain progress lines for logs: `scoring: 120/576 (21 %), 34.2/s, 13 s left`."""
    import os
    import time

    every = float(os.environ.get("MLLM_AUDIT_PROGRESS_EVERY", "10"))
    t0 = time.monotonic()
    state = {"done": 0, "last": t0}

    def advance(n: int) -> None:
        state["done"] += n
        now = time.monotonic()
        done = state["done"]
        if now - state["last"] < every and done < total:
            return
        state["last"] = now
        rate = done / max(now - t0, 1e-9)
        left = (total - done) / rate if rate > 0 else float("inf")
        pct = 100 * done / total if total else 100.0
        err_console.print(
            f"{shown(description, markup=False)}: {done}/{total} ({pct:.0f} %), {rate:.1f}/s, {left:.0f} s left",
            highlight=False, soft_wrap=True,
        )

    return advance


@contextmanager
def status(message: str, enabled: bool = True) -> Iterator[None]:
    """A spinner while a long step without steps runs (loading a model, a pre-scan); a line when piped."""
    if not (enabled and _FEEDBACK["on"]):
        yield
        return
    if not err_console.is_terminal:
        err_console.print(f"{shown(message, markup=False)} ...", highlight=False, markup=False, soft_wrap=True)
        yield
        return
    with err_console.status(shown(message)):
        yield


