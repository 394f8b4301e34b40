"""Toy world v3 (`toy-v3`): its LM reads IKE's whole window of demonstrations, so faithful IKE works.

The rows it was trained on are IKE's layout, from 0 demonstrations up to the window editors/ike.py
fills, with no held-out eval material; `fix --editor ike` then reaches the paper's reliability on
the eval split, where the v2 model (`toy`, at most two demonstrations seen) does not. Its other two
signals (toy/v3_rows.py): the eval paraphrases' words on other content (so SERAC's scope can reach an
unseen paraphrase) and graded targets at the image positions (so their top-10 ranks mean something).
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from mllm_audit.models import load_model
from mllm_audit.runs.fix import run_fix
from mllm_audit.toy import world
from mllm_audit.toy.ike_window import IKE_RESERVE, window_examples

IMAGE_BAR = 0.7  # mean image-position top-10 agreement after an edit

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
    """On v3, MEND trained under `neutral` leaves more edited items balanced than the same network
    untrained, paired on the same edits (measured, 16 edits: 0.62 vs 0.19; 41 edits: 0.71 vs 0.10).
    KE's too (16 edits: 0.50 vs 0.00, paired interval [0.19, 0.75]) since its meta-loss also scores a
    second train image of the other group that the edit never sees (KE.unseen_pairs); without it, on
    the retrained v3, it did not (16 edits: 0.06 vs 0.00; 41 edits: 0.05, interval [0.00, 0.12]).
    The negative control: under `flip` (the paper's objective) training buys no balance at all (0 vs 0).
    KE's untrained start is close to a no-op (record: reliability 0.00), so for KE this shows training buys
    balance at all; the comparison that isolates unseen_pairs is the earlier state's, quoted, not re-run."""
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


def test_paraphrase_rows_train_the_eval_words_never_an_eval_paraphrase() -> None:
    """v3's paraphrase rows (toy/v3_rows.py) hold every word of the eval paraphrases the v2 LM never
    read (" Do", " think", " snapshot"), on other content: no eval paraphrase, caption prompt or
    weather question appears in them."""
    from mllm_audit.toy.v3_rows import new_word_ids, paraphrase_examples

    adapter = load_model("toy")
    rng = random.Random(0)
    scenes = [world.random_scene(rng) for _ in range(16)]
    rows = paraphrase_examples(scenes, rng, 400)
    assert [h for _, p, _, a in rows for h in held_out_in(f"{p} {a}")] == []
    new = new_word_ids(adapter)
    seen = {i for _, p, _, _ in rows for i in adapter.continuation_ids(" " + p)}
    assert len(new) == 3 and set(new) <= seen, [adapter.processor.tokenizer.decode([i]) for i in new]
    # negative control: the check finds an eval paraphrase when a row holds one
    assert held_out_in(world.SCENARIOS[0].held_out_question + " doctor") == [world.SCENARIOS[0].held_out_question]


@pytest.mark.parametrize("model,known", [("toy-v3", True), ("toy", False)])
def test_the_eval_paraphrases_words_are_known_words_on_v3_only(model: str, known: bool) -> None:
    """v3's input embeddings of the new words sit at the centre of the trained words' (they started at
    their mean, toy/v3_rows.init_new_words, and trained from there: measured 0.08-0.10 away), where v2
    left them at their random init (0.62-0.68 away; the trained words' median 0.80): the negative control."""
    from mllm_audit.toy.v3_rows import new_word_ids

    adapter = load_model(model)
    table = adapter.input_embeddings().weight.detach()
    trained = sorted({i for t in world.corpus() for i in adapter.continuation_ids(t)})
    away = (table[new_word_ids(adapter)] - table[trained].mean(0)).norm(dim=-1)
    # on v3 also off the mean they started at: the rows trained them, initialisation alone would give 0
    assert bool(((away >= 0.02) & (away <= 0.25)).all()) is known and bool((away >= 0.5).all()) is not known, away


@pytest.mark.parametrize("model,trained", [("toy-v3", True), ("toy", False)])
def test_image_positions_read_the_scene_in_rank_order_on_v3_only(model: str, trained: bool) -> None:
    """At v3's image positions the top of the list is the scene's words in their target order
    (v3_rows.image_words: place, background, hat colour). Measured over the eval split's 24 multimodal
    locality images, 8 positions each, the first k in order: v3 0.90 / 0.89 / 0.88 for k = 1 / 2 / 3,
    0.69 for k = 4, 0.22 for k = 5, 0.00 from k = 8 (the figure's colours and the fixed words are learned
    in the top ten, not yet in their order); v2, never trained there (negative control), 0.04 / 0.00."""
    from mllm_audit.scoring.contract import Request
    from mllm_audit.scoring.differentiable import all_position_logprobs
    from mllm_audit.suites.items import load_image, load_suite
    from mllm_audit.toy.v3_rows import image_words

    adapter = load_model(model)
    suite = load_suite("toy")
    _, images = world.build_items(0)
    probes = sorted({(it.m_loc_image, it.m_loc_prompt, it.m_loc_answer) for it in suite.items if it.split == "eval"})
    reqs = [Request(p, a, img, "vqa") for img, p, a in probes]
    got = all_position_logprobs(adapter, reqs, lambda k: load_image(suite.image_path(k)), 32)
    match = []
    for (lp, n_img), (img, _, _) in zip(got, probes, strict=True):
        want = [adapter.continuation_ids(" " + w)[0] for w in image_words(images[img])[:3]]
        match += [lp[i].topk(3).indices.tolist() == want for i in range(n_img)]
    rate = sum(match) / len(match)
    assert (rate >= 0.8) is trained and (rate <= 0.1) is not trained, rate


@pytest.fixture(scope="module")
def image_top10() -> dict[tuple[str, str], dict[str, list[float]]]:
    """Image- and text-position top-10 agreement of the m-locality probe after single edits (8 planted eval edits)."""
    from mllm_audit.editors.states import shipped_state
    from mllm_audit.suites.items import load_image, load_suite
    from mllm_audit.toy.evaluate import image_position_top10

    suite = load_suite("toy")
    items = [it for it in suite.items if it.split == "eval" and it.meta["planted"]][:8]
    out = {}
    for model, editor in IMAGE_CASES:
        adapter = load_model(model)
        state = shipped_state(adapter.card, editor, None) if editor in ("mend", "ke") else None
        out[(model, editor)] = image_position_top10(adapter, editor, items, lambda k: load_image(suite.image_path(k)),
                                                    suite.select(split="train"), state)
    return out


IMAGE_CASES = [("toy-v3", "ft-l"), ("toy-v3", "mend"), ("toy-v3", "ke"), ("toy-v3", "control-shift"), ("toy", "ft-l")]


@pytest.mark.parametrize("case", IMAGE_CASES, ids=["-".join(c) for c in IMAGE_CASES])
def test_image_position_ranks_survive_the_editors_not_an_input_independent_shift(
        image_top10: dict[tuple[str, str], dict[str, list[float]]], case: tuple[str, str]) -> None:
    """What easyedit's top-10 M-locality reads at the image positions. On v3 the trained editors keep
    the ranks there (measured, mean over 8 edits: FT-L 0.81, MEND 0.75, KE 0.79); control-shift, one
    bias vector added at every position, reorders them (0.53). Negative control of the world: on v2,
    never trained at its image positions, FT-L itself reorders them (0.56)."""
    got = image_top10[case]["image"]
    assert (sum(got) / len(got) >= IMAGE_BAR) is (case[0] == "toy-v3" and case[1] != "control-shift"), got
