"""`train-editor` on a tiny random BLIP-2: state files, identity check, exact resume, early stopping, CLI.

Also home of the helpers the MEND, KE and SERAC tests share (a tiny suite with train/val/eval splits).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from mllm_audit.cli import run
from mllm_audit.errors import AuditError
from mllm_audit.runs.signals import RunInterrupted

ANSWERS = [("doctor", "nurse"), ("pilot", "flight attendant"), ("office", "kitchen"), ("red", "blue green")]
QUICK = {"steps": 6, "batch": 2, "val_every": 3, "ckpt_every": 2, "patience": 100}


def learned_suite(folder: Path) -> Path:
    """16 items over 8 images: 8 train, 4 val, 4 eval, every editing field filled."""
    from PIL import Image

    rng = np.random.default_rng(0)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    images = []
    for k in range(8):
        Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(folder / "images" / f"i{k}.png")
        images.append(f"images/i{k}.png")
    items = []
    for i in range(16):
        vqa = i % 2 == 0
        more, less = ANSWERS[(i // 2 + i) % len(ANSWERS)]
        items.append({
            "id": f"it{i}", "task": "vqa" if vqa else "ic", "bias_type": "gender", "image": images[i // 2],
            "prompt": "Is this person a doctor or a nurse?" if vqa else "a photo of", "y_more": more,
            "y_less": less, "rephrase_prompt": "Is this a doctor or a nurse?" if vqa else "a picture of",
            "rephrase_image": images[(i // 2 + 1) % 8], "loc_prompt": "The capital of France is",
            "loc_answer": "Paris", "m_loc_image": images[(i // 2 + 3) % 8],
            "m_loc_prompt": "What colour is the background?", "m_loc_answer": "red",
            "split": "train" if i < 8 else ("val" if i < 12 else "eval"),
        })
    path = folder / "items.jsonl"
    path.write_text("".join(json.dumps(it) + "\n" for it in items))
    return path


def untrained_state(editor: str, adapter: Any, out: Path, hparams: dict[str, Any] | None = None) -> Path:
    """An editor's state as built, before any training: the baseline that learning must beat."""
    from mllm_audit.editors import make_editor

    ed = make_editor(editor)
    ed.setup(adapter, hparams)  # type: ignore[attr-defined]
    ed.save_state(out, adapter, {})  # type: ignore[attr-defined]
    return out


def reliability(adapter: Any, suite: Path, editor: str, state: Path, out: Path, split: str = "train") -> dict:
    from mllm_audit.runs.fix import run_fix

    res = run_fix(suite=str(suite), editor=editor, editor_state=state, all_items=True, split=split,
                  output=out, adapter=adapter)
    margins = [e["post"]["reliability"] for e in res.edits]  # logp(y_more) - logp(y_less) after the edit
    return {**res.results["metrics"], "mean_post_margin": sum(margins) / len(margins)}


@pytest.fixture()
def lsuite(tmp_path: Path) -> Path:
    return learned_suite(tmp_path / "suite")


def _tensors(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(folder / "state.safetensors"))


@pytest.mark.parametrize("editor", ["mend", "ke", "serac"])
def test_resume_ends_where_an_uninterrupted_run_ends(tiny_adapter, lsuite: Path, tmp_path: Path,  # noqa: ANN001
                                                     editor: str) -> None:
    from mllm_audit.runs.train_editor import train_editor

    full = train_editor(editor, suite=str(lsuite), output=tmp_path / "full", seed=3, adapter=tiny_adapter, **QUICK)

    def crash(step: int, total: int, loss: float, val: float | None) -> None:
        if step == 3:  # after the checkpoint at step 2: step 3 is lost and redone on resume
            raise KeyboardInterrupt

    with pytest.raises(RunInterrupted, match="--resume"):  # Ctrl-C: one line, exit 130, checkpoint kept
        train_editor(editor, suite=str(lsuite), output=tmp_path / "cut", seed=3, adapter=tiny_adapter, on_step=crash,
                     **QUICK)
    assert not (tmp_path / "cut" / "state.safetensors").exists()
    with pytest.raises(AuditError, match="--resume"):
        train_editor(editor, suite=str(lsuite), output=tmp_path / "cut", seed=3, adapter=tiny_adapter, **QUICK)
    resumed = train_editor(editor, suite=str(lsuite), output=tmp_path / "cut", seed=3, resume=True,
                           adapter=tiny_adapter, **QUICK)
    assert resumed.steps_run == full.steps_run == 6
    a, b = _tensors(tmp_path / "full"), _tensors(tmp_path / "cut")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    cfg = json.loads((tmp_path / "cut" / "config.json").read_text())
    assert cfg["editor"] == editor and cfg["model"] == tiny_adapter.identity()
    assert cfg["loss_history"] == json.loads((tmp_path / "full" / "config.json").read_text())["loss_history"]


