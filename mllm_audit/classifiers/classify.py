"""Attribute classifiers for generated images: who does the model draw?

Two backends, chosen per run (`--classifier`):

- **CLIP zero-shot** (the license-clean default, card `adapters/classifiers/clip-vit-l14.yaml`):
  transformers' CLIPModel scores each image against class prompts. A class may list several prompts
  (e.g. WMELH = White, Middle-Eastern, Latino-Hispanic); its probability is the sum over its prompts
  of the softmax over all prompts of the attribute, so a union of groups is a union. An image is "no
  person" when the `person` block's no-person prompts take more than half of that softmax.
- **Linear head** (a user-supplied classifier folder), documented format:

      FOLDER/config.json        {"format": "mllm-audit/classifier/v1",
                                 "backbone": "backbone",   # CLIPModel folder (relative) or hub id
                                 "attributes": {"gender": ["male", "female"], "race": [...]},
                                 "person": ["no_person", "person"]}          # optional
      FOLDER/head.safetensors   "<attribute>.weight" [K, D], "<attribute>.bias" [K] per attribute,
                                "person.weight" [2, D], "person.bias" [2] when `person` is given
      FOLDER/backbone/          the CLIPModel and its image processor (save_pretrained)

  The features are the L2-normalised CLIP image embeddings; logits = features @ weight.T + bias.

`--classifier` takes a registered card name (`adapters/classifiers/<name>.yaml`), a card .yaml, a
linear-head folder, or a CLIPModel folder (zero-shot with the default card's prompts).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mllm_audit.errors import AuditError
from mllm_audit.util.files import read_yaml_mapping
from mllm_audit.util.registry import Registry, yaml_folder
from mllm_audit.util.resources import adapters_dir

HEAD_FORMAT = "mllm-audit/classifier/v1"
DEFAULT_CLASSIFIER = "clip-vit-l14"
_CARD_KEYS = {"name", "kind", "description", "weights", "revision", "license", "folder", "person", "attributes"}


@dataclass(frozen=True)
class Prediction:
    """One image: whether a person was detected, and the predicted class per attribute (if so)."""

    person: bool
    labels: dict[str, str] = field(default_factory=dict)


@dataclass
class Classifier:
    """Shared by both backends: the attributes and their classes, and the identity for results.json."""

    name: str
    kind: str
    source: str
    attributes: dict[str, list[str]]
    model: Any = None
    image_processor: Any = None
    device: str = "cpu"

    def identity(self) -> dict[str, Any]:
        from mllm_audit.models.base import weights_fingerprint

        fp = weights_fingerprint(self.source) if Path(self.source).is_dir() else None
        return {"name": self.name, "kind": self.kind, "source": self.source, "fingerprint": fp,
                "attributes": self.attributes}

    def image_features(self, images: Sequence[Any]) -> Any:
        import torch

        pv = self.image_processor(list(images), return_tensors="pt")["pixel_values"].to(self.device)
        with torch.no_grad():
            f = self.model.get_image_features(pixel_values=pv, return_dict=True).pooler_output.float()
        return f / f.norm(dim=-1, keepdim=True).clamp_min(1e-12)

    def classify(self, images: Sequence[Any], batch_size: int = 32) -> list[Prediction]:
        import torch

        out: list[Prediction] = []
        with torch.no_grad():
            for i in range(0, len(images), max(1, batch_size)):
                out.extend(self._classify(images[i : i + max(1, batch_size)]))
        return out

    def _classify(self, images: Sequence[Any]) -> list[Prediction]:  # pragma: no cover - per backend
        raise NotImplementedError


@dataclass
class ClipZeroShot(Classifier):
    prompts: dict[str, dict[str, list[str]]] = field(default_factory=dict)  # attribute -> class -> prompts
    person_prompts: dict[str, list[str]] = field(default_factory=dict)  # {"person": [...], "no_person": [...]}
    tokenizer: Any = None
    _text: dict[str, tuple[Any, list[int]]] = field(default_factory=dict)

    def identity(self) -> dict[str, Any]:
        return super().identity() | {"prompts": self.prompts, "person_prompts": self.person_prompts}

    def _text_block(self, key: str, classes: dict[str, list[str]]) -> tuple[Any, list[int]]:
        """Normalised text embeddings of every prompt of an attribute, and each prompt's class index."""
        import torch

        if key not in self._text:
            texts = [t for ts in classes.values() for t in ts]
            owner = [i for i, ts in enumerate(classes.values()) for _ in ts]
            enc = self.tokenizer(texts, padding=True, return_tensors="pt").to(self.device)
            with torch.no_grad():
                f = self.model.get_text_features(**enc, return_dict=True).pooler_output.float()
            self._text[key] = (f / f.norm(dim=-1, keepdim=True).clamp_min(1e-12), owner)
        return self._text[key]

    def _class_probs(self, feats: Any, key: str, classes: dict[str, list[str]]) -> Any:
        import torch

        text, owner = self._text_block(key, classes)
        scale = self.model.logit_scale.exp().float()
        p = torch.softmax(scale * feats @ text.T, dim=-1)
        out = torch.zeros(p.shape[0], len(classes), device=p.device)
        return out.index_add_(1, torch.tensor(owner, device=p.device), p)

    def _classify(self, images: Sequence[Any]) -> list[Prediction]:
        feats = self.image_features(images)
        person = None
        if self.person_prompts:
            person = self._class_probs(feats, "person", self.person_prompts)[:, 0]
        preds = {a: self._class_probs(feats, a, c).argmax(-1).tolist() for a, c in self.prompts.items()}
        out = []
        for i in range(len(images)):
            has = person is None or float(person[i]) > 0.5
            labels = {a: self.attributes[a][preds[a][i]] for a in self.attributes} if has else {}
            out.append(Prediction(person=has, labels=labels))
        return out


