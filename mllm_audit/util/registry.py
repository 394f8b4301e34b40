"""The one registry type: names resolved lazily to a YAML file in a folder, or to a Python object.

Model cards, suites and classifiers are YAML files named after what they register (`adapters/*.yaml`,
`suites/*.yaml`, `adapters/classifiers/*.yaml`); model families and editors are "module:attribute"
strings imported only when asked for, so `--help` and `ls` stay instant. An unknown name is one
line that lists the known ones.

Third-party packages add entries without editing this project, through entry-point groups (see
docs/plugins.md and examples/plugin/): `mllm_audit.families` and `mllm_audit.editors` name a
"module:attribute" (imported only when that name is used, like the built-ins); `mllm_audit.suites`
and `mllm_audit.classifiers` name a "module:attribute" that is a YAML path, or a function returning
one (imported when the names are listed). A built-in name always wins over a plugin's; a clash or
a broken plugin is a warning naming the distribution, never a failure of the tool itself.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from importlib import import_module
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Any

from mllm_audit.errors import AuditError

# The entry-point groups a plugin distribution may declare (pyproject `[project.entry-points."<group>"]`).
GROUPS = {
    "model family": "mllm_audit.families",
    "editor": "mllm_audit.editors",
    "suite": "mllm_audit.suites",
    "classifier": "mllm_audit.classifiers",
}


@dataclass(frozen=True)
class Registry:
    """`what` names the kind in errors; entries come from `entries()` (a folder of YAML files, or a
    fixed mapping of "module:attribute" strings), plugins' entries included."""

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
            try:
                return getattr(import_module(module), attr)
            except (ImportError, AttributeError) as e:
                origin = plugin_origin(GROUPS.get(self.what, ""), name)
                if origin is None:
                    raise
                raise AuditError(f"{self.what} {name!r} from plugin {origin} does not load: {e}") from e
        return found


def plugins(group: str) -> list[EntryPoint]:
    """The installed entry points of `group`, sorted by name (read from installed metadata: no import).
    Read once per search path (a scan of every installed distribution takes ~15 ms; suites are listed
    on every load): a changed `sys.path` reads them again."""
    return list(_plugins(group, tuple(sys.path)))


@lru_cache(maxsize=32)
def _plugins(group: str, path: tuple[str, ...]) -> tuple[EntryPoint, ...]:
    return tuple(sorted(entry_points(group=group), key=lambda ep: ep.name))


def plugin_origin(group: str, name: str) -> str | None:
    """"distribution version" of the plugin that registers `name` in `group`; None for a built-in."""
    for ep in plugins(group) if group else ():
        if ep.name == name:
            dist = ep.dist
            return f"{dist.name} {dist.version}" if dist is not None else ep.value
    return None


def _merge(builtin: Mapping[str, Any], group: str | None, resolve: Callable[[EntryPoint], Any]) -> dict[str, Any]:
    """Built-ins, then each plugin entry under a name not taken; a clash or a failure warns and is skipped."""
    out = dict(builtin)
    for ep in plugins(group) if group else ():
        origin = f"{ep.dist.name} {ep.dist.version}" if ep.dist is not None else ep.value
        if ep.name in out:
            warnings.warn(f"plugin {origin}: {group} entry {ep.name!r} ignored (the name is taken)", stacklevel=3)
            continue
        try:
            out[ep.name] = resolve(ep)
        except Exception as e:  # a broken third-party package must not break `ls` or `--help`
            warnings.warn(f"plugin {origin}: {group} entry {ep.name!r} ignored ({type(e).__name__}: {e})",
                          stacklevel=3)
    return out


def _plugin_yaml(ep: EntryPoint) -> Path:
    """A plugin's YAML entry: the attribute is a path, or a function of no arguments returning one."""
    obj = ep.load()
    path = Path(obj() if callable(obj) else obj)
    if path.suffix not in (".yaml", ".yml") or not path.is_file():
        raise AuditError(f"{ep.value} gives {path}, not a YAML file")
    return path


def yaml_folder(folder: Callable[[], Path], keep: Callable[[Path], bool] | None = None,
                group: str | None = None) -> Callable[[], dict[str, Path]]:
    """Entries of a folder of YAML files, by file stem, sorted (optionally filtered by `keep`), then
    those of plugins declaring entry-point `group`."""

    def entries() -> dict[str, Path]:
        own = {p.stem: p for p in sorted(folder().glob("*.yaml"))}
        merged = _merge(own, group, _plugin_yaml)
        return {k: p for k, p in merged.items() if keep is None or keep(p)}

    return entries


def lazy(mapping: Mapping[str, str], group: str | None = None) -> Callable[[], Mapping[str, str]]:
    """Entries of a fixed name -> "module:attribute" mapping, then those of plugins declaring
    entry-point `group` (their "module:attribute" values, unimported), imported on `get`."""
    if group is None:
        return lambda: mapping
    return lambda: _merge(mapping, group, lambda ep: ep.value)
