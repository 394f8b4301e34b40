"""Model cards: one YAML per model name users type (`adapters/<name>.yaml`).

A card says which family loads the model, where the weights are (a hub id, or a folder relative to
the card), the prompt template per task, the dtype, which modules stay in full precision when
quantized, and which parameters count as "text" and "vision" for editing.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mllm_audit.errors import AuditError
from mllm_audit.util.files import read_yaml_mapping
from mllm_audit.util.registry import Registry, yaml_folder
from mllm_audit.util.resources import adapters_dir

# The model every command defaults to (scan, fix, train-editor, study, the harness bridges): toy world v3,
# whose LM read IKE's whole window of demonstrations, so every editor can work on it (`toy` is world v2).
DEFAULT_MODEL = "toy-v3"

_CARD_KEYS = {
    "name",
    "description",
    "family",
    "weights",
    "revision",
    "templates",
    "dtype",
    "keep_fp32",
    "edit",
    "generation",
    "extra",
}


@dataclass
class Card:
    """A model card; `weights` is resolved to a folder path when it names a local one."""

    name: str
    family: str
    weights: str
    description: str = ""
    revision: str | None = None
    templates: dict[str, str] = field(default_factory=dict)
    dtype: str = "fp32"
    keep_fp32: list[str] = field(default_factory=list)
    edit: dict[str, Any] = field(default_factory=dict)
    generation: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None
    # Where `templates` came from: this card, the card saved in a model folder, the card that points
    # at the folder, the family's card for its released model, or `--card NAME`. Recorded in runs.
    templates_from: str = ""

    def template(self, task: str | None) -> str:
        """The prompt template for a task; `{prompt}` (verbatim) when the card has none."""
        if task and task in self.templates:
            return self.templates[task]
        return self.templates.get("default", "{prompt}")


CARDS = Registry("model card", yaml_folder(adapters_dir))


def registered_cards() -> dict[str, Path]:
    return dict(CARDS.entries())


def read_card(path: Path) -> Card:
    data = read_yaml_mapping(path, "model card", _CARD_KEYS)
    for key in ("family", "weights"):
        if not isinstance(data.get(key), str):
            raise AuditError(f"model card {path}: missing {key!r}")
    _check_card_fields(path, data)
    weights = data["weights"]
    local = (path.parent / weights).resolve()
    if weights.startswith((".", "/")) or local.is_dir():
        weights = str(local)
    return Card(
        name=str(data.get("name", path.stem)),
        family=data["family"],
        weights=weights,
        description=str(data.get("description", "")),
        revision=data.get("revision"),
        templates=dict(data.get("templates") or {}),
        dtype=str(data.get("dtype", "fp32")),
        keep_fp32=list(data.get("keep_fp32") or []),
        edit=dict(data.get("edit") or {}),
        generation=dict(data.get("generation") or {}),
        extra=dict(data.get("extra") or {}),
        path=path,
        templates_from=f"card {path}",
    )


def _check_card_fields(path: Path, data: dict[str, Any]) -> None:
    """Types of the optional fields, and templates that name no field but `{prompt}`."""
    from mllm_audit.util.text import check_template

    kinds = {"templates": dict, "edit": dict, "generation": dict, "extra": dict, "keep_fp32": list}
    for key, kind in kinds.items():
        if data.get(key) is not None and not isinstance(data[key], kind):
            raise AuditError(f"model card {path}: {key!r} must be a {'mapping' if kind is dict else 'list'}")
    for key in ("name", "description", "revision", "dtype"):
        if data.get(key) is not None and not isinstance(data[key], (str, int, float)):
            raise AuditError(f"model card {path}: {key!r} must be a string")
    if any(not isinstance(m, str) for m in data.get("keep_fp32") or []):
        raise AuditError(f"model card {path}: 'keep_fp32' must list module names (strings)")
    for task, text in (data.get("templates") or {}).items():
        check_template(f"model card {path}: template {task!r}", text, ("prompt",))


# config.json `model_type` -> family, for folders given without a card.
MODEL_TYPE_FAMILY = {
    "blip-2": "blip2",
    "instructblip": "instructblip",
    "llava": "llava",
    "janus": "janus",
    "minigpt4": "minigpt4",
    "emu3": "emu3",
}

# Architectures the generic family (models/families/generic.py) is checked on: config.json model_type ->
# the measured max |score - stock forward| in fp32 (tests/models/test_generic.py; docs/real-models.md).
GENERIC_TABLE = "docs/real-models.md"
GENERIC_ARCHITECTURES: dict[str, float] = dict.fromkeys(
    ["gemma3", "idefics2", "idefics3", "internvl", "llava", "llava_next", "llava_onevision", "mllama", "paligemma",
     "qwen2_5_vl", "qwen2_vl", "qwen3_vl", "smolvlm", "vipllava"],
    4.8e-7)  # benchmarks/generic_conformance.py, 40 requests


# The card of the released model each family is known by: a folder of that family without a card
# of its own is prompted with these templates, so `--model ./folder` scores like `--model NAME`.
FAMILY_CARD = {
    "blip2": "blip2-opt",
    "instructblip": "instructblip-vicuna-7b",
    "llava": "llava-1.5-7b",
    "minigpt4": "minigpt4",
    "janus": "janus-pro-1b",
    "emu3": "emu3-chat",
}

# A card written into a model folder (by `fix --save`, `convert`): the folder scores as its source.
FOLDER_CARD = "mllm-audit-card.yaml"


def write_folder_card(card: Card, folder: Path, description: str = "") -> Path:
    """Save `card` (templates, dtype, edit modules, ...) into a model folder, weights pointing at it."""

    data: dict[str, Any] = {
        "name": card.name,
        "description": description or card.description,
        "family": card.family,
        "weights": ".",
        "templates": dict(card.templates),
        "dtype": card.dtype,
        "keep_fp32": list(card.keep_fp32),
        "edit": dict(card.edit),
        "generation": dict(card.generation),
        "extra": dict(card.extra),
    }
    target = Path(folder) / FOLDER_CARD
    from mllm_audit.util.files import write_yaml

    return write_yaml(target, data)


def resolve_card(spec: str, card: str | None = None, trust_generic: bool = False) -> Card:
    """A registered card name, a card YAML path, or a model folder (family read from config.json).

    A folder's templates come from, in order: `card` (`--card NAME`, a name or .yaml), the card saved
    inside the folder, a registered card whose `weights` is that folder, the family's released-model
    card (`FAMILY_CARD`). The choice is recorded in `Card.templates_from`.
    """
    cards = registered_cards()
    resolved = _resolve(spec, cards, trust_generic)
    if card is not None:
        source = _resolve(card, cards)
        if source.family != resolved.family:
            raise AuditError(f"--card {card!r} is for family {source.family!r}, but {spec!r} is {resolved.family!r}")
        resolved.templates = dict(source.templates)
        resolved.templates_from = f"--card {card}"
    return resolved


def _resolve(spec: str, cards: dict[str, Path], trust_generic: bool = False) -> Card:
    from mllm_audit.models.hub import looks_like_hub_id, split_revision

    if spec in cards:
        return read_card(cards[spec])
    name, revision = split_revision(spec)
    if revision is not None and name in cards:  # a registered card at another revision
        found = read_card(cards[name])
        found.revision = revision
        return found
    if looks_like_hub_id(name):
        return _hub_card(name, revision, cards, trust_generic)
    path = Path(spec).expanduser()
    if path.suffix in (".yaml", ".yml"):
        if not path.is_file():
            raise AuditError(f"model card {spec!r} not found")
        return read_card(path)
    if path.is_dir():
        return _folder_card(path, cards, trust_generic)
    known = ", ".join(cards) or "none"
    if path.suffix or "/" in spec or spec.startswith("."):
        raise AuditError(f"model folder {spec!r} not found (cards: {known})")
    raise AuditError(f"unknown model {spec!r} (cards: {known}; or give a model folder or a card .yaml)")


def _folder_card(path: Path, cards: dict[str, Path], trust_generic: bool = False) -> Card:
    cfg = path / "config.json"
    if not cfg.is_file():
        raise AuditError(f"model folder {path} has no config.json")
    try:
        config = json.loads(cfg.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise AuditError(f"{cfg}: malformed JSON ({getattr(e, 'msg', e)})") from None
    if not isinstance(config, dict):
        raise AuditError(f"{cfg}: expected a JSON object")
    model_type = config.get("model_type")
    family = family_of(str(model_type), f"model folder {path}", trust_generic)
    folder = path.resolve()
    own = folder / FOLDER_CARD
    if own.is_file():
        found = read_card(own)
        found.weights, found.templates_from = str(folder), f"card saved in the folder ({own})"
        if found.family != family:
            raise AuditError(f"{own}: family {found.family!r}, but config.json says {family!r}")
        return found
    for card_path in cards.values():
        try:
            found = read_card(card_path)
        except AuditError:
            continue  # a broken card elsewhere does not stop loading this folder
        if found.family == family and os.path.isdir(found.weights) and Path(found.weights).resolve() == folder:
            found.templates_from = f"card {found.name!r} (its weights are this folder)"
            return found
    card = Card(name=path.name, family=family, weights=str(folder), path=None, templates_from="none (verbatim)")
    released = cards.get(FAMILY_CARD.get(family, ""))
    if released is not None:
        card.templates = dict(read_card(released).templates)
        card.templates_from = f"family card {released.stem!r}"
    return card


def family_of(model_type: str, what: str, trust_generic: bool = False) -> str:
    """The family loading a config.json `model_type`: a dedicated one, else the generic family for the
    architectures in the table (others only with --trust-generic)."""
    family = MODEL_TYPE_FAMILY.get(model_type)
    if family is not None:
        return family
    if model_type in GENERIC_ARCHITECTURES or trust_generic:
        return "generic"
    raise AuditError(f"{what}: model_type {model_type!r} is not in the table of checked architectures "
                     f"({GENERIC_TABLE}); pass --trust-generic to score it through the generic family unchecked")


def _hub_card(repo: str, revision: str | None, cards: dict[str, Path], trust_generic: bool) -> Card:
    """A hub id: family from its config.json; a registered card for that id lends templates, keep_fp32 and
    edit modules; weights are the cached snapshot folder when there is one (no network at load)."""
    from mllm_audit.models.hub import resolve_hub

    hub = resolve_hub(repo, revision)
    family = family_of(str(hub.config.get("model_type")), f"model {repo}", trust_generic)
    card = Card(name=repo, family=family, weights=repo, path=None, templates_from="none (verbatim)")
    for card_path in cards.values():
        try:
            found = read_card(card_path)
        except AuditError:
            continue
        if found.weights == repo:
            card, card.templates_from = found, f"card {found.name!r} (its weights are {repo})"
            break
    else:
        released = cards.get(FAMILY_CARD.get(family, ""))
        if released is not None:
            card.templates = dict(read_card(released).templates)
            card.templates_from = f"family card {released.stem!r}"
    if card.family != family:
        raise AuditError(f"card {card.name!r} names family {card.family!r}, but {repo}'s config.json says {family!r}")
    if hub.folder is not None:
        card.weights = str(hub.folder)
    card.revision = hub.commit or revision or card.revision
    return card