@dataclass
class LinearHead(Classifier):
    heads: dict[str, tuple[Any, Any]] = field(default_factory=dict)  # name -> (weight [K, D], bias [K])
    person_classes: list[str] = field(default_factory=list)

    def _classify(self, images: Sequence[Any]) -> list[Prediction]:
        feats = self.image_features(images)
        logits = {k: feats @ w.T + b for k, (w, b) in self.heads.items()}
        out = []
        for i in range(len(images)):
            has = True
            if "person" in logits:
                has = self.person_classes[int(logits["person"][i].argmax())] == "person"
            labels = {a: cls[int(logits[a][i].argmax())] for a, cls in self.attributes.items()} if has else {}
            out.append(Prediction(person=has, labels=labels))
        return out


# ---- loading -------------------------------------------------------------------------------------

def classifiers_dir() -> Path:
    return adapters_dir() / "classifiers"


CLASSIFIERS = Registry("classifier", yaml_folder(classifiers_dir, group="mllm_audit.classifiers"))


def registered_classifiers() -> dict[str, Path]:
    return dict(CLASSIFIERS.entries())


def _read_card(path: Path) -> dict[str, Any]:
    data = read_yaml_mapping(path, "classifier card", _CARD_KEYS)
    if data.get("kind") not in ("clip-zero-shot", "linear-head"):
        raise AuditError(f"classifier card {path}: kind must be clip-zero-shot or linear-head")
    return data


def _prompt_lists(block: Any, where: str) -> dict[str, list[str]]:
    if not isinstance(block, dict) or not block:
        raise AuditError(f"{where}: expected a mapping of class -> prompt(s)")
    out = {}
    for cls, ps in block.items():
        ps = [ps] if isinstance(ps, str) else ps
        if not isinstance(ps, list) or not ps or not all(isinstance(p, str) and p.strip() for p in ps):
            raise AuditError(f"{where}: class {cls!r} needs one or more non-empty prompts")
        out[str(cls)] = list(ps)
    return out


def load_classifier(spec: str | Path | None = None, device: str = "cpu") -> Classifier:
    """A registered card name, a card .yaml, a linear-head folder, or a CLIPModel folder."""
    spec_s = str(spec or DEFAULT_CLASSIFIER)
    reg = registered_classifiers()
    if spec_s in reg:
        return _from_card(_read_card(reg[spec_s]), reg[spec_s], device)
    path = Path(spec_s).expanduser()
    if path.suffix in (".yaml", ".yml") and path.is_file():
        return _from_card(_read_card(path), path, device)
    if path.is_dir():
        cfg = _read_json(path / "config.json")
        if cfg.get("format") == HEAD_FORMAT:
            return _load_head(path, cfg, path.name, device)
        if cfg.get("model_type") == "clip":
            default = _read_card(reg[DEFAULT_CLASSIFIER])
            return _zero_shot(path.name, str(path.resolve()), default, None, device)
        raise AuditError(f"classifier folder {path}: neither a {HEAD_FORMAT} head nor a CLIP model")
    known = ", ".join(reg) or "none"
    raise AuditError(f"unknown classifier {spec_s!r} (cards: {known}; or give a classifier folder or card .yaml)")


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise AuditError(f"classifier: {path} not found")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise AuditError(f"{path}: malformed JSON ({e.msg})") from None
    if not isinstance(data, dict):
        raise AuditError(f"{path}: expected an object")
    return data


