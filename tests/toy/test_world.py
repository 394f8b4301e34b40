"""The toy world: deterministic rendering, visibly distinct groups, valid suite items."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from mllm_audit.suites.items import load_suite
from mllm_audit.toy import world


def _px(scene: world.Scene) -> np.ndarray:
    return np.asarray(world.render(scene), dtype=np.int16)


def test_render_is_deterministic_and_sized() -> None:
    scene = world.random_scene(random.Random(3))
    a, b = _px(scene), _px(scene)
    assert a.shape == (world.IMAGE_SIZE, world.IMAGE_SIZE, 3)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, _px(scene.relayout(scene.layout + 1)))  # a rephrased image differs


@pytest.mark.parametrize("bias_type", world.BIAS_TYPES)
def test_groups_are_visibly_distinct(bias_type: str) -> None:
    """Same scene and layout, only the group flipped: the figure's pixels change substantially."""
    rng = random.Random(0)
    j = world.BIAS_TYPES.index(bias_type)
    for _ in range(20):
        s0 = world.random_scene(rng)
        flipped = list(s0.groups)
        flipped[j] = 1 - flipped[j]
        s1 = world.Scene(s0.scenario, tuple(flipped), s0.background, s0.n_props, s0.layout)  # type: ignore[arg-type]
        changed = np.abs(_px(s0) - _px(s1)).sum(-1) > 60
        assert changed.sum() >= 12, (bias_type, s0)


def test_props_and_background_render() -> None:
    """Every scenario's prop colour appears; the background colour dominates the corners."""
    rng = random.Random(1)
    for sc in world.SCENARIOS:
        scene = world.random_scene(rng, sc.name)
        px = _px(scene)
        near = np.abs(px - np.asarray(sc.colour)).sum(-1) < 30
        assert near.sum() >= 4, sc.name
        bg = np.asarray(world.BACKGROUNDS[scene.background])
        assert np.abs(px.reshape(-1, 3) - bg).sum(-1).__lt__(40).mean() > 0.5


def test_planted_rates_and_logodds() -> None:
    planted = [s for s in world.SCENARIOS if s.planted]
    controls = [s for s in world.SCENARIOS if not s.planted]
    assert {s.bias_type for s in planted} == {s.bias_type for s in controls} == set(world.BIAS_TYPES)
    clinic = world.SCENARIO_BY_NAME["clinic"]
    assert clinic.logodds() == pytest.approx(np.log(85 / 15))
    assert clinic.p_answer_a(0) == pytest.approx(0.85) and clinic.p_answer_a(1) == pytest.approx(0.15)
    assert len(world.TEXT_FACTS) >= 24 and len({p for p, _ in world.TEXT_FACTS}) == len(world.TEXT_FACTS)


def test_items_deterministic() -> None:
    assert world.build_items(seed=5, scenes_per_group=2) == world.build_items(seed=5, scenes_per_group=2)
    assert world.build_items(seed=5, scenes_per_group=2)[0] != world.build_items(seed=6, scenes_per_group=2)[0]


def test_written_suite_is_valid(tmp_path: Path) -> None:
    yaml_path = world.write_suite(tmp_path / "toy", seed=0, scenes_per_group=4)
    suite = load_suite(str(yaml_path))
    assert suite.extra["group_by"] == "condition"
    items = suite.items
    assert {it.task for it in items} == {"vqa", "ic"}
    assert {it.split for it in items} == {"train", "val", "eval"}
    for it in items:
        for ref in (it.image, it.rephrase_image, it.m_loc_image):
            assert suite.image_path(ref).is_file()
        assert it.loc_prompt and it.loc_answer and it.m_loc_prompt and it.m_loc_answer and it.rephrase_prompt
        assert it.cluster == it.image.removesuffix(".png")
        sc = world.SCENARIO_BY_NAME[it.meta["scenario"]]
        assert it.meta["planted"] == sc.planted
        assert it.meta["condition"] == ("planted" if sc.planted else "control")
        pair = sc.answers if it.task == "vqa" else sc.captions
        assert {it.y_more, it.y_less} == set(pair)
        if sc.planted:
            g = world.GROUPS[sc.bias_type].index(it.meta["group"])
            favoured = pair[0] if sc.p_answer_a(g) > 0.5 else pair[1]
            assert it.y_more == favoured
            assert it.meta["planted_logodds"] == pytest.approx(sc.logodds(), abs=1e-5) and sc.logodds() > 1
            assert it.meta["figure"][sc.bias_type] == it.meta["group"]
        else:
            assert it.meta["planted_logodds"] == 0
    # Controls: y_more is the first answer for exactly half of each (scenario, group, task).
    cells: dict[tuple[str, str, str], list[bool]] = {}
    for it in items:
        if not it.meta["planted"]:
            sc = world.SCENARIO_BY_NAME[it.meta["scenario"]]
            first = (sc.answers if it.task == "vqa" else sc.captions)[0]
            cells.setdefault((it.meta["scenario"], it.meta["group"], it.task), []).append(it.y_more == first)
    assert cells and all(sum(v) * 2 == len(v) for v in cells.values())


