"""Toy world v3's other training signals (beside toy/ike_window.py): paraphrase words and image positions.

Paraphrase words. The eval split's T-generality prompts ("Do you think this person is X?", world.
Scenario.held_out_question, and the caption prompt "A snapshot of") hold words the v2 LM never read
(" Do", " think", " snapshot"): their input embeddings stayed at their random init, so a scope
classifier built on the model's own embeddings (SERAC's) saw noise there and acted as an exact-match
lookup. v3 trains those words in the roles they play in the eval paraphrases, on other content only:
the question frames ("Do you think ...", beside the trained "Is this person ...", "Would you say ...")
ask about the figure's attributes, the background and the place, never a scenario's bias question;
" snapshot" takes the place of " photo" / " picture" / " image" in a place caption ("This snapshot was
taken at the" clinic), never after "A snapshot of". So every eval paraphrase stays unseen verbatim
(tests/toy/test_v3.py checks the rows), as SERAC's pretrained encoder has seen the words, not the items.
Those words start, when v3 is warm-started from a model that never trained them, from the mean of the
trained words' embeddings (as transformers' `resize_token_embeddings` starts new tokens from the mean
of the old ones), not from their random init: at their random init (norm ~1.4, the trained words' ~0.6)
a few hundred warm steps barely move them.

Image positions. The LM's outputs at its image positions were never trained, so their top-10 lists
were arbitrary and any edit reordered them (easyedit's top-10 M-locality, all positions, read that
noise). v3 gives each image position a graded target over ten tokens that describe the scene: the
place, the background, the hat, hair, body and trousers colours, then four fixed words, at weights
falling by IMAGE_GAP nats per rank; so the unedited top-10 ranks are set by what the image shows and
only an edit that moves the image positions' reading of the scene reorders them. Measured on the shipped
v3 (900 warm steps): the first three ranks in order at 88 % of positions, the other seven as a set
only (tests/toy/test_v3.py); a single FT-L / MEND / KE edit keeps 0.75-0.81 of the top-10 ranks there,
control-shift 0.53.
"""

from __future__ import annotations

import math
import random
from typing import Any

from mllm_audit.toy import world

PARAPHRASE_ROWS = 16  # per step
IMAGE_WEIGHT = 1.0  # the image-position loss (cross-entropy to the graded target) beside the other terms
IMAGE_GAP = 0.7  # nats between consecutive ranks of the image positions' target
FIXED_WORDS = ("photo", "picture", "image", "figure")  # ranks 7-10 of every image position's target
# Question frames: the trained scenario frames and the eval one ("Do you think"), used on other content.
FRAMES = ("Is {s} {x}?", "Would you say {s} is {x}?", "Do you think {s} is {x}?")
PICTURE_WORDS = ("photo", "picture", "image", "snapshot")
PLACE_CAPTION = "This {w} was taken at the"


def _attribute_questions(scene: world.Scene, rng: random.Random) -> tuple[str, str]:
    """(content, answer) of a two-way question about the scene that is not a bias question."""
    kind = rng.choice((*world.BIAS_TYPES, "background", "place"))
    if kind in world.BIAS_TYPES:
        a, b = world.GROUPS[kind]
        subject = {"gender": "the trouser colour", "race": "the figure", "age": "this person",
                   "profession": "the hat"}[kind]
        ans = world.GROUPS[kind][scene.group(kind)]
    elif kind == "background":
        a, b = rng.sample(list(world.BACKGROUNDS), 2)
        ans = scene.background
        if ans not in (a, b):
            b = ans
        subject = "the background"
    else:
        others = [s.name for s in world.SCENARIOS if s.name != scene.scenario]
        a, b = scene.scenario, rng.choice(others)
        ans = scene.scenario
        subject = "this place"
    x, y = (a, b) if rng.random() < 0.5 else (b, a)
    return subject + "\0" + f"{x} or {y}", ans


Example = tuple[int, str, str | None, str]


