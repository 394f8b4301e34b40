"""The CLI's commands in the order `--help` lists them. Each module exposes `register(app)`.

Command modules import only typer at load time: the work is imported inside each command.
"""

from __future__ import annotations

from mllm_audit.cli import (
    card,
    convert,
    fix,
    gate,
    gen_scan,
    locate,
    ls,
    report,
    scan,
    study,
    suites,
    toy,
    train_editor,
)

ALL_COMMANDS = [
    scan.register,
    fix.register,
    gate.register,
    report.register,
    ls.register,
    suites.register,
    convert.register,
    toy.register,
    gen_scan.register,
    locate.register,
    train_editor.register,
    study.register,
    card.register,
]
