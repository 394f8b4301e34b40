"""The toy classifier: a tiny CLIP backbone with linear heads fitted exactly to read each toy image's group.

The toy unified worlds draw images whose group is known by construction; this classifier reads it
back, so gen-scan's counts on the toy are exact and a skew it reports is the planted one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mllm_audit.classifiers.classify import HEAD_FORMAT, Classifier, _backbone, load_classifier
from mllm_audit.testing.tiny import save_tiny_clip


def save_toy_classifier(
    out: Path, images: list[Any], labels: list[dict[str, int]], attributes: dict[str, list[str]], seed: int = 0,
    width: int = 32,
) -> Path:
    """A linear-head classifier folder fitted (least squares, exact) to read `labels` off `images`.

    `labels[i]` is {"person": 0|1, <attribute>: class index, ...}. Refuses to save a head that
    misreads any reference image.
    """
    import torch
    from safetensors.torch import save_file

    out = Path(out)
    save_tiny_clip(out / "backbone", seed=seed, image_size=images[0].size[0], width=width)
    clf = _load_head_unfitted(out / "backbone")
    feats = clf.image_features(images).double()
    tensors: dict[str, torch.Tensor] = {}

    def fit(key: str, rows: list[int], targets: list[int], k: int) -> None:
        x = feats[rows]
        mu = x.mean(0)
        y = torch.nn.functional.one_hot(torch.tensor(targets), k).double()
        ybar = y.mean(0)
        w = torch.linalg.pinv(x - mu) @ (y - ybar)  # [D, K]
        tensors[f"{key}.weight"] = w.T.float().contiguous()
        tensors[f"{key}.bias"] = (ybar - mu @ w).float().contiguous()

    people = [i for i, lab in enumerate(labels) if lab.get("person", 1)]
    fit("person", list(range(len(labels))), [int(lab.get("person", 1)) for lab in labels], 2)
    for a, classes in attributes.items():
        fit(a, people, [labels[i][a] for i in people], len(classes))
    save_file(tensors, str(out / "head.safetensors"))
    cfg = {"format": HEAD_FORMAT, "backbone": "backbone", "attributes": attributes, "person": ["no_person", "person"]}
    (out / "config.json").write_text(json.dumps(cfg, indent=1) + "\n")
    head = load_classifier(out)
    for lab, pred in zip(labels, head.classify(images), strict=True):
        want = {a: attributes[a][lab[a]] for a in attributes} if lab.get("person", 1) else {}
        if pred.person != bool(lab.get("person", 1)) or pred.labels != want:
            raise RuntimeError(f"toy classifier misreads a reference image: {pred} != {want}")
    return out


def _load_head_unfitted(backbone: Path) -> Classifier:
    model, improc, _ = _backbone(str(backbone), None, "cpu", with_text=False)
    return Classifier(name="unfitted", kind="linear-head", source=str(backbone), attributes={}, model=model,
                      image_processor=improc)
