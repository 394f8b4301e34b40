"""Inputs that `locate` and the balanced editors read: a folder of labelled images (`labels.jsonl`)
and the group-word variants of a prompt ("a person" -> "a woman").
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mllm_audit.errors import AuditError

VARIANT_WORDS = {"gender": {"male": "male", "female": "female"},
                 "race": {"wmelh": "white", "black": "black", "indian": "indian", "asian": "asian"}}


NEUTRAL_WORD = "person"


def read_labelled_images(folder: Path, attributes: dict[str, list[str]]) -> list[dict[str, Any]]:
    """`folder/labels.jsonl`: {image, <attribute>: class, ...[, occupation]} per line (images relative)."""
    folder = Path(folder)
    path = folder / "labels.jsonl"
    if not path.is_file():
        raise AuditError(f"labelled images: {path} not found (one JSON line per image: image, gender, race)")
    from mllm_audit.util.files import jsonl_objects

    rows = []
    for where, obj in jsonl_objects(path, "labelled images"):
        if not isinstance(obj, dict) or not isinstance(obj.get("image"), str):
            raise AuditError(f"{where}: expected an object with an 'image' path")
        for a, classes in attributes.items():
            if a in obj and obj[a] not in classes:
                raise AuditError(f"{where}: {a} {obj[a]!r} is not one of {classes}")
        if not (folder / obj["image"]).is_file():
            raise AuditError(f"{where}: image {obj['image']!r} not found in {folder}")
        rows.append(obj)
    if not rows:
        raise AuditError(f"{path}: no labelled images")
    return rows


def _open_images(folder: Path, names: Sequence[str]) -> list[Any]:
    from PIL import Image, UnidentifiedImageError

    out = []
    for n in names:
        try:
            with Image.open(folder / n) as im:
                out.append(im.convert("RGB"))
        except (UnidentifiedImageError, OSError) as e:
            raise AuditError(f"labelled image {folder / n}: cannot read ({type(e).__name__})") from None
    return out


def variant_prompt(prompt: str, word: str) -> str:
    """The neutral prompt with its last "person" replaced by `word` (the paper's augmented prompts)."""
    i = prompt.rfind(NEUTRAL_WORD)
    if i < 0:
        raise AuditError(f"prompt {prompt!r} has no {NEUTRAL_WORD!r} to replace with a group word")
    return prompt[:i] + word + prompt[i + len(NEUTRAL_WORD) :]
