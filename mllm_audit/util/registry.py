"""The one registry type: names resolved lazily to a YAML file in a folder, or to a Python object.

Model cards, suites and classifiers are YAML files named after what they register (`adapters/*.yaml`,
`suites/*.yaml`, `adapters/classifiers/*.yaml`); model families and editors are "module:attribute"
strings imported only when asked for, so `--help` and `ls` stay instant. An unknown name is one
line that lists the known ones.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import import_module
from pathlib import Path
from typing import Any

from mllm_audit.errors import AuditError


@dataclass(frozen=True)
class Registry:
    """`what` names the kind in errors; entries come from `entries()` (a folder of YAML files, or a
    fixed mapping of "module:attribute" strings)."""

    what: str
    entries: Callable[[], Mapping[str, Any]]

    def names(self) -> list[str]:
        return list(self.entries())

    def get(self, name: str) -> Any:
        """The entry for `name` (a YAML path, or the imported object); AuditError when unknown."""
        found = self.entries().get(name)
        if found is None:
            raise AuditError(f"unknown {self.what} {name!r} (known: {', '.join(self.names()) or 'none'})")
        if isinstance(found, str) and ":" in found:
            module, attr = found.split(":")
            return getattr(import_module(module), attr)
        return found


def yaml_folder(folder: Callable[[], Path], keep: Callable[[Path], bool] | None = None
                ) -> Callable[[], dict[str, Path]]:
    """Entries of a folder of YAML files, by file stem, sorted (optionally filtered by `keep`)."""

    def entries() -> dict[str, Path]:
        return {p.stem: p for p in sorted(folder().glob("*.yaml")) if keep is None or keep(p)}

    return entries


def lazy(mapping: Mapping[str, str]) -> Callable[[], Mapping[str, str]]:
    """Entries of a fixed name -> "module:attribute" mapping, imported on `get`."""
    return lambda: mapping
