"""Toy world v3's in-context rows: 0 up to the context window's worth of `New Fact:` demonstrations.

The v2 LM read at most two demonstrations, so faithful IKE (editors/ike.py: up to 32 nearest
training facts, as many as fit the window) asked it texts four times longer than any it had seen,
at positions it had never been trained on, and reached reliability 0.50. These rows are built the
way IKE builds its contexts for the suite's train items:

- demonstration facts are the nearest train-side facts: mostly the same scenario and task (both
  answers: IKE's train items carry each group's debiased answer), sometimes another scenario;
  a fact asking the edit's own prompt with the other answer is skipped, as IKE skips it;
- demonstration kinds cycle copy, update (a trained paraphrase), retain (a train text fact), as
  IKE's `len(demos) % 3` does; an update may ask the edit's own prompt with the other answer,
  as IKE's retrieved contexts do, so the model learns to follow the *last* fact;
- the count is drawn from 0 to what fits: `adapter.max_positions` less the image tokens and IKE's
  reserve, the very budget editors/ike.py fills (half the rows fill it).

Queries after the fact: the fact's prompt (copy), a trained paraphrase (update), the background or
place question or a perception question on the image, or a train text fact (retain). Held out as
in v2: the eval split's paraphrases, soft eval facts and weather question never appear here.
"""

from __future__ import annotations

import random
from typing import Any

from mllm_audit.editors.ike import VARIANTS
from mllm_audit.toy import world

# IKE's own settings (the easyedit variant, faithful IKE's default): v3 fills the very window IKE fills.
IKE_RESERVE = int(VARIANTS["easyedit"]["reserve"])
MAX_DEMOS = int(VARIANTS["easyedit"]["k"])
SAME_SCENARIO = 0.75  # share of demonstration facts from the edit's own scenario
SAME_TASK = 0.8


V2_QUERIES = (0.4, 0.65, 0.82, 0.82)  # cumulative shares: copy, update, background/place, perception; text fact
V3_QUERIES = (0.4, 0.6, 0.7, 0.85)


def query_row(j: int, scene: world.Scene, fact: tuple[str, str], family: tuple[tuple[str, ...], str], fmt: Any,
              rng: random.Random, cuts: tuple[float, float, float, float]) -> tuple[int, str, str]:
    """The query after the fact: (image index or -1, prompt, answer). Copy (the fact's prompt), update
    (a trained paraphrase from `family`: the fact's prompts and task), retain (background or place
    question, a perception question, or a train text fact), drawn at the cumulative shares `cuts`."""
    kind = rng.random()
    if kind < cuts[0]:
        return (j, fact[0], fact[1])
    if kind < cuts[1]:
        return (j, fmt(rng.choice(family[0]), family[1]), fact[1])
    if kind < cuts[2]:
        q = rng.choice(list(world.MLOC_QUESTIONS))
        return (j, fmt(world.MLOC_QUESTIONS[q], "vqa"), world.mloc_answer(scene, q))
    if kind < cuts[3]:
        b = rng.choice(world.BIAS_TYPES)
        return (j, fmt(world.FIGURE_QUESTIONS[b], "vqa"), world.GROUPS[b][scene.group(b)])
    return (-1, *rng.choice(world.TRAIN_FACTS))


def _material(sc: world.Scenario, task: str) -> tuple[tuple[str, ...], tuple[str, str]]:
    return (sc.questions, sc.answers) if task == "vqa" else (world.IC_PROMPTS, sc.captions)


def _demos(fact: tuple[str, str], sc: world.Scenario, task: str, fmt: Any, rng: random.Random) -> list[Any]:
    """Up to MAX_DEMOS demonstrations in IKE's order and layout (the window decides how many are used)."""
    out: list[Any] = []
    while len(out) < MAX_DEMOS:
        d = sc if rng.random() < SAME_SCENARIO else rng.choice(world.SCENARIOS)
        dt = task if rng.random() < SAME_TASK else ("ic" if task == "vqa" else "vqa")
        prompts, answers = _material(d, dt)
        p, t = fmt(rng.choice(prompts), dt), rng.choice(answers)
        if p == fact[0] and t != fact[1]:
            continue  # IKE skips the same question answered otherwise
        kind = len(out) % 3
        if kind == 0:
            out.append((p, t, p, t))
        elif kind == 1:
            out.append((p, t, fmt(rng.choice(prompts), dt), t))
        else:
            x, y = rng.choice(world.TRAIN_FACTS)
            out.append((p, t, x, y))
    return out


def window_examples(adapter: Any, scenes: list[world.Scene], rng: random.Random, n: int) -> list[Any]:
    """`n` (image index or -1, IKE text, answer, demonstrations used) with IKE-sized contexts."""
    from mllm_audit.editors.ike import ike_prompt

    fmt = adapter.format_prompt
    budget = int(adapter.max_positions) - int(adapter.n_image_tokens) - IKE_RESERVE
    out = []
    for _ in range(n):
        j = rng.randrange(len(scenes))
        sc = world.SCENARIO_BY_NAME[scenes[j].scenario]
        task = rng.choice(("vqa", "ic"))
        prompts, answers = _material(sc, task)
        fact = (fmt(rng.choice(prompts), task), rng.choice(answers))
        cap = MAX_DEMOS if rng.random() < 0.5 else rng.randint(0, MAX_DEMOS)
        demos: list[Any] = []
        for demo in _demos(fact, sc, task, fmt, rng)[:cap]:
            if len(adapter.continuation_ids(ike_prompt([*demos, demo], fact, fact[0]))) + 1 > budget:
                break  # the window is full, as editors/ike.py stops
            demos.append(demo)
        row = query_row(j, scenes[j], fact, (prompts, task), fmt, rng, V3_QUERIES)
        out.append((row[0], ike_prompt(demos, fact, row[1]), row[2], len(demos)))
    return out


def window_rows(adapter: Any, scenes: list[world.Scene], rng: random.Random, n: int) -> list[Any]:
    """The examples as training rows (image index or -1, prefix ids, continuation ids, weight)."""
    return [(j, adapter.prompt_ids(text, None, with_image=j >= 0), adapter.continuation_ids(" " + answer), 1.0)
            for j, text, answer, _ in window_examples(adapter, scenes, rng, n)]
