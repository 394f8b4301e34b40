"""Every file the tool reads or writes whole: YAML users write (suites, cards, policies), JSONL record
files, and atomic writes (temporary file, fsync, rename), each with a one-line error naming the file.

One module so that a limit, an encoding rule or a durability rule is decided once.
"""

from __future__ import annotations

import json
import os
from collections.abc import Collection, Iterable, Iterator, Mapping
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
    A folder whose weights are only pickles (pytorch_model.bin, *.pt) is refused naming the file:
    loading it would unpickle it.
    """
    tensors = sorted(Path(folder).glob("*.safetensors"))
    if not tensors:
        pickles = sorted(f for suffix in (".bin", ".pt", ".pth", ".ckpt") for f in Path(folder).glob(f"*{suffix}"))
        if pickles:
            raise AuditError(f"weights file {pickles[0]} is a pickle (no .safetensors in {folder}); mllm-audit "
                             "never unpickles weights: convert it to safetensors first")
    for f in tensors:
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


# ---- JSONL -------------------------------------------------------------------------------------------


def jsonl_objects(path: Path, what: str = "", max_bytes: int | None = None,
                  max_line_chars: int | None = None, raw: bytes | None = None) -> Iterator[tuple[str, Any]]:
    """(`file:line`, parsed value) per non-blank line; strict UTF-8, and a malformed line is an
    AuditError naming file:line. `max_bytes` refuses a larger file before reading it; `raw` is the
    file's bytes when the caller already read them (to hash them)."""
    if raw is None:
        if not path.is_file():
            raise AuditError(f"{what + ' ' if what else ''}not found: {path}")
        raw = read_capped(path, max_bytes, f"{what} {path}".strip()) if max_bytes else path.read_bytes()
    import jsonlines

    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise AuditError(f"{path}: not UTF-8 text") from None
    line_no = 0

    def lines() -> Iterator[str]:  # counts lines (for file:line) and refuses an overlong one unparsed
        nonlocal line_no
        for line_no, line in enumerate(text.splitlines(), 1):  # noqa: B007 - read by the reader's caller
            if max_line_chars is not None and len(line) > max_line_chars:
                raise AuditError(f"{path}:{line_no}: line of {len(line)} characters, over the "
                                 f"{max_line_chars}-character limit")
            yield line

    reader = jsonlines.Reader(lines(), loads=json.loads)
    try:
        for obj in reader.iter(skip_empty=True):
            yield f"{path}:{line_no}", obj
    except jsonlines.InvalidLineError as e:
        cause = e.__cause__
        msg = cause.msg if isinstance(cause, json.JSONDecodeError) else "not JSON"
        raise AuditError(f"{path}:{e.lineno}: malformed JSON ({msg})") from None
    except RecursionError:
        raise AuditError(f"{path}:{line_no}: JSON nested too deeply") from None


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """A JSONL record file the tool wrote (samples, edits): every line's value, in order."""
    return [obj for _, obj in jsonl_objects(path)]


def read_appended_jsonl(path: Path) -> tuple[list[dict[str, Any]], int]:
    """Records of a file that was being appended to when its writer died; returns (records, dropped).

    A process killed mid-write leaves at most its last line torn: an unparsable *last* line is
    dropped (and counted) so the work is redone. An unparsable line anywhere else is not a torn
    write but damage, and is refused naming file:line.
    """
    if not path.is_file():
        return [], 0
    lines = path.read_bytes().split(b"\n")
    while lines and not lines[-1].strip():
        lines.pop()
    out: list[dict[str, Any]] = []
    dropped = 0
    for n, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw.decode("utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            if n == len(lines):
                dropped += 1
                continue
            msg = e.msg if isinstance(e, json.JSONDecodeError) else "not UTF-8"
            raise AuditError(f"{path}:{n}: malformed JSON ({msg}); not a torn last line, refusing to resume") from None
        if isinstance(obj, dict):
            out.append(obj)
        else:
            dropped += 1
    return out, dropped


# ---- atomic writes -----------------------------------------------------------------------------------


def atomic_write_text(path: Path, text: str) -> None:
    """Replace `path` in one step (temporary file beside it, fsync, rename): a reader sees the old
    file or the new one, never half of either, even after a crash."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """atomic_write_text for bytes. A full disk, a read-only folder or a refused permission is one
    line naming the file (util/faults.py): the previous file, if any, is left as it was."""
    from mllm_audit.util.faults import named_faults

    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    kept = f"{path.name} is unchanged" if path.exists() else "nothing was written"
    with named_faults(path, kept):
        try:
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        finally:
            if tmp.exists():
                tmp.unlink()


def atomic_write_json(path: Path, data: Mapping[str, Any]) -> None:
    """JSON (NaN refused: JSON has none) written atomically."""
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False, allow_nan=False) + "\n")


def write_jsonl_atomic(path: Path, records: Iterable[Mapping[str, Any]]) -> None:
    """A JSONL file replaced in one step."""
    atomic_write_text(path, "".join(json.dumps(rec, allow_nan=False) + "\n" for rec in records))


# Cost bounds checked before any work: an items file, one line of it, one text field of an item,
# and how deeply an item's `meta` may nest (the shipped suites stay far below all four).
MAX_ITEMS_FILE_BYTES = 256 * 1024 * 1024


MAX_LINE_CHARS = 1024 * 1024


MAX_TEXT_CHARS = 20_000


def write_yaml(path: Path, data: Mapping[str, Any], width: int | None = None) -> Path:
    """A suite header or card written atomically, keys in the given order, text kept readable."""
    import yaml

    text = yaml.safe_dump(dict(data), sort_keys=False, allow_unicode=True, **({"width": width} if width else {}))
    atomic_write_text(path, text)
    return path