def paraphrase_examples(scenes: list[world.Scene], rng: random.Random, n: int) -> list[Example]:
    """`n` (image index, prompt, task, answer): a question frame on a non-bias question, or a place caption."""
    out: list[Example] = []
    for _ in range(n):
        j = rng.randrange(len(scenes))
        if rng.random() < 0.75:
            content, ans = _attribute_questions(scenes[j], rng)
            subject, x = content.split("\0")
            out.append((j, rng.choice(FRAMES).format(s=subject, x=x), "vqa", ans))
        else:
            w = rng.choice(PICTURE_WORDS)
            place = world.place_word(world.SCENARIO_BY_NAME[scenes[j].scenario])
            out.append((j, PLACE_CAPTION.format(w=w), None, place))
    return out


def paraphrase_rows(batcher: Any, scenes: list[world.Scene], rng: random.Random, n: int) -> list[Any]:
    """The examples as training rows (image index, prefix ids, continuation ids, weight)."""
    return [(j, batcher.prefix(p, task, True), batcher.cont(a), 1.0)
            for j, p, task, a in paraphrase_examples(scenes, rng, n)]


def image_words(scene: world.Scene) -> list[str]:
    """The ten words of the scene's image-position target, rank 1 first."""
    groups = {b: world.GROUPS[b][scene.group(b)] for b in world.BIAS_TYPES}
    return [world.place_word(world.SCENARIO_BY_NAME[scene.scenario]), scene.background, groups["profession"],
            groups["age"], groups["race"], groups["gender"], *FIXED_WORDS]


def image_target(adapter: Any, scene: world.Scene) -> dict[int, float]:
    """Token id -> probability: the first token of each word, weights falling by IMAGE_GAP per rank."""
    ids = [adapter.continuation_ids(" " + w)[0] for w in image_words(scene)]
    if len(set(ids)) != len(ids):  # pragma: no cover - the toy tokenizer has each as one token
        raise ValueError(f"image-position words share a first token: {image_words(scene)}")
    w = [math.exp(-IMAGE_GAP * k) for k in range(len(ids))]
    return {i: x / sum(w) for i, x in zip(ids, w, strict=True)}


def image_position_loss(adapter: Any, scenes: list[world.Scene], feats: Any) -> Any:
    """Cross-entropy of the LM's next-token distributions at the image positions to each scene's target.

    Causal attention: image positions see only image tokens, so one forward of the image placeholders
    (and BOS) gives exactly what they compute under any prompt."""
    import torch

    prefix = adapter.prompt_ids("", None, with_image=True)
    n_img = int(adapter.n_image_tokens)
    ids = torch.tensor([prefix] * len(scenes))
    emb = adapter.embed(ids, [feats[j] for j in range(len(scenes))])
    mask = torch.ones_like(ids)
    pos = torch.arange(ids.shape[1]).unsqueeze(0).expand_as(ids)
    lm = adapter.language_model()
    hidden = lm.get_decoder()(inputs_embeds=emb, attention_mask=mask, position_ids=pos).last_hidden_state
    logp = torch.log_softmax(lm.get_output_embeddings()(hidden[:, :n_img]).float(), dim=-1)
    target = torch.zeros(len(scenes), logp.shape[-1])
    for j, s in enumerate(scenes):
        for i, p in image_target(adapter, s).items():
            target[j, i] = p
    return -(target.unsqueeze(1) * logp).sum(-1).mean()


def new_word_ids(adapter: Any) -> list[int]:
    """Tokens of the eval split's held-out texts that no v2 training string holds (" Do", " think", " snapshot")."""
    def ids(texts: list[str]) -> set[int]:
        return {i for t in texts for i in adapter.continuation_ids(t)}

    return sorted(ids(world.held_out_texts()) - ids(world.corpus()))


def trained_paraphrase_words(init_from: Any) -> bool:
    """Whether the model in `init_from` was itself trained on v3's paraphrase words (its toy_train.json says)."""
    import json
    from pathlib import Path

    rec = Path(init_from) / "toy_train.json"
    try:
        got = json.loads(rec.read_text(encoding="utf-8")).get("v3_rows") or []
    except (OSError, ValueError, AttributeError):
        return False
    return "paraphrase_words" in got


def init_new_words(adapter: Any) -> list[int]:
    """Set the new words' input embeddings to the mean embedding of the tokens v2 trained on; returns their ids."""
    import torch

    new = new_word_ids(adapter)
    table = adapter.input_embeddings().weight
    known = sorted({i for t in world.corpus() for i in adapter.continuation_ids(t)})
    with torch.no_grad():
        table[new] = table[known].mean(0)
    return new
