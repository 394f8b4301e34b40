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