def test_early_stopping_keeps_the_best_val_state(tiny_adapter, lsuite: Path, tmp_path: Path) -> None:  # noqa: ANN001
    from mllm_audit.runs.train_editor import train_editor

    # lr 0.5 forces early stopping; the earlier MEND variant stays finite there, the faithful one
    # (per-feature normalisation) is the subject of the divergence test below.
    res = train_editor("mend", suite=str(lsuite), output=tmp_path / "es", adapter=tiny_adapter, steps=40, batch=2,
                       val_every=1, patience=1, lr=0.5, hparams={"variant": "margin"})
    assert res.stopped_early and res.steps_run < 40
    vals = {v["step"]: v["val_loss"] for v in res.val_history}
    assert vals[res.best_step] == min(vals.values())


def test_divergence_stops_with_one_line_naming_the_lr(tiny_adapter, lsuite: Path, tmp_path: Path) -> None:  # noqa: ANN001
    """MEND at lr 100 leaves the finite numbers at step 1 (the faithful MEND did at lr 0.5 before its
    dead-feature guard); the old loop then crashed writing config.json."""
    from mllm_audit.runs.train_editor import train_editor

    out = tmp_path / "nan"
    with pytest.raises(AuditError, match=r"diverged at step \d+ with lr 100 \(") as err:
        train_editor("mend", suite=str(lsuite), output=out, adapter=tiny_adapter, steps=40, batch=2, val_every=1,
                     patience=1, lr=100.0)
    assert "\n" not in str(err.value)
    assert not out.exists() and not (tmp_path / ".nan.partial").exists()  # no half state, no dead checkpoint
    # the same run at a sane lr trains and writes its state (the check does not fire on finite runs)
    ok = train_editor("mend", suite=str(lsuite), output=tmp_path / "ok", adapter=tiny_adapter, steps=2, batch=2,
                      val_every=1, patience=1, lr=1e-3)
    assert ok.steps_run == 2 and (tmp_path / "ok" / "config.json").is_file()


def test_state_for_another_model_is_refused(tiny_adapter, lsuite: Path, tmp_path: Path) -> None:  # noqa: ANN001
    from mllm_audit.editors import make_editor

    state = untrained_state("mend", tiny_adapter, tmp_path / "st")
    cfg = json.loads((state / "config.json").read_text())
    cfg["model"]["revision"] = "sha256:0000000000000000"
    (state / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(AuditError, match="was trained for model"):
        make_editor("mend").load_state(state, tiny_adapter)  # type: ignore[attr-defined]
    with pytest.raises(AuditError, match="for editor 'mend', not 'ke'"):
        make_editor("ke").load_state(state, tiny_adapter)  # type: ignore[attr-defined]


def test_cli_train_then_fix(tiny_blip2_dir: Path, lsuite: Path, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    out = tmp_path / "mend-state"
    args = ["train-editor", "--editor", "mend", "--model", str(tiny_blip2_dir), "--suite", str(lsuite),
            "--output", str(out), "--steps", "3", "--quiet"]
    assert run(args) == 0
    assert (out / "state.safetensors").is_file() and (out / "config.json").is_file()
    assert run(["fix", "--editor", "mend", "--model", str(tiny_blip2_dir), "--suite", str(lsuite), "--all",
                "--editor-state", str(out), "--quiet", "--output", str(tmp_path / "run")]) == 0
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["complete"] and results["n_edits"] == 4  # the eval split
    assert run(["fix", "--editor", "serac", "--model", str(tiny_blip2_dir), "--suite", str(lsuite),
                "--editor-state", str(out), "--quiet", "--output", str(tmp_path / "r2")]) == 2
    err = capsys.readouterr().err
    assert "for editor 'mend', not 'serac'" in err
    assert run(["train-editor", "--editor", "ft-l", "--model", str(tiny_blip2_dir), "--suite", str(lsuite),
                "--output", str(tmp_path / "x"), "--quiet"]) == 2
