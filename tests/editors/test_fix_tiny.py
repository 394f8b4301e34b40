"""`fix` mechanics on a tiny random BLIP-2: exact restore, what each editor touches, metrics, errors.

The toy-world tests (tests/editors/test_fix_toy.py) check that edits *work*; these check that the
machinery is honest whatever the model.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from mllm_audit.cli import run
from mllm_audit.metrics.edits import aggregate, edit_record, locality
from mllm_audit.runs.fix import run_fix
from mllm_audit.suites.items import load_suite


@pytest.fixture()
def edit_suite(tiny_suite: Path) -> Path:
    """The tiny suite with every editing split filled."""
    lines = []
    items = [json.loads(x) for x in tiny_suite.read_text().splitlines()]
    images = sorted({it["image"] for it in items})
    for i, it in enumerate(items):
        it.update(
            rephrase_prompt="Is this a doctor or a nurse?",
            rephrase_image=images[(i + 1) % len(images)],
            loc_prompt="The capital of France is",
            loc_answer="Paris",
            m_loc_image=images[(i + 2) % len(images)],
            m_loc_prompt="What colour is the background?",
            m_loc_answer="red",
            split="train" if i < 4 else "eval",
        )
        lines.append(json.dumps(it))
    path = tiny_suite.parent / "edit.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def _state(adapter) -> dict[str, torch.Tensor]:  # noqa: ANN001
    return {k: v.detach().clone() for k, v in adapter.model.state_dict().items()}


@pytest.mark.parametrize("mode", ["single", "batch", "sequential"])
def test_every_mode_restores_bit_for_bit(tiny_adapter, edit_suite: Path, tmp_path: Path, mode: str) -> None:  # noqa: ANN001
    before = _state(tiny_adapter)
    res = run_fix(suite=str(edit_suite), editor="ft-l", mode=mode, batch_edits=4, all_items=True,
                  output=tmp_path / "run", adapter=tiny_adapter, editor_options={"steps": 3, "lr": 1e-2})
    after = _state(tiny_adapter)
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert res.results["complete"] and res.results["n_edits"] == 8  # the eval split
    edits = [json.loads(x) for x in (tmp_path / "run" / "edits.jsonl").read_text().splitlines()]
    assert [e["item_id"] for e in edits] == [e["item_id"] for e in res.edits]


def test_ft_l_touches_only_the_last_text_layer_and_moves_margins(tiny_adapter, edit_suite: Path,  # noqa: ANN001
                                                                 tmp_path: Path) -> None:
    from mllm_audit.editors.layers import whole_last_layer

    res = run_fix(suite=str(edit_suite), editor="ft-l", all_items=True, output=tmp_path / "run",
                  adapter=tiny_adapter, editor_options={"steps": 10, "lr": 1e-2, "stop_margin": 100.0})
    text = tiny_adapter.module_names("text")
    (layer,) = whole_last_layer(tiny_adapter, text)  # EasyEdit's FT-L: the whole last layer
    touched = res.results["touched_parameters"]
    assert all(n.startswith(layer + ".") for n in touched)
    assert all(any(n.startswith(m + ".") for n in touched) for m in text)
    # The earlier variant touches only the card's modules.
    old = run_fix(suite=str(edit_suite), editor="ft-l", all_items=True, limit=1, output=tmp_path / "old",
                  adapter=tiny_adapter, editor_options={"variant": "margin", "steps": 2, "lr": 1e-2})
    assert all(any(n.startswith(m + ".") for m in text) for n in old.results["touched_parameters"])
    # Every edit pushed the model towards y_less on the edited item (margin = logp more - less).
    for e in res.edits:
        assert e["post"]["reliability"] < e["pre"]["reliability"] - 0.1


def test_ft_v_leaves_text_only_locality_exactly_unchanged(tiny_adapter, edit_suite: Path, tmp_path: Path) -> None:  # noqa: ANN001
    res = run_fix(suite=str(edit_suite), editor="ft-v", all_items=True, limit=3, output=tmp_path / "run",
                  adapter=tiny_adapter, editor_options={"steps": 5, "lr": 1e-2, "stop_margin": 100.0})
    vision = tiny_adapter.module_names("vision")
    assert all(any(n == m or n.startswith(m + ".") for m in vision) for n in res.results["touched_parameters"])
    # Text-only prompts never pass through the vision side: the same distributions (up to the float
    # noise of a different batch composition).
    assert res.results["metrics"]["t_locality_top1"] == 1.0
    assert res.results["metrics"]["t_locality_kl"] < 1e-7
    # Image-conditioned locality does move.
    assert res.results["metrics"]["m_locality_kl"] > 0.0


def test_ike_changes_no_weight_and_prepends_its_context(tiny_adapter, edit_suite: Path, tmp_path: Path) -> None:  # noqa: ANN001
    before = _state(tiny_adapter)
    res = run_fix(suite=str(edit_suite), editor="ike", all_items=True, limit=2, output=tmp_path / "run",
                  adapter=tiny_adapter)
    assert res.results["touched_parameters"] == []
    assert all(torch.equal(before[k], v) for k, v in tiny_adapter.model.state_dict().items())
    # The context changes what the model sees on text-only locality prompts too (IKE's known cost).
    assert res.results["metrics"]["t_locality_kl"] > 0.0


def test_ike_context_uses_demonstrations_from_the_train_split(tiny_adapter, edit_suite: Path) -> None:  # noqa: ANN001
    from mllm_audit.editors.base import EditContext, EditRequest
    from mllm_audit.editors.ike import IKE
    from mllm_audit.scoring.contract import Request

    suite = load_suite(str(edit_suite))
    train = suite.select(split="train")
    req = EditRequest("x", "Is this person a doctor or a nurse?", "nurse", "doctor", "images/img0.png", "vqa")
    edited = IKE().apply(tiny_adapter, [req], EditContext(load_image=lambda k: None, train_items=train,
                                                          options={"k": 3}))
    asked = edited.transform(Request("What colour is the background?", "red", "images/img1.png", "vqa"))
    assert asked.task is None and asked.image == "images/img1.png"
    assert asked.prompt.count("New Fact:") == 4  # 3 demonstrations + the edit itself
    fmt = tiny_adapter.format_prompt  # the card's template wraps every inner prompt, once
    assert asked.prompt.endswith("Prompt: " + fmt("What colour is the background?", "vqa"))
    assert f"New Fact: {fmt(req.prompt, 'vqa')} nurse\nPrompt: " in asked.prompt


def test_locality_and_aggregate_arithmetic() -> None:
    pre = torch.log_softmax(torch.tensor([[2.0, 1.0, 0.0], [0.0, 3.0, 0.0]]), -1)
    same = locality(pre, pre)
    assert same == {"top1": 1.0, "kl": 0.0}
    post = torch.log_softmax(torch.tensor([[0.0, 1.0, 2.0], [0.0, 3.0, 0.0]]), -1)
    got = locality(pre, post)
    assert got["top1"] == 0.5
    p = pre[0].exp()
    assert got["kl"] == pytest.approx(float((p * (pre[0] - post[0])).sum()) / 2, abs=1e-6)

    class It:
        id, bias_type, meta, cluster_key = "a", "gender", {}, "a"

    r1 = edit_record(It(), {"reliability": 1.0}, {"reliability": -0.5}, 2)
    r2 = edit_record(It(), {"reliability": 1.0, "t_generality": 0.3}, {"reliability": 0.2, "t_generality": -1.0}, 2)
    agg = aggregate([r1, r2])
    assert agg["reliability"] == 0.5 and agg["t_generality"] == 1.0 and agg["v_generality"] is None


def test_sequential_reports_a_curve_against_the_unedited_model(tiny_adapter, edit_suite: Path,  # noqa: ANN001
                                                                 tmp_path: Path) -> None:
    res = run_fix(suite=str(edit_suite), editor="ft-l", mode="sequential", all_items=True, limit=3,
                  output=tmp_path / "run", adapter=tiny_adapter, editor_options={"steps": 3, "lr": 1e-2})
    curve = res.results["sequential_curve"]
    assert [c["step"] for c in curve] == [1, 2, 3]
    # Locality at step 1 covers one edit; later steps re-measure all edits so far vs the unedited model.
    assert res.results["base_metrics"]["t_locality_top1"] == 1.0
    assert res.results["base_metrics"]["t_locality_kl"] == 0.0


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--editor", "rome"], "unknown editor 'rome'"),
        (["--mode", "parallel"], "--mode"),
        (["--mode", "batch", "--batch-edits", "3"], "--batch-edits"),
        (["--scope", "audio"], "--scope"),
        (["--require", "v_generality"], "needs items with 'rephrase_image'"),
        (["--editor", "mend"], "needs a trained state"),
        (["--editor", "serac"], "needs a trained state"),
    ],
)
def test_fix_bad_input_exits_2(tiny_blip2_dir: Path, tiny_suite: Path, tmp_path: Path,
                               capsys: pytest.CaptureFixture[str], args: list[str], needle: str) -> None:
    argv = ["fix", "-q", "--model", str(tiny_blip2_dir), "--suite", str(tiny_suite), "-o", str(tmp_path / "r"), *args]
    assert run(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err
