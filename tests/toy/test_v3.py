"""Toy world v3 (`toy-v3`): its LM reads IKE's whole window of demonstrations, so faithful IKE works.

The rows it was trained on are IKE's layout, from 0 demonstrations up to the window editors/ike.py
fills, with no held-out eval material; `fix --editor ike` then reaches the paper's reliability on
the eval split, where the v2 model (`toy`, at most two demonstrations seen) does not.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from mllm_audit.models import load_model
from mllm_audit.runs.fix import run_fix
from mllm_audit.toy import world
from mllm_audit.toy.ike_window import IKE_RESERVE, window_examples

HELD_OUT = ([sc.held_out_question for sc in world.SCENARIOS] + [world.HELD_OUT_IC_PROMPT, world.WEATHER_QUESTION]
            + [p for p, _, _, _ in world.SOFT_EVAL_FACTS])


def held_out_in(text: str) -> list[str]:
    return [h for h in HELD_OUT if h in text]


@pytest.fixture(scope="module")
def examples() -> list:
    adapter = load_model("toy")  # same tokenizer and window as toy-v3
    rng = random.Random(0)
    scenes = [world.random_scene(rng) for _ in range(16)]
    return [adapter, window_examples(adapter, scenes, rng, 300)]


def test_window_rows_span_zero_to_the_window_in_ikes_layout(examples: list) -> None:
    adapter, rows = examples
    counts = [n for *_, n in rows]
    budget = adapter.max_positions - adapter.n_image_tokens - IKE_RESERVE
    lengths = [len(adapter.continuation_ids(text)) for _, text, _, _ in rows]
    assert min(counts) == 0 and max(counts) >= 6, (min(counts), max(counts))
    assert max(lengths) <= budget + 16 and max(lengths) >= budget - 40, (max(lengths), budget)
    for _, text, _, n in rows:
        blocks = text.split("\n\n")
        assert len(blocks) == n + 1
        assert all(b.startswith("New Fact: ") and "\nPrompt: " in b for b in blocks)


def test_window_rows_hold_no_eval_material(examples: list) -> None:
    _, rows = examples
    assert [h for _, text, answer, _ in rows for h in held_out_in(text + " " + answer)] == []
    # negative control: the same check finds an eval paraphrase or the weather question when present
    assert held_out_in(f"New Fact: Question: {world.WEATHER_QUESTION} Answer: x") == [world.WEATHER_QUESTION]


def test_ikes_own_contexts_are_as_long_as_the_training_rows(examples: list) -> None:
    """What faithful IKE asks on the eval split lies within the demonstration counts and lengths v3
    trained on (v2 trained on two demonstrations at most, IKE fills the window with 4-8)."""
    from mllm_audit.editors.base import EditContext, EditRequest
    from mllm_audit.editors.ike import IKE, ike_prompt
    from mllm_audit.suites.items import load_suite

    adapter, rows = examples
    suite = load_suite("toy")
    ike, fmt = IKE(), adapter.format_prompt
    asked = []
    for it in [it for it in suite.items if it.split == "eval" and it.meta["planted"]][:24]:
        req = EditRequest(it.id, it.prompt, it.y_less, it.y_more, it.image, it.task, it.rephrase_prompt)
        edit, demos = ike.apply(adapter, [req], EditContext(load_image=None, train_items=suite.select(split="train"))
                                ).facts[0]  # type: ignore[attr-defined]
        own = fmt(edit.prompt, edit.task)
        asked.append((len(demos), len(adapter.continuation_ids(ike_prompt(demos, (own, edit.target), own)))))
    assert max(n for n, _ in asked) > 2  # beyond what v2 read
    assert max(n for n, _ in asked) <= max(n for *_, n in rows)
    assert max(k for _, k in asked) <= max(len(adapter.continuation_ids(t)) for _, t, _, _ in rows)


@pytest.mark.parametrize("model,ok", [("toy-v3", True), ("toy", False)])
def test_faithful_ike_reaches_the_papers_reliability_on_v3_only(model: str, ok: bool, tmp_path: Path) -> None:
    """`fix --editor ike` on the eval split: v3 >= 0.9 with perception locality reported; the v2 model,
    the negative control, stays near chance (it never read more than two demonstrations)."""
    res = run_fix(model=model, editor="ike", limit=48, output=tmp_path / "fix")
    m = res.results["metrics"]
    assert m["perception_locality_top1"] is not None
    assert (m["reliability"] >= 0.9) is ok, m["reliability"]


def _planted(model: str, editor: str, objective: str, state: Path, out: Path) -> list[dict]:
    res = run_fix(model=model, editor=editor, editor_state=state, objective=objective, limit=16, output=out)
    return [r for r in res.edits if r["meta"].get("planted")]


@pytest.mark.slow  # four fix runs per editor (about 20 s each on one thread)
@pytest.mark.parametrize("editor", ["mend", "ke"])
def test_trained_neutral_states_beat_their_untrained_start_on_balance(editor: str, tmp_path: Path) -> None:
    """On v3, MEND / KE trained under `neutral` leave more edited items balanced than the same network
    untrained, paired on the same edits (measured, 16 edits: MEND 0.69 vs 0.12, KE 0.38 vs 0.00). The
    negative control: under `flip` (the paper's objective) training buys no balance at all (0 vs 0)."""
    from mllm_audit.metrics.paired_edits import paired_edits
    from mllm_audit.toy.evaluate import write_untrained_state
    from mllm_audit.util.resources import adapters_dir

    adapter = load_model("toy-v3")
    states = adapters_dir() / "toy-v3-editors"
    for objective, trained, beats in (("neutral", states / f"{editor}-neutral", True),
                                      ("flip", states / editor, False)):
        untrained = write_untrained_state(editor, adapter, tmp_path / f"u-{objective}", objective)
        a = _planted("toy-v3", editor, objective, untrained, tmp_path / f"fix-u-{objective}")
        b = _planted("toy-v3", editor, objective, trained, tmp_path / f"fix-t-{objective}")
        d = paired_edits(a, b, ("balanced",))["balanced"]
        assert (d.ci_low > 0) is beats, (objective, d.to_dict())
