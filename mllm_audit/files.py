"""Reading the YAML files users write (suites, model and classifier cards) with one-line errors."""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path
from typing import Any

from .errors import AuditError


def read_yaml_mapping(path: Path, what: str = "", allowed: Collection[str] | None = None) -> dict[str, Any]:
    """A YAML file whose top level is a mapping; `allowed` refuses unknown keys (typos)."""
    import yaml

    where = f"{what} {path}".strip()
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (yaml.YAMLError, OSError, UnicodeDecodeError) as e:
        raise AuditError(f"{where}: not valid YAML ({str(e).splitlines()[0]})") from None
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
            continue
        if head[:1] == b"\x80":
            what = "a Python pickle"
        elif head[:2] == b"PK":
            what = "a zip archive (torch.save)"
        else:
            what = "unrecognised data"
        raise AuditError(f"weights file {f} is not safetensors ({what}); refusing to load it")
