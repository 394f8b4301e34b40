"""Editing through the generic family: FT-L and a learned editor (MEND) find their modules from each
architecture (the language model's last MLP, the projector) and run on the tiny model of every
architecture in the table; FT-L moves the edited margin towards y_less and the model is restored."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from test_generic import load_generic

from mllm_audit.models.cards import GENERIC_ARCHITECTURES
from mllm_audit.runs.fix import run_fix

ARCHS = sorted(GENERIC_ARCHITECTURES)


def edit_suite(root: Path) -> Path:
    """Four items over two images, every editing split filled (train: 2, eval: 2)."""
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    for k in range(2):
        Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(root / "images" / f"i{k}.png")
    items = []
    for i in range(4):
        items.append({"id": f"e{i}", "task": "vqa", "bias_type": "gender", "image": f"images/i{i % 2}.png",
                      "prompt": "Is this person a doctor or a nurse?", "y_more": "doctor", "y_less": "nurse",
                      "rephrase_prompt": "Is this a doctor or a nurse?", "rephrase_image": f"images/i{(i + 1) % 2}.png",
                      "loc_prompt": "The capital of France is", "loc_answer": "Paris",
                      "m_loc_image": f"images/i{(i + 1) % 2}.png", "m_loc_prompt": "What colour is it?",
                      "m_loc_answer": "red", "split": "train" if i < 2 else "eval"})
    path = root / "edit.jsonl"
    path.write_text("".join(json.dumps(it) + "\n" for it in items))
    return path


@pytest.mark.parametrize("arch", ARCHS)
def test_ft_l_edits_and_restores(arch: str, tmp_path: Path) -> None:
    adapter = load_generic(arch, tmp_path)
    text = adapter.module_names("text")
    assert text and all(".mlp." in n or ".feed_forward." in n for n in text) and adapter.module_names("vision")
    before = {k: v.detach().clone() for k, v in adapter.model.state_dict().items()}
    res = run_fix(suite=str(edit_suite(tmp_path / "s")), editor="ft-l", mode="single", output=tmp_path / "run",
                  all_items=True, adapter=adapter, editor_options={"steps": 5, "lr": 5e-2}, batch_size=8)
    rows = res.edits
    assert res.results["complete"] and len(rows) == 2
    assert all(r["margin_change"] < 0 for r in rows), rows  # each edit moved the margin towards y_less
    after = adapter.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # restored bit for bit


@pytest.mark.parametrize("arch", ARCHS)
def test_mend_trains_and_edits(arch: str, tmp_path: Path) -> None:
    """train-editor mend (a few steps) then fix --editor mend: the hypernetwork hooks the generic family's
    edit modules and its edits run; the model is restored."""
    from mllm_audit.runs.train_editor import train_editor

    adapter = load_generic(arch, tmp_path)
    suite = edit_suite(tmp_path / "s")
    trained = train_editor("mend", suite=str(suite), output=tmp_path / "mend", adapter=adapter, steps=3, batch=2,
                           val_every=3, patience=100, hparams={"init_lr": 1e-2})
    assert len(trained.history) == 3 and all(np.isfinite(h["loss"]) for h in trained.history)
    before = {k: v.detach().clone() for k, v in adapter.model.state_dict().items()}
    res = run_fix(suite=str(suite), editor="mend", editor_state=tmp_path / "mend", output=tmp_path / "run",
                  all_items=True, adapter=adapter, batch_size=8)
    assert res.results["complete"] and len(res.edits) == 2
    assert all(r["touched_parameters"] > 0 for r in res.edits)
    after = adapter.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


@pytest.mark.parametrize("arch", ["qwen2_vl", "mllama", "gemma3", "idefics3", "internvl", "paligemma"])
def test_ft_v_edits_the_projector(arch: str, tmp_path: Path) -> None:
    """FT-V trains the bridge the generic family finds (gradients flow through the vision side inside
    the stock forward): the projector changes during the edit, the text model does not, all restored."""
    adapter = load_generic(arch, tmp_path)
    (vision,) = adapter.module_names("vision")
    before = {k: v.detach().clone() for k, v in adapter.model.state_dict().items()}
    res = run_fix(suite=str(edit_suite(tmp_path / "s")), editor="ft-v", mode="single", output=tmp_path / "run",
                  all_items=True, adapter=adapter, editor_options={"steps": 3, "lr": 5e-2}, batch_size=8)
    assert res.results["complete"] and all(r["touched_parameters"] > 0 for r in res.edits)
    n_vision = sum(1 for n, _ in adapter.model.named_parameters() if n.startswith(vision + "."))  # tensors
    assert all(r["touched_parameters"] == n_vision for r in res.edits), (vision, n_vision)
    assert all(r["margin_change"] != 0 for r in res.edits)  # the image path moved the scores
    after = adapter.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


@pytest.mark.parametrize("editor", ["ike", "ke", "serac"])
@pytest.mark.parametrize("arch", ["qwen2_vl", "mllama", "idefics3"])
def test_ike_ke_serac_run(arch: str, editor: str, tmp_path: Path) -> None:
    """The other editors on three layouts (M-RoPE, cross-attention, split tiles): KE and SERAC read a
    request's image from the input embeddings at its placeholder span; every edit is measured and undone."""
    from mllm_audit.runs.train_editor import train_editor

    adapter = load_generic(arch, tmp_path)
    suite = edit_suite(tmp_path / "s")
    state = None
    if editor != "ike":
        train_editor(editor, suite=str(suite), output=tmp_path / "st", adapter=adapter, steps=3, batch=2, val_every=3,
                     patience=100)
        state = tmp_path / "st"
    before = {k: v.detach().clone() for k, v in adapter.model.state_dict().items()}
    res = run_fix(suite=str(suite), editor=editor, editor_state=state, output=tmp_path / "run", all_items=True,
                  adapter=adapter, batch_size=8)
    assert res.results["complete"] and len(res.edits) == 2
    assert all(np.isfinite(r["margin_change"]) for r in res.edits)
    after = adapter.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