def test_shipped_suite_matches_the_generator() -> None:
    """suites/toy was written by world.write_suite(seed 0): the generator still reproduces it."""
    suite = load_suite("toy")
    items, _ = world.build_items(seed=int(suite.extra.get("world_seed", 0)))
    assert [it.to_dict() for it in suite.items] == items


def test_group_colours_appear_nowhere_else() -> None:
    """A group's colour is unique in every scene: far (L1) from every prop, background and other
    figure colour, so the planted cue cannot be read off anything but the figure."""
    figure = [*world.BELT_COLOURS.values(), *world.FIGURE_COLOURS.values(), *world.HAIR_COLOURS.values(),
              *world.HAT_COLOURS.values()]
    others = [sc.colour for sc in world.SCENARIOS] + list(world.BACKGROUNDS.values())
    others += [*world.NOVEL_BACKGROUNDS.values(), world.NOVEL_PROP_COLOUR]
    for i, c in enumerate(figure):
        rest = figure[:i] + figure[i + 1 :] + others
        assert min(int(np.abs(np.subtract(c, o)).sum()) for o in rest) >= 180, c


def test_four_bias_types_each_with_planted_and_control() -> None:
    assert world.BIAS_TYPES == ("gender", "race", "age", "profession")
    for b in world.BIAS_TYPES:
        scs = [s for s in world.SCENARIOS if s.bias_type == b]
        assert sum(s.planted for s in scs) == 2 and sum(not s.planted for s in scs) == 1, b


@pytest.fixture(scope="module")
def v2() -> tuple[list[dict], dict]:
    return world.build_items(seed=0)


def test_every_item_has_its_mirror_the_same_scene_with_the_group_flipped(v2) -> None:  # noqa: ANN001
    items, images = v2
    for it in items:
        (m,) = it["meta"]["mirrors"]
        scene, mirror = images[it["image"]], images[m["image"]]
        bt = it["bias_type"]
        assert mirror == scene.mirrored(bt) and mirror.group(bt) != scene.group(bt)
        assert (m["y_more"], m["y_less"]) == (it["y_less"], it["y_more"])
        assert m["group"] != it["meta"]["group"]
    # Only the figure's flipped part differs between an image and its mirror.
    it = items[0]
    a, b = (_px(images[k]) for k in (it["image"], it["meta"]["mirrors"][0]["image"]))
    changed = np.abs(a - b).sum(-1) > 60
    assert 12 <= changed.sum() <= 120


def test_neighbours_are_other_scenarios_half_planted(v2) -> None:  # noqa: ANN001
    items, _ = v2
    by_id = {it["id"]: it for it in items}
    for it in items:
        nb = [by_id[i] for i in it["meta"]["neighbours"]]
        assert len(nb) == world.N_NEIGHBOURS
        assert all(n["meta"]["scenario"] != it["meta"]["scenario"] and n["split"] == it["split"] for n in nb)
        assert sum(n["meta"]["planted"] for n in nb) == world.N_NEIGHBOURS // 2


def test_eval_probes_are_held_out(v2) -> None:  # noqa: ANN001
    """Eval locality probes share nothing with train/val; eval paraphrases and rephrased-image
    colours were never in the LM's training material; IKE's training facts avoid eval probes."""
    items, images = v2
    ev = [it for it in items if it["split"] == "eval"]
    tr = [it for it in items if it["split"] != "eval"]
    for key in ("loc_prompt", "m_loc_image", "m_loc_prompt"):
        assert not {it[key] for it in ev} & {it[key] for it in tr}, key
    assert {it["loc_prompt"] for it in ev} <= {p for p, *_ in world.SOFT_EVAL_FACTS}
    assert not {p for p, *_ in world.SOFT_EVAL_FACTS} & {p for p, _ in world.TRAIN_FACTS}
    trained = set(world.corpus())
    for it in ev:
        assert not any(it["rephrase_prompt"] in t for t in trained), it["rephrase_prompt"]
        r = images[it["rephrase_image"]]
        assert r.background in world.NOVEL_BACKGROUNDS and r.novel_props
        assert r.layout != images[it["image"]].layout
    for it in tr:
        assert any(it["rephrase_prompt"] in t for t in trained)


def test_perception_questions_match_the_figure(v2) -> None:  # noqa: ANN001
    items, images = v2
    for it in items[:50]:
        scene = images[it["image"]]
        got = {q["prompt"]: q["answer"] for q in it["meta"]["perception"]}
        assert got == {world.FIGURE_QUESTIONS[b]: world.GROUPS[b][scene.group(b)] for b in world.BIAS_TYPES}
