"""The command line: a thin Typer layer over the typed Python API.

Each command lives in `mllm_audit/commands/<name>.py` and registers itself here. Heavy imports
(torch, transformers) happen inside the commands, so `mllm-audit --help` stays instant.
Errors: an `AuditError` prints one line and exits 2; nothing else reaches the user as a traceback
unless MLLM_AUDIT_DEBUG=1.
"""

from __future__ import annotations

import os
import sys
from typing import Literal

import typer
from typer.exceptions import Abort, Exit

from mllm_audit.cli.commands import ALL_COMMANDS
from mllm_audit.errors import AuditError

try:  # typer >= 0.29 ships its own click; older typers use the click package
    from typer._click.exceptions import ClickException
except ImportError:  # pragma: no cover - depends on the installed typer
    from click import ClickException  # type: ignore[assignment]

app = typer.Typer(
    name="mllm-audit",
    help="Audit multimodal LLMs for social bias and repair it by model editing.",
    no_args_is_help=False,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

for _register in ALL_COMMANDS:
    _register(app)


@app.callback()
def _options(
    rehash: bool = typer.Option(False, "--rehash", help="Hash every model and image file again (ignore the cache)."),
    max_pixels: int = typer.Option(
        0, "--max-pixels", min=0, help="Reduce larger images to this many pixels as they are decoded (default 4000000)."
    ),
) -> None:
    """Options for every command (given before it: `mllm-audit --rehash scan ...`)."""
    if max_pixels:
        from mllm_audit.suites.items import MAX_PIXELS_ENV

        os.environ[MAX_PIXELS_ENV] = str(max_pixels)  # read by suites.items.load_image, recorded in the identity
    if rehash:
        from mllm_audit.util.identity import REHASH_ENV

        os.environ[REHASH_ENV] = "1"  # read by util/identity.HashCache


def _fail(message: str, code: int = 2) -> int:
    from mllm_audit.util.text import shown

    first = shown(" ".join(str(message).split()) or "error", markup=False)
    print(f"mllm-audit: error: {first}", file=sys.stderr)
    return code


RICH_HELP_MIN_COLUMNS = 100


def help_mode() -> Literal["rich"] | None:
    """Rich help boxes below 100 columns cut long option names (`--allow-outside-pat…`); there the plain
    layout, which wraps the help text and never cuts a name, is used instead."""
    import shutil

    return "rich" if shutil.get_terminal_size().columns >= RICH_HELP_MIN_COLUMNS else None


def run(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit code (used by tests and `main`)."""
    args = sys.argv[1:] if argv is None else argv
    from mllm_audit.util.console import set_feedback

    set_feedback(True)
    app.rich_markup_mode = help_mode()
    try:
        rv = app(args=args, prog_name="mllm-audit", standalone_mode=False)
        return int(rv) if isinstance(rv, int) else 0
    except AuditError as e:
        return _fail(str(e), e.exit_code)
    except Exit as e:
        return int(getattr(e, "exit_code", 0) or 0)
    except Abort:
        return _fail("interrupted", 130)
    except ClickException as e:
        return _fail(e.format_message(), 2)
    except KeyboardInterrupt:
        return _fail("interrupted", 130)
    except OSError as e:  # a file the system refused (read-only, name too long, symlink loop): name it
        from mllm_audit.util.faults import describe_fault

        fault = describe_fault(e)  # disk full, read-only, no permission: exit 2, never a traceback
        if fault and not os.environ.get("MLLM_AUDIT_DEBUG"):
            return _fail(fault)
        if os.environ.get("MLLM_AUDIT_DEBUG") or e.filename is None:
            raise
        name = str(e.filename)
        name = name if len(name) <= 120 else name[:60] + "..." + name[-40:]
        return _fail(f"{name}: {e.strerror or type(e).__name__}")
    except RecursionError:  # a JSON/YAML file nested thousands deep, read by a path without its own check
        if os.environ.get("MLLM_AUDIT_DEBUG"):
            raise
        return _fail("input nested too deeply (thousands of levels of [ or {); refusing it")
    except Exception as e:  # noqa: BLE001 - the one place that turns surprises into one line
        if os.environ.get("MLLM_AUDIT_DEBUG"):
            raise
        from mllm_audit.util.faults import describe_fault

        fault = describe_fault(e)  # safetensors / torch report a full disk in their own exception types
        if fault:
            return _fail(fault)
        return _fail(f"internal error: {type(e).__name__}: {e} (set MLLM_AUDIT_DEBUG=1 for the traceback)")
    finally:
        set_feedback(False)  # library calls after a CLI call (tests, notebooks) stay silent


def main() -> None:
    from mllm_audit.cli.warnlog import count, log_path, route_warnings_to_log

    routed = route_warnings_to_log()  # third-party warnings to the log, not the console
    code = run()
    if routed is not None and count():
        print(f"mllm-audit: {count()} library warnings written to {log_path()}", file=sys.stderr)
    sys.exit(code)


if __name__ == "__main__":  # pragma: no cover - `python -m mllm_audit.cli` uses __main__.py
    main()