def _from_card(card: dict[str, Any], path: Path, device: str) -> Classifier:
    name = str(card.get("name", path.stem))
    if card["kind"] == "linear-head":
        folder = (path.parent / str(card.get("folder", ""))).resolve()
        if not folder.is_dir():
            raise AuditError(f"classifier card {path}: folder {folder} not found")
        return _load_head(folder, _read_json(folder / "config.json"), name, device)
    weights = card.get("weights")
    if not isinstance(weights, str):
        raise AuditError(f"classifier card {path}: missing 'weights'")
    local = (path.parent / weights).resolve()
    if weights.startswith((".", "/")) or local.is_dir():
        weights = str(local)
    return _zero_shot(name, weights, card, card.get("revision"), device)


def _pretrained(cls: Any, source: str, revision: str | None) -> Any:
    import os

    from mllm_audit.models.loading import quiet_transformers

    quiet_transformers()
    kwargs: dict[str, Any] = {}
    if revision:
        kwargs["revision"] = revision
    if not os.path.isdir(source):
        kwargs["local_files_only"] = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0")
    try:
        return cls.from_pretrained(source, **kwargs)
    except (OSError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise AuditError(
            f"cannot load classifier from {source!r}: {first} "
            "(without hub access, download the weights elsewhere and pass the folder with --classifier)"
        ) from None


def _backbone(source: str, revision: str | None, device: str, with_text: bool) -> tuple[Any, Any, Any]:
    from transformers import AutoImageProcessor, AutoTokenizer, CLIPModel

    model = _pretrained(CLIPModel, source, revision).to(device).eval()
    improc = _pretrained(AutoImageProcessor, source, revision)
    tok = _pretrained(AutoTokenizer, source, revision) if with_text else None
    return model, improc, tok


def _zero_shot(name: str, source: str, card: dict[str, Any], revision: str | None, device: str) -> ClipZeroShot:
    attrs = card.get("attributes")
    if not isinstance(attrs, dict) or not attrs:
        raise AuditError(f"classifier {name!r}: 'attributes' must map attribute -> class -> prompt(s)")
    prompts = {str(a): _prompt_lists(c, f"classifier {name!r} attribute {a!r}") for a, c in attrs.items()}
    person = _prompt_lists(card["person"], f"classifier {name!r} person") if card.get("person") else {}
    if person and list(person) != ["person", "no_person"]:
        raise AuditError(f"classifier {name!r}: 'person' takes exactly the classes person and no_person")
    model, improc, tok = _backbone(source, revision, device, with_text=True)
    return ClipZeroShot(
        name=name, kind="clip-zero-shot", source=source, attributes={a: list(c) for a, c in prompts.items()},
        model=model, image_processor=improc, device=device, prompts=prompts, person_prompts=person, tokenizer=tok,
    )


def _load_head(folder: Path, cfg: dict[str, Any], name: str, device: str) -> LinearHead:
    from safetensors.torch import load_file

    attrs = cfg.get("attributes")
    if not isinstance(attrs, dict) or not attrs or not all(isinstance(v, list) and len(v) >= 2 for v in attrs.values()):
        raise AuditError(f"{folder}/config.json: 'attributes' must map each attribute to two or more classes")
    person = cfg.get("person")
    if person is not None and sorted(person) != ["no_person", "person"]:
        raise AuditError(f"{folder}/config.json: 'person' must list the classes no_person and person")
    backbone = str(cfg.get("backbone", "backbone"))
    source = str((folder / backbone).resolve()) if (folder / backbone).is_dir() else backbone
    model, improc, _ = _backbone(source, cfg.get("revision"), device, with_text=False)
    path = folder / "head.safetensors"
    if not path.is_file():
        raise AuditError(f"classifier folder {folder}: head.safetensors not found")
    tensors = load_file(str(path), device=device)
    heads = {}
    for key, classes in list(attrs.items()) + ([("person", person)] if person else []):
        w, b = tensors.get(f"{key}.weight"), tensors.get(f"{key}.bias")
        if w is None or b is None or w.shape[0] != len(classes) or b.shape != (len(classes),):
            raise AuditError(f"{path}: needs {key}.weight [{len(classes)}, D] and {key}.bias [{len(classes)}]")
        heads[key] = (w.float(), b.float())
    return LinearHead(
        name=name, kind="linear-head", source=str(folder.resolve()), attributes={a: list(c) for a, c in attrs.items()},
        model=model, image_processor=improc, device=device, heads=heads, person_classes=list(person or []),
    )
