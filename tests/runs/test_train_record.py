"""train-editor through the run record: --output is never an existing folder, resume refuses another model
or suite naming the field, a run killed by SIGKILL resumes bit for bit, signals exit 130/143."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from mllm_audit.errors import AuditError
from mllm_audit.runs.signals import RunInterrupted

QUICK = {"steps": 8, "batch": 2, "val_every": 3, "ckpt_every": 2, "patience": 100}
KILLED = {"steps": 8, "batch": 4, "val_every": 3, "ckpt_every": 2, "patience": 100}
ROOT = Path(__file__).resolve().parents[2]


def make_suite(folder: Path, swap: bool = False) -> Path:
    """8 train + 4 val items over 6 images with every editing field; `swap` exchanges every answer."""
    from PIL import Image

    rng = np.random.default_rng(0)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    for k in range(6):
        Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(folder / "images" / f"i{k}.png")
    items = []
    for i in range(12):
        more, less = [("doctor", "nurse"), ("pilot", "flight attendant"), ("office", "kitchen")][i % 3]
        if swap:
            more, less = less, more
        items.append({"id": f"it{i}", "task": "vqa", "bias_type": "gender", "image": f"images/i{i % 6}.png",
                      "prompt": "Who is this?", "y_more": more, "y_less": less, "rephrase_prompt": "Who is it?",
                      "rephrase_image": f"images/i{(i + 1) % 6}.png", "loc_prompt": "The capital of France is",
                      "loc_answer": "Paris", "m_loc_image": f"images/i{(i + 2) % 6}.png",
                      "m_loc_prompt": "What colour?", "m_loc_answer": "red", "split": "train" if i < 8 else "val"})
    path = folder / "items.jsonl"
    path.write_text("".join(json.dumps(it) + "\n" for it in items))
    return path


@pytest.fixture()
def suite(tmp_path: Path) -> Path:
    return make_suite(tmp_path / "suite")


def test_out_into_a_model_folder_is_refused(tiny_blip2_dir: Path, suite: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    from mllm_audit.cli import run

    model = tmp_path / "model"
    shutil.copytree(tiny_blip2_dir, model)
    before = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in model.iterdir()}
    assert run(["train-editor", "--editor", "mend", "--model", str(model), "--suite", str(suite),
                "--output", str(model), "--steps", "2", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--output" in err and "holds a model" in err
    assert {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in model.iterdir()} == before


def test_out_is_renamed_into_place_only_when_whole(tiny_adapter, suite: Path, tmp_path: Path) -> None:  # noqa: ANN001
    from mllm_audit.runs.train_editor import train_editor

    out = tmp_path / "state"
    seen: list[bool] = []
    train_editor("mend", suite=str(suite), output=out, adapter=tiny_adapter,
                 on_step=lambda *a: seen.append(out.exists()), **QUICK)
    assert seen and not any(seen)  # while training, nothing under the target name
    assert sorted(p.name for p in out.iterdir()) == [".mllm-audit-output.json", "config.json", "state.safetensors"]
    assert not (tmp_path / ".state.partial").exists()
    with pytest.raises(AuditError, match="refusing to overwrite"):
        train_editor("mend", suite=str(suite), output=out, adapter=tiny_adapter, **QUICK)


def _crash_at(step_no: int) -> Any:
    def on_step(step: int, total: int, loss: float, val: float | None) -> None:
        if step == step_no:
            raise KeyboardInterrupt

    return on_step


def test_resume_refuses_another_model_or_a_swapped_suite(tiny_adapter, suite: Path, tmp_path: Path) -> None:  # noqa: ANN001
    from mllm_audit.models import load_model
    from mllm_audit.runs.train_editor import train_editor
    from mllm_audit.testing.tiny import save_tiny_blip2

    out = tmp_path / "state"
    with pytest.raises(RunInterrupted, match=r"--resume --output "):
        train_editor("mend", suite=str(suite), output=out, adapter=tiny_adapter, on_step=_crash_at(3), **QUICK)
    swapped = make_suite(tmp_path / "swapped", swap=True)
    with pytest.raises(AuditError, match=r"cannot resume .*suite\.content_hash differs"):
        train_editor("mend", suite=str(swapped), output=out, adapter=tiny_adapter, resume=True, **QUICK)
    other = load_model(str(save_tiny_blip2(tmp_path / "other", seed=1)))
    with pytest.raises(AuditError, match=r"cannot resume .*model\.(files\.model\.safetensors|revision|source) differs"):
        train_editor("mend", suite=str(suite), output=out, adapter=other, resume=True, **QUICK)
    res = train_editor("mend", suite=str(suite), output=out, adapter=tiny_adapter, resume=True, **QUICK)
    assert res.steps_run == 8 and (out / "state.safetensors").is_file()  # negative control: the same run resumes
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["model"] == tiny_adapter.identity()


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signals_in_train_editor(tiny_adapter, suite: Path, tmp_path: Path, sig: int, code: int) -> None:  # noqa: ANN001
    from mllm_audit.runs.train_editor import train_editor

    def stop(step: int, *_: Any) -> None:
        if step == 3:
            if sig == signal.SIGINT:
                raise KeyboardInterrupt
            os.kill(os.getpid(), sig)

    out = tmp_path / "state"
    with pytest.raises(RunInterrupted) as err:
        train_editor("mend", suite=str(suite), output=out, adapter=tiny_adapter, on_step=stop, **QUICK)
    assert err.value.exit_code == code and "\n" not in str(err.value)
    assert "last checkpoint is kept" in str(err.value) and f"--resume --output {out}" in str(err.value)
    assert not out.exists() and (tmp_path / ".state.partial" / "checkpoint.pt").is_file()


# ---- a real kill -----------------------------------------------------------------------------------

CHILD = """
import sys
from mllm_audit.runs.train_editor import train_editor
train_editor("{editor}", model=sys.argv[1], suite=sys.argv[2], output=sys.argv[3], seed=3,
             resume=sys.argv[4] == "1", **{quick!r})
