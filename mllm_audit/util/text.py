"""User text on its way out: to the terminal (Rich markup, control codes) and into XML/HTML.

Suite names, bias types, item ids, check names and card descriptions come from files users (or
strangers) write. Printed raw they can style the output (`[bold red]ALL CLEAR[/]`), crash Rich
(`gender[/]` is a MarkupError), or drive the terminal (`\\x1b[2J` clears it, OSC sequences set the
title). XML 1.0 forbids most control characters outright, so a JUnit file holding one is not
well-formed. Everything user-written goes through `shown` (terminal) or `xml_safe` (files).
"""

from __future__ import annotations

import re

# C0 controls (tab and newline included: a table cell or an error line is one line), DEL, C1
# controls, and the bidirectional overrides that reorder what the reader sees.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
# Everything XML 1.0 does not allow in a document (section 2.2, `Char`).
_NOT_XML = re.compile("[^\x09\x0a\x0d\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _escape_char(m: re.Match[str]) -> str:
    c = ord(m.group(0))
    return f"\\x{c:02x}" if c <= 0xFF else f"\\u{c:04x}"


def shown(value: object, markup: bool = True) -> str:
    """`value` as text safe to print: control characters as `\\x1b`-style escapes and, for Rich
    output (`markup=True`), markup brackets escaped so they print literally."""
    text = _CONTROL.sub(_escape_char, str(value))
    if not markup:
        return text
    from rich.markup import escape

    return escape(text)


def xml_safe(value: object) -> str:
    """`value` with the characters XML 1.0 forbids replaced by visible `\\x..` escapes."""
    return _NOT_XML.sub(_escape_char, str(value))


def clipped(value: object, limit: int = 80) -> str:
    """repr of `value` cut to `limit` characters, for error messages about arbitrary input."""
    r = repr(value)
    return r if len(r) <= limit else r[: limit - 3] + "..."


def check_template(where: str, text: object, allowed: tuple[str, ...]) -> None:
    """A `str.format` template naming only the `allowed` fields (`{x}` would be a KeyError later)."""
    import string

    from mllm_audit.errors import AuditError

    if not isinstance(text, str):
        raise AuditError(f"{where} must be a string, got {type(text).__name__}")
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(text) if f is not None]
    except ValueError as e:
        raise AuditError(f"{where} is malformed ({e}); {{{{ writes a brace") from None
    for f in fields:
        if f not in allowed:
            names = ", ".join("{" + a + "}" for a in allowed)
            raise AuditError(f"{where} has unknown field {{{f}}} (allowed: {names})")
    try:  # conversions and format specs ({prompt!z}, {prompt:d}) fail only when used: try once now
        text.format(**{a: "x" for a in allowed})
    except (ValueError, KeyError, IndexError, TypeError) as e:
        raise AuditError(f"{where} cannot be filled in ({e})") from None
