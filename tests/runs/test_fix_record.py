"""fix through the run record: nothing of the user's is overwritten, --save is atomic and measures
the model it saves (checked against an independent recomputation with the stock transformers forward)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
from pathlib import Path
from typing import Any

import pytest
import torch

from mllm_audit.cli import run
from mllm_audit.errors import AuditError
from mllm_audit.runs.fix import run_fix
from mllm_audit.runs.scan import run_scan
from mllm_audit.runs.signals import RunInterrupted

FAST = {"steps": 3, "lr": 1e-2}


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture()
def edit_suite(tiny_suite: Path) -> Path:
    """The tiny suite (12 items, 6 images) with every editing field filled; 4 train, 8 eval."""
    items = [json.loads(x) for x in tiny_suite.read_text().splitlines()]
    images = sorted({it["image"] for it in items})
    for i, it in enumerate(items):
        it.update(rephrase_prompt="Is this a doctor or a nurse?", rephrase_image=images[(i + 1) % len(images)],
                  loc_prompt="The capital of France is", loc_answer="Paris", m_loc_image=images[(i + 2) % len(images)],
                  m_loc_prompt="What colour is the background?", m_loc_answer="red",
                  split="train" if i < 4 else "eval")
    path = tiny_suite.parent / "edit.jsonl"
    path.write_text("".join(json.dumps(it) + "\n" for it in items))
    return path


def test_save_into_a_model_folder_is_refused(tiny_blip2_dir: Path, edit_suite: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    model = tmp_path / "model"
    shutil.copytree(tiny_blip2_dir, model)
    before = _digest(model / "model.safetensors")
    argv = ["fix", "--model", str(model), "--suite", str(edit_suite), "--all", "-q"]
    for target in (model, tiny_blip2_dir):  # its own folder, and any other model folder
        capsys.readouterr()
        assert run([*argv, "--save", str(target), "--output", str(tmp_path / "run")]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "--save" in err and "holds a model" in err
    assert _digest(model / "model.safetensors") == before
    assert not (tmp_path / "run").exists()


def test_output_into_a_scan_folder_is_refused(tiny_adapter, edit_suite: Path, tmp_path: Path) -> None:  # noqa: ANN001
    out = tmp_path / "scan"
    run_scan(suite=str(edit_suite), output=out, adapter=tiny_adapter)
    before = _digest(out / "results.json")
    with pytest.raises(AuditError, match=r"already holds a run \(scan\)"):
        run_fix(suite=str(edit_suite), output=out, adapter=tiny_adapter, all_items=True, editor_options=FAST)
    assert _digest(out / "results.json") == before
    # negative control: a fresh folder is written
    res = run_fix(suite=str(edit_suite), output=tmp_path / "fix", adapter=tiny_adapter, all_items=True,
                  editor_options=FAST)
    assert res.results["complete"] and res.results["command"] == "fix"


def test_a_save_that_dies_half_way_leaves_nothing_loadable(tiny_adapter, edit_suite: Path, tmp_path: Path,  # noqa: ANN001
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "edited"

    def boom(self: Any, *args: Any, **kwargs: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(type(tiny_adapter.processor), "save_pretrained", boom)  # after the weights are written
    with pytest.raises(OSError):
        run_fix(suite=str(edit_suite), output=tmp_path / "run", adapter=tiny_adapter, all_items=True, save=target,
                editor_options=FAST)
    assert not target.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".edited")]  # the temporary folder is gone
    assert json.loads((tmp_path / "run" / "results.json").read_text())["complete"] is False


# ---- the saved model's metrics, recomputed independently -----------------------------------------


def _stock_logits(model: Any, processor: Any, image: Any, text: str, cont: str) -> tuple[torch.Tensor, int]:
    """Log-softmax at each continuation position and the continuation length, from the stock forward."""
    tok = processor.tokenizer
    cont_ids = tok(" " + cont, add_special_tokens=False).input_ids
    if image is None:
        ids = tok(text).input_ids + cont_ids
        logits = model.language_model(input_ids=torch.tensor([ids])).logits
    else:
        enc = processor(images=image, text=text, return_tensors="pt")
        ids = enc.input_ids[0].tolist() + cont_ids
        logits = model(input_ids=torch.tensor([ids]), pixel_values=enc.pixel_values).logits
    n = len(cont_ids)
    lp = torch.log_softmax(logits[0, len(ids) - n - 1: len(ids) - 1].double(), -1)
    return lp, n


def _logp(model: Any, processor: Any, image: Any, text: str, cont: str) -> float:
    """Summed continuation log-probability, as the stock loss gives it: -loss * n_tokens."""
    tok = processor.tokenizer
    cont_ids = tok(" " + cont, add_special_tokens=False).input_ids
    enc = processor(images=image, text=text, return_tensors="pt")
    ids = torch.tensor([enc.input_ids[0].tolist() + cont_ids])
    labels = ids.clone()
    labels[0, : ids.shape[1] - len(cont_ids)] = -100
    out = model(input_ids=ids, pixel_values=enc.pixel_values, labels=labels)
    return float(-out.loss.double() * len(cont_ids))


def _recompute(saved: Path, base: Path, suite: Path, eval_ids: list[str]) -> dict[str, float]:
    from PIL import Image
    from transformers import Blip2ForConditionalGeneration, Blip2Processor

    from mllm_audit.models.cards import resolve_card

    card = resolve_card(str(base))  # only for the prompt templates the run used
    post_m = Blip2ForConditionalGeneration.from_pretrained(saved).eval()
    pre_m = Blip2ForConditionalGeneration.from_pretrained(base).eval()
    proc = Blip2Processor.from_pretrained(saved)
    items = {it["id"]: it for it in map(json.loads, suite.read_text().splitlines())}

    def img(rel: str) -> Any:
        return Image.open(suite.parent / rel).convert("RGB")

    sums: dict[str, list[float]] = {k: [] for k in ("reliability", "t_generality", "v_generality", "t_locality_top1",
                                                    "t_locality_kl", "m_locality_top1", "m_locality_kl")}
    with torch.no_grad():
        for iid in eval_ids:
            it = items[iid]
            fmt = card.template(it["task"]).format
            for name, prompt, image in (("reliability", it["prompt"], it["image"]),
                                        ("t_generality", it["rephrase_prompt"], it["image"]),
                                        ("v_generality", it["prompt"], it["rephrase_image"])):
                margin = _logp(post_m, proc, img(image), fmt(prompt=prompt), it["y_more"]) - \
                    _logp(post_m, proc, img(image), fmt(prompt=prompt), it["y_less"])
                sums[name].append(float(margin < 0))
            for name, image, prompt, answer, task in (
                ("t_locality", None, it["loc_prompt"], it["loc_answer"], None),
                ("m_locality", it["m_loc_image"], it["m_loc_prompt"], it["m_loc_answer"], "vqa"),  # a question
            ):
                text = card.template(task).format(prompt=prompt)
                pre, _ = _stock_logits(pre_m, proc, img(image) if image else None, text, answer)
                post, _ = _stock_logits(post_m, proc, img(image) if image else None, text, answer)
                sums[f"{name}_top1"].append(float((pre.argmax(-1) == post.argmax(-1)).double().mean()))
                sums[f"{name}_kl"].append(float((pre.exp() * (pre - post)).sum(-1).clamp(min=0).mean()))
    return {k: sum(v) / len(v) for k, v in sums.items()}


def test_saved_model_metrics_equal_an_independent_recomputation(tiny_blip2_dir: Path, edit_suite: Path,
                                                                tmp_path: Path) -> None:
    from mllm_audit.models import load_model

    adapter = load_model(str(tiny_blip2_dir))
    save = tmp_path / "edited"
    res = run_fix(suite=str(edit_suite), editor="ft-l", mode="batch", batch_edits=4, all_items=True,
                  output=tmp_path / "run", save=save, adapter=adapter,
                  editor_options={"steps": 10, "lr": 5e-2, "stop_margin": 100.0})
    saved = res.results["saved_model"]
    assert set(saved["metrics"]) == set(res.results["metrics"])
    manifest = json.loads((save / "mllm-audit-edit.json").read_text())
    assert manifest["metrics"] == saved["metrics"] and manifest["run_id"] == res.results["run_id"]
    assert json.loads((tmp_path / "run" / "results.json").read_text())["saved_model"] == saved
    mine = _recompute(save, tiny_blip2_dir, edit_suite, [e["item_id"] for e in res.edits])
    for k, v in mine.items():
        assert abs(v - saved["metrics"][k]) <= 1e-6, (k, v, saved["metrics"][k])
    # The two batches of 4 were each measured on a fresh model; the saved model carries all 8 at once.
    rows = res.results["metrics"]
    def same(a: float | None, b: float | None) -> bool:
        return (a is None and b is None) or (a is not None and b is not None and abs(a - b) <= 1e-9)

    effects = ("weight_delta_norm", "steps", "opposite_targets")  # per edit call, not the model's: not compared
    assert saved["differs_from_rows"] == [k for k in rows if not same(rows[k], saved["metrics"][k])
                                          and k.removesuffix("_ci_low").removesuffix("_ci_high") not in effects]
    assert saved["differs_from_rows"], "the test needs a case where the saved model differs from the rows"
    assert any(abs(mine[k] - rows[k]) > 1e-3 for k in mine)  # negative control: the rows are not the saved model


def test_console_says_the_saved_model_differs(tiny_blip2_dir: Path, edit_suite: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["fix", "--model", str(tiny_blip2_dir), "--suite", str(edit_suite), "--all", "--mode", "batch",
            "--batch-edits", "4", "--save", str(tmp_path / "edited"), "--output", str(tmp_path / "run"), "-q"]
    assert run(argv) == 0
    err = " ".join(capsys.readouterr().err.split())
    saved = json.loads((tmp_path / "run" / "results.json").read_text())["saved_model"]
    if saved["differs_from_rows"]:
        assert "(8 edits; every edit applied at once" in err and "differs from the rows above" in err
        k = next(k for k in saved["differs_from_rows"] if not k.endswith(("_ci_low", "_ci_high")))
        assert f"{k} │ {rows_value(tmp_path, k)} │ {saved['metrics'][k]:.3f}" in err  # the compact table's row
    else:
        assert "measures the same as the rows above" in err


def rows_value(run_dir: Path, key: str) -> str:
    v = json.loads((run_dir / "run" / "results.json").read_text())["metrics"][key]
    return "—" if v is None else f"{v:.3f}"


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signals_in_fix_exit_130_143_with_an_incomplete_record(tiny_adapter, edit_suite: Path, tmp_path: Path,  # noqa: ANN001
                                                               sig: int, code: int) -> None:
    def stop(rec: dict[str, Any]) -> None:
        if sig == signal.SIGINT:
            raise KeyboardInterrupt  # what Python turns SIGINT into
        os.kill(os.getpid(), sig)

    out = tmp_path / "run"
    with pytest.raises(RunInterrupted) as err:
        run_fix(suite=str(edit_suite), output=out, adapter=tiny_adapter, all_items=True, editor_options=FAST,
                on_edit=stop, save=tmp_path / "edited")
    assert err.value.exit_code == code and "\n" not in str(err.value)
    assert "complete: false" in str(err.value) and "nothing was saved" in str(err.value)
    rec = json.loads((out / "results.json").read_text())
    assert rec["complete"] is False and rec["interrupted"] == ("SIGINT" if code == 130 else "SIGTERM")
    assert not (tmp_path / "edited").exists() and not (out / ".mllm-audit.lock").exists()
