"""Editors behind one protocol (base.py). Adding an editor = one file + one line here."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mllm_audit.util.registry import Registry, lazy

if TYPE_CHECKING:
    from mllm_audit.editors.base import Editor

# name -> "module:factory"; factories take no arguments (learned editors load state later).
EDITORS = {
    "ft-l": "mllm_audit.editors.ft:ft_l",
    "ft-v": "mllm_audit.editors.ft:ft_v",
    "ike": "mllm_audit.editors.ike:IKE",
    "mend": "mllm_audit.editors.learned.mend:MEND",
    "ke": "mllm_audit.editors.learned.ke:KE",
    "serac": "mllm_audit.editors.learned.serac:SERAC",
    "control-shift": "mllm_audit.editors.control:ShiftControl",  # a negative control (issue 17)
}


REGISTRY = Registry("editor", lazy(EDITORS, "mllm_audit.editors"))  # plugins: docs/plugins.md


def make_editor(name: str) -> Editor:
    return REGISTRY.get(name)()