"""


def _child(editor: str, model: str, suite: str, out: Path, resume: bool, delay: float = 0.0) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "MLLM_AUDIT_STEP_DELAY": str(delay)}
    code = CHILD.format(editor=editor, quick=KILLED)
    return subprocess.Popen([sys.executable, "-c", code, str(model), str(suite), str(out), "1" if resume else "0"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_sigkill_then_resume_equals_an_uninterrupted_run_bit_for_bit(tmp_path: Path) -> None:
    """MEND on the shipped toy world: before, the resumed state differed by ~1e-7 (features cached in
    batches whose make-up depended on the history the killed process took with it)."""
    from safetensors.torch import load_file

    full = _child("mend", "toy", "toy", tmp_path / "full", resume=False)
    assert full.wait(timeout=300) == 0, full.communicate()
    cut = _child("mend", "toy", "toy", tmp_path / "cut", resume=False, delay=1.0)
    ckpt = tmp_path / ".cut.partial" / "checkpoint.pt"
    deadline = time.time() + 240
    while time.time() < deadline and cut.poll() is None:
        if ckpt.is_file() and torch.load(ckpt, weights_only=True)["step"] >= 4:
            break
        time.sleep(0.2)
    assert cut.poll() is None, cut.communicate()
    cut.send_signal(signal.SIGKILL)
    cut.wait(timeout=60)
    assert not (tmp_path / "cut").exists()
    resumed = _child("mend", "toy", "toy", tmp_path / "cut", resume=True)
    assert resumed.wait(timeout=300) == 0, resumed.communicate()
    a = load_file(str(tmp_path / "full" / "state.safetensors"))
    b = load_file(str(tmp_path / "cut" / "state.safetensors"))
    assert a.keys() == b.keys()
    worst = max(float((a[k].double() - b[k].double()).abs().max()) for k in a)
    assert worst == 0.0, f"resumed state differs by {worst:.3g}"
    ha = json.loads((tmp_path / "full" / "config.json").read_text())["loss_history"]
    hb = json.loads((tmp_path / "cut" / "config.json").read_text())["loss_history"]
    assert ha == hb
