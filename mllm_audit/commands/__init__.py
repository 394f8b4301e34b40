"""CLI commands. Each module exposes `register(app)`; the list below is the CLI's order.

Modules import only typer at load time: the work is imported inside each command.
"""

from __future__ import annotations

from . import fix, gate, gen, locate, ls, models_cmd, report_cmd, scan, study, suites_cmd, toy, train_editor

ALL_COMMANDS = [
    scan.register,
    fix.register,
    gate.register,
    report_cmd.register,
    ls.register,
    suites_cmd.register,
    models_cmd.register,
    toy.register,
    gen.register,
    locate.register,
    train_editor.register,
    study.register,
]
