"""Loading refuses weights that do not fit the model, naming the first tensor, instead of scoring a
model that is partly random."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from mllm_audit.errors import AuditError
from mllm_audit.models import load_model
from mllm_audit.models.cards import resolve_card
from mllm_audit.models.loading import check_loading_info


def _rewrite(folder: Path, drop: str | None = None, add: str | None = None) -> None:
    from safetensors.torch import load_file, save_file

    path = folder / "model.safetensors"
    tensors = load_file(str(path))
    if drop is not None:
        del tensors[drop]
    if add is not None:
        tensors[add] = torch.zeros(3)
    save_file(tensors, str(path), metadata={"format": "pt"})


def _key(folder: Path, part: str) -> str:
    from safetensors import safe_open

    with safe_open(str(folder / "model.safetensors"), "pt") as f:
        return next(k for k in sorted(f.keys()) if part in k)


def test_a_missing_weight_is_refused_naming_it(tiny_blip2_dir: Path, tmp_path: Path) -> None:
    model = tmp_path / "m"
    shutil.copytree(tiny_blip2_dir, model)
    load_model(str(model))  # negative control: the intact folder loads
    key = _key(model, "fc1.weight")
    _rewrite(model, drop=key)
    with pytest.raises(AuditError, match=r"is missing: tensor '.*" + key.split(".", 1)[1].replace(".", r"\.")):
        load_model(str(model))


def test_an_unexpected_weight_is_refused_naming_it(tiny_blip2_dir: Path, tmp_path: Path) -> None:
    model = tmp_path / "m"
    shutil.copytree(tiny_blip2_dir, model)
    _rewrite(model, add="language_model.model.decoder.stowaway")
    with pytest.raises(AuditError, match=r"unexpected tensor: .*stowaway"):
        load_model(str(model))


def test_keys_a_family_declares_are_accepted(tiny_blip2_dir: Path) -> None:
    card = resolve_card(str(tiny_blip2_dir))
    info = {"missing_keys": {"language_model.lm_head.weight"}, "unexpected_keys": set(), "mismatched_keys": set()}
    check_loading_info(card, info, expected=[r".*lm_head\.weight"])  # tied to the embeddings: expected
    with pytest.raises(AuditError, match="lm_head"):
        check_loading_info(card, info)
