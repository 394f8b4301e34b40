"""Reading the YAML files users write (suites, model and classifier cards) with one-line errors."""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path
from typing import Any

from mllm_audit.errors import AuditError


def read_yaml_mapping(path: Path, what: str = "", allowed: Collection[str] | None = None) -> dict[str, Any]:
    """A YAML file whose top level is a mapping; `allowed` refuses unknown keys (typos)."""
    where = f"{what} {path}".strip()
    data = read_yaml(path, what)
    if not isinstance(data, dict):
        raise AuditError(f"{where}: expected a mapping at the top level")
    if allowed is not None:
        unknown = sorted(str(k) for k in set(data) - set(allowed))
        if unknown:
            raise AuditError(f"{where}: unknown key {unknown[0]!r}")
    return data


def check_safetensors_files(folder: Path) -> None:
    """Refuse a `.safetensors` file that is not one (a renamed pickle would otherwise be opened).

    A safetensors file starts with an 8-byte little-endian header length and a JSON header; a
    pickle starts with 0x80 and a torch.save archive with `PK`. Checked from the first bytes only.
    """
    for f in sorted(Path(folder).glob("*.safetensors")):
        with open(f, "rb") as fh:
            head = fh.read(9)
        size = f.stat().st_size
        n = int.from_bytes(head[:8], "little") if len(head) >= 8 else -1
        if len(head) == 9 and 0 < n <= size - 8 and head[8:9] == b"{":
            from mllm_audit.util.guards import safetensors_header

            safetensors_header(f)  # whole: header is JSON, every tensor's bytes inside the file
            continue
        if head[:1] == b"\x80":
            what = "a Python pickle"
        elif head[:2] == b"PK":
            what = "a zip archive (torch.save)"
        else:
            what = "unrecognised data"
        raise AuditError(f"weights file {f} is not safetensors ({what}); refusing to load it")


# ------------------------------------------------------------------------------ bounded YAML

MAX_YAML_BYTES = 1024 * 1024  # suites headers, policies and cards are a few KB
MAX_YAML_LINE_CHARS = 10_000
MAX_YAML_DEPTH = 32


def read_yaml(path: Path, what: str = "") -> Any:
    """The one YAML reader for files users write (suites, policies, cards), with its cost bounded.

    Checked before parsing: file size and line length (the message names the limit and file:line).
    While parsing: aliases are refused (an alias bomb expands a few hundred bytes into gigabytes),
    nesting deeper than MAX_YAML_DEPTH is refused (no RecursionError), and a key written twice in
    one mapping is refused instead of silently keeping the second.
    """
    import yaml

    path = Path(path)
    where = f"{what} {path}".strip()
    raw = read_capped(path, MAX_YAML_BYTES, where)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise AuditError(f"{where}: not valid YAML (not UTF-8 text)") from None
    check_line_lengths(text, MAX_YAML_LINE_CHARS, path)
    try:
        return yaml.load(text, Loader=_strict_loader())  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as e:
        line = f":{e.problem_mark.line + 1}" if e.problem_mark is not None else ""
        problem = e.problem or str(e).splitlines()[0]
        raise AuditError(f"{where}{line}: not valid YAML ({problem})") from None
    except (yaml.YAMLError, ValueError, TypeError, OverflowError) as e:  # e.g. a date 2001-13-45
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise AuditError(f"{where}: not valid YAML ({first})") from None


def read_capped(path: Path, max_bytes: int, where: str = "") -> bytes:
    """The bytes of a regular file no larger than `max_bytes`; refuses before reading more."""
    import os
    import stat

    where = where or str(path)
    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):
            raise AuditError(f"{where}: not a regular file")
        if st.st_size > max_bytes:
            raise AuditError(f"{where}: {st.st_size} bytes, over the {max_bytes}-byte limit for this file")
        with open(path, "rb") as fh:
            raw = fh.read(max_bytes + 1)
    except AuditError:
        raise
    except OSError as e:
        raise AuditError(f"{where}: cannot read ({e.strerror or type(e).__name__})") from None
    if len(raw) > max_bytes:
        raise AuditError(f"{where}: over the {max_bytes}-byte limit for this file")
    return raw


def check_line_lengths(text: str, max_chars: int, path: Path) -> None:
    """Refuse a line longer than `max_chars`, naming file:line and the limit."""
    start = 0
    n = 1
    while True:
        end = text.find("\n", start)
        length = (len(text) if end < 0 else end) - start
        if length > max_chars:
            raise AuditError(f"{path}:{n}: line of {length} characters, over the {max_chars}-character limit")
        if end < 0:
            return
        start, n = end + 1, n + 1


_LOADER: Any = None


def _strict_loader() -> Any:
    """A yaml.SafeLoader that refuses aliases, deep nesting and duplicate keys (built once, lazily)."""
    global _LOADER
    if _LOADER is not None:
        return _LOADER
    import yaml
    from yaml.constructor import ConstructorError

    class StrictLoader(yaml.SafeLoader):
        _depth = 0

        def compose_node(self, parent: Any, index: Any) -> Any:
            if self.check_event(yaml.AliasEvent):
                event = self.peek_event()
                raise yaml.composer.ComposerError(
                    None, None, "aliases (*name) are not allowed in this file", event.start_mark
                )
            self._depth += 1
            try:
                if self._depth > MAX_YAML_DEPTH:
                    raise yaml.composer.ComposerError(
                        None, None, f"nested deeper than {MAX_YAML_DEPTH} levels", self.peek_event().start_mark
                    )
                return super().compose_node(parent, index)
            finally:
                self._depth -= 1

        def construct_mapping(self, node: Any, deep: bool = False) -> Any:
            if isinstance(node, yaml.MappingNode):
                seen: set[Any] = set()
                for key_node, _ in node.value:
                    key = self.construct_object(key_node, deep=True)
                    try:
                        duplicate = key in seen
                        seen.add(key)
                    except TypeError:  # an unhashable key: the base class reports it
                        continue
                    if duplicate:
                        raise ConstructorError(
                            None, None, f"key {str(key)[:60]!r} appears twice in one mapping", key_node.start_mark
                        )
            return super().construct_mapping(node, deep)

    _LOADER = StrictLoader
    return _LOADER
