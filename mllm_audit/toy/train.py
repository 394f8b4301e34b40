# Over 350 lines: the toy LM's whole training recipe (rows, loss, schedule, warm start) stays in one place.
"""Train the toy BLIP-2 on the toy world, deterministically, with the project's scoring layout.

The model is transformers' real `Blip2ForConditionalGeneration` (OPT text model), tiny, with a
byte-level BPE tokenizer trained on the toy corpus. It is loaded through `load_model` with a card
that carries the same templates as `adapters/toy.yaml`, so every training sequence is exactly
what `scoring.py` scores: image placeholders + BOS + templated prompt, then " " + answer.

The loss is the expected answer NLL under the planted distribution: for a scene of group g in a
planted scenario, -(r log p(a) - (1 - r) log p(b)) with r the planted rate, instead of sampling a
or b with probability r. Same optimum, no sampling noise, so the recovered log-odds sit close to
log(r / (1 - r)) after a short schedule.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mllm_audit.errors import AuditError
from mllm_audit.toy import v3_rows, world
from mllm_audit.toy.ike_window import V2_QUERIES, query_row, window_rows

# About two minutes on 2 cores. What made that possible (from 2500 steps of a 32-scene batch, 5.3
# min): 4 px patches, group colours that appear nowhere else in a scene (world.py), the output head
# on continuation positions only (_sequence_logp), and a 16-scene batch.
# v2 (four bias types, 12 scenarios, soft facts, the weather question): 1700 steps left the
# planted associations unlearned (mean planted margin 0.08, the hat at chance), hence 3000 steps
# and the bias pair's weight doubled (same optimum, p = planted rate; it is learned sooner).
DEFAULT_STEPS = 3000
BIAS_WEIGHT = 2.0
BATCH_SCENES = 16
LR = 1e-3  # 2e-3 learns the in-context rows sooner but leaves one cue or the place unlearned
BRIDGE_INIT_SCALE = 4.0
IKE_ROWS = 16  # in-context-editing rows per step (see _Batcher.ike_rows)
IKE_WEIGHT = 1.0  # 2.0: in-context rows learned, the planted rates under-fitted
IKE_WINDOW_ROWS = 16  # v3 (`ike_window`): rows with 0 up to a context window of demonstrations per step
V3_ROWS = ["ike_window", "paraphrase_words", "image_positions"]  # what `ike_window` trains (report field v3_rows)
WARM_LR = 5e-4  # `init_from`: a warm start continues at half the peak rate
THREADS = 2  # both cores; runs are deterministic for a fixed thread count (tests compare equal counts)
CARD_TEMPLATES = {"vqa": world.VQA_TEMPLATE, "ic": "{prompt}"}
# (image index in the batch or -1 for text only, prefix ids, continuation ids, weight)
Row = tuple[int, list[int], list[int], float]
MODEL_SHAPE: dict[str, Any] = {
    "image_size": world.IMAGE_SIZE,
    "patch_size": 4,  # 8 px patches mix the figure's parts with the background
    "vision_hidden": 48,
    "vision_layers": 2,
    "qformer_hidden": 48,
    "qformer_layers": 2,
    "text_hidden": 64,
    "text_layers": 2,
    "text_ffn": 256,
    "heads": 4,
    "num_query_tokens": 8,
}


@dataclass
class TrainReport:
    """What a training run did; written next to the weights as `toy_train.json`."""

    out: str
    seed: int
    steps: int
    seconds: float
    final_loss: float
    n_params: int
    suite: str | None = None
    init_from: str | None = None  # the toy model warm-started from (v3: the shipped v2), else a random init
    ike_window: bool = False
    lr: float = 0.0
    threads: int = 0  # torch's CPU threads while training: the bits depend on it (THREADS unless changed)
    init_digest: str | None = None  # util/identity.model_digest of the `init_from` folder's weights and files
    v3_rows: list[str] | None = None  # `ike_window`: toy world v3's training signals (toy/v3_rows.py), by name


def _card_yaml(weights: str) -> str:
    """The shipped `toy` card (templates, edit modules, IKE settings) pointing at `weights`."""
    import yaml

    from mllm_audit.util.files import read_yaml_mapping
    from mllm_audit.util.resources import adapters_dir

    card = read_yaml_mapping(adapters_dir() / "toy.yaml", "card")
    card.update({"weights": weights, "templates": CARD_TEMPLATES})
    return yaml.safe_dump(card)


def build_initial(folder: Path, seed: int) -> Any:
    """A random tiny BLIP-2 + toy tokenizer saved in `folder`, loaded back as a scoring adapter."""
    from mllm_audit.models import load_model
    from mllm_audit.testing.tiny import build_tokenizer, save_tiny_blip2

    tok = build_tokenizer(world.corpus() * 3 + world.held_out_texts(), vocab_size=1000)
    save_tiny_blip2(folder / "weights", seed=seed, tokenizer=tok, **MODEL_SHAPE)
    card = folder / "card.yaml"
    card.write_text(_card_yaml("weights"), encoding="utf-8")
    adapter = load_model(str(card))
    _amplify_bridge(adapter.model, BRIDGE_INIT_SCALE)
    return adapter


def _digest(folder: Path) -> str | None:
    from mllm_audit.util.identity import model_digest

    got = model_digest(folder)
    return None if got is None else got[0]


def load_initial(folder: Path, init_from: Path) -> Any:
    """A trained toy model (weights, tokenizer) loaded as the scoring adapter to continue from."""
    from mllm_audit.models import load_model

    card = folder / "card.yaml"
    card.write_text(_card_yaml(str(Path(init_from).resolve())), encoding="utf-8")
    return load_model(str(card))


def _amplify_bridge(model: Any, scale: float) -> None:
    """Scale up the Q-Former's and projection's initial weights.

    At the stock init (std 0.02) the queries attend almost uniformly to all patches, so the
    features barely differ between images (spread across images ~0.4 % of their scale) and the
    language model learns the answer marginals long before it learns to look; the planted,
    figure-dependent association never appears. A larger init makes the features image-dependent
    from the first step.
    """
    import torch

    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.startswith(("qformer.", "language_projection.")) and p.dim() >= 2:
                p.mul_(scale)


class _Batcher:
    """Turns scenes into weighted (image, prefix, continuation) rows; token ids cached per text."""

    def __init__(self, adapter: Any) -> None:
        self.adapter = adapter
        self._prefix: dict[tuple[str, str | None, bool], list[int]] = {}
        self._cont: dict[str, list[int]] = {}

    def prefix(self, prompt: str, task: str | None, with_image: bool) -> list[int]:
        key = (prompt, task, with_image)
        if key not in self._prefix:
            self._prefix[key] = self.adapter.prompt_ids(prompt, task, with_image=with_image)
        return self._prefix[key]

    def cont(self, answer: str) -> list[int]:
        if answer not in self._cont:
            self._cont[answer] = self.adapter.continuation_ids(" " + answer)
        return self._cont[answer]

    def rows(self, scene_idx: int, scene: world.Scene, rng: random.Random) -> list[Row]:
        """Rows for one scene: the bias question (vqa or ic, both answers weighted by the planted
        rate), both locality questions, the weather question (both answers at its rate) and a
        perception question per group attribute."""
        sc = world.SCENARIO_BY_NAME[scene.scenario]
        wa, wb = world.vqa_answer_weights(sc, scene)
        if rng.random() < 0.5:
            p = self.prefix(rng.choice(sc.questions), "vqa", True)
            a, b = sc.answers
        else:
            p = self.prefix(rng.choice(world.IC_PROMPTS), "ic", True)
            a, b = sc.captions
        out = [(scene_idx, p, self.cont(a), BIAS_WEIGHT * wa), (scene_idx, p, self.cont(b), BIAS_WEIGHT * wb)]
        for kind in world.MLOC_QUESTIONS:  # both, every scene: locality is measured on them
            q = self.prefix(world.MLOC_QUESTIONS[kind], "vqa", True)
            out.append((scene_idx, q, self.cont(world.mloc_answer(scene, kind)), 1.0))
        q = self.prefix(world.WEATHER_QUESTION, "vqa", True)
        usual, other = world.weather_answers(scene)
        rate = world.WEATHER_RATE
        out += [(scene_idx, q, self.cont(usual), rate), (scene_idx, q, self.cont(other), 1 - rate)]
        for bias in world.BIAS_TYPES:  # every attribute, every scene: the vision side must see all three
            q = self.prefix(world.FIGURE_QUESTIONS[bias], "vqa", True)
            out.append((scene_idx, q, self.cont(world.GROUPS[bias][scene.group(bias)]), 1.0))
        return out

    def ike_rows(self, scenes: list[world.Scene], rng: random.Random, n: int) -> list[Row]:
        """In-context editing rows: read a `New Fact:` context the way editors/ike.py writes it.

        The fact's answer is drawn at random (either answer of the scenario), so the model learns
        to copy the fact for its own question or a paraphrase (copy, update) and to ignore it for
        unrelated questions (retain: a locality question on the image, or a text fact). Only the
        train-side material appears: trained paraphrases, TRAIN_FACTS, the background and place
        questions; never the eval split's held-out paraphrases, soft eval facts or weather question.
        """
        from mllm_audit.editors.ike import ike_prompt

        fmt = self.adapter.format_prompt
        out: list[Row] = []
        for _ in range(n):
            j = rng.randrange(len(scenes))
            sc = world.SCENARIO_BY_NAME[scenes[j].scenario]
            task = rng.choice(("vqa", "ic"))
            prompts, answers = (sc.questions, sc.answers) if task == "vqa" else (world.IC_PROMPTS, sc.captions)
            fact = (fmt(rng.choice(prompts), task), rng.choice(answers))
            demos = []
            for _ in range(rng.randint(0, 2)):
                # As IKE retrieves them: often the same scenario (even the same prompt with another
                # answer), either task; copy, update (a paraphrase) or retain (a text fact).
                d = sc if rng.random() < 0.5 else rng.choice(world.SCENARIOS)
                dt = rng.choice(("vqa", "ic"))
                dps, das = (d.questions, d.answers) if dt == "vqa" else (world.IC_PROMPTS, d.captions)
                dq, da = rng.choice(dps), rng.choice(das)
                kind = rng.randrange(3)
                if kind == 2:
                    x, y = rng.choice(world.TRAIN_FACTS)
                else:
                    x, y = fmt(dq if kind == 0 else rng.choice(dps), dt), da
                demos.append((fmt(dq, dt), da, x, y))
            row = query_row(j, scenes[j], fact, (prompts, task), fmt, rng, V2_QUERIES)
            text = ike_prompt(demos, fact, row[1])
            out.append((row[0], self.prefix(text, None, row[0] >= 0), self.cont(row[2]), 1.0))
        return out

    def fact_rows(self, rng: random.Random, n: int) -> list[Row]:
        """Text-only facts, verbatim (as `ic`/no-template scoring sees them) or vqa-wrapped; a soft
        fact (one draw in two) gives both its answers, weighted by its rate."""
        out = []
        for _ in range(n):
            task = rng.choice((None, "vqa"))
            if rng.random() < 0.5:
                prompt, answer = rng.choice(world.TEXT_FACTS)
                out.append((-1, self.prefix(prompt, task, False), self.cont(answer), 1.0))
            else:
                prompt, usual, other, rate = rng.choice(world.SOFT_FACTS)
                p = self.prefix(prompt, task, False)
                out += [(-1, p, self.cont(usual), rate), (-1, p, self.cont(other), 1.0 - rate)]
        return out


def _sequence_logp(adapter: Any, rows: list[Row], feats: Any) -> Any:
    """Summed continuation log-probabilities per row, with scoring.differentiable.logprob_tensor's exact layout.

    The output head runs on the continuation positions only (a few per row, of ~25 to ~110):
    the same numbers as full logits, at about two thirds of the step time.
    """
    import torch

    from mllm_audit.scoring.differentiable import right_padded

    ids, mask, tgt, pos = right_padded([(p, c) for _, p, c, _ in rows], adapter.pad_id)
    emb = adapter.embed(ids, [feats[i] if i >= 0 else None for i, _, _, _ in rows])
    lm = adapter.language_model()
    hidden = lm.get_decoder()(inputs_embeds=emb, attention_mask=mask, position_ids=pos).last_hidden_state
    sel = tgt[:, 1:]  # position t predicts token t + 1
    logits = lm.get_output_embeddings()(hidden[:, :-1][sel]).float()
    logp = torch.log_softmax(logits, dim=-1).gather(-1, ids[:, 1:][sel].unsqueeze(-1)).squeeze(-1)
    row_of = torch.arange(len(rows)).unsqueeze(1).expand_as(sel)[sel]
    return torch.zeros(len(rows), dtype=logp.dtype).index_add(0, row_of, logp)


def train_toy(
    out: Path = Path("toy-model"),
    seed: int = 0,
    steps: int | None = None,
    write_suite: Path | None = None,
    overwrite: bool = False,
    init_from: Path | None = None,
    ike_window: bool = False,
    *,
    pool_size: int = 3000,
    log: Any = None,
    ike_rows: int = IKE_ROWS,
) -> TrainReport:
    """Train the toy model and save it (weights, tokenizer, processor) in `out`.

    `ike_rows=0` leaves out the in-context-editing rows (faster; for detection-only checks).
    `init_from` (a toy model folder) warm-starts from its weights and tokenizer at WARM_LR instead of
    a random init; `ike_window` adds toy world v3's rows: up to a window of demonstrations
    (toy/ike_window.py), the eval paraphrases' words on other content and graded targets at the image
    positions (toy/v3_rows.py). Both are recorded in the report.

    Deterministic for a given seed and thread count: fixed seeds, deterministic algorithms, two
    threads. Scenes are drawn from a pre-rendered pool that is disjoint in seed from the suite's.
    """
    from mllm_audit.toy.outputs import train_guarded
    from mllm_audit.util.numbers import check_counts

    check_counts({"--steps": steps}, seed)
    if init_from is not None and not (Path(init_from) / "model.safetensors").is_file():
        raise AuditError(f"--init-from {init_from}: not a toy model folder (no model.safetensors)")
    opts = (init_from, ike_window)
    return train_guarded(Path(out), write_suite, overwrite,  # the output guard: util/outputs.py
                         # (the closure below trains into the guard's temporary folder)
                         lambda tmp: _train_toy(tmp, seed, steps, write_suite, pool_size, log, ike_rows, opts))


def _train_toy(out: Path, seed: int, steps: int | None, write_suite: Path | None, pool_size: int, log: Any,
               ike_rows: int, opts: tuple[Path | None, bool]) -> TrainReport:
    import torch

    steps = DEFAULT_STEPS if steps is None else steps
    t0 = time.perf_counter()
    # Fixed threads and deterministic kernels for this run only (the caller's settings come back).
    saved = (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled())
    torch.set_num_threads(THREADS)
    torch.use_deterministic_algorithms(True)
    try:
        return _train(out, seed, steps, write_suite, pool_size, log, t0, ike_rows, opts)
    finally:
        torch.set_num_threads(saved[0])
        torch.use_deterministic_algorithms(saved[1])


def _train(
    out: Path, seed: int, steps: int, write_suite_dir: Path | None, pool_size: int, log: Any, t0: float,
    ike_rows: int, opts: tuple[Path | None, bool],
) -> TrainReport:
    import tempfile

    import torch

    torch.manual_seed(seed)
    rng = random.Random(f"toy-train-{seed}")
    out = Path(out)
    with tempfile.TemporaryDirectory(prefix="toy-init-") as tmp:
        init_from, ike_window = opts
        adapter = build_initial(Path(tmp), seed) if init_from is None else load_initial(Path(tmp), init_from)
        lr = LR if init_from is None else WARM_LR
        rows_trained = V3_ROWS if ike_window else None
        if ike_window and init_from is not None and not v3_rows.trained_paraphrase_words(init_from):
            v3_rows.init_new_words(adapter)  # the eval paraphrases' words start as known words (v3_rows.py)
            rows_trained = [*V3_ROWS, "new_words_from_mean"]
        model = adapter.model
        model.eval()  # no dropout (the Q-Former's 0.1): gradients still flow, runs stay exact
        scenes = [world.random_scene(rng) for _ in range(pool_size)]
        pixels = torch.cat(
            [adapter.preprocess([world.render(s) for s in scenes[i : i + 500]]) for i in range(0, pool_size, 500)]
        )
        batcher = _Batcher(adapter)
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.01, betas=(0.9, 0.999))
        warm = max(1, steps // 12)
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps))
        )
        loss_val = float("nan")
        ema: float | None = None
        for step in range(steps):
            idx = [rng.randrange(pool_size) for _ in range(BATCH_SCENES)]
            feats = adapter.encode_pixels(pixels[idx])
            rows = []
            for j, k in enumerate(idx):
                rows.extend(batcher.rows(j, scenes[k], rng))
            rows.extend(batcher.fact_rows(rng, BATCH_SCENES))
            if ike_window:  # v3: the eval paraphrases' words on other content (short rows: this forward)
                rows.extend(v3_rows.paraphrase_rows(batcher, [scenes[k] for k in idx], rng, v3_rows.PARAPHRASE_ROWS))
            logp = _sequence_logp(adapter, rows, feats)
            w = torch.tensor([r[3] for r in rows])
            loss = -(w * logp).sum() / w.sum()  # a weighted pair (bias, weather, soft fact) counts once
            # In-context rows are long: their own forward, so short rows are not padded to them.
            if ike_rows:
                ike = batcher.ike_rows([scenes[k] for k in idx], rng, ike_rows)
                loss = loss - IKE_WEIGHT * _sequence_logp(adapter, ike, feats).mean()
            if ike_window:  # v3: contexts up to IKE's window (long rows: their own forward)
                win = window_rows(adapter, [scenes[k] for k in idx], rng, IKE_WINDOW_ROWS)
                loss = loss - IKE_WEIGHT * _sequence_logp(adapter, win, feats).mean()
                img = v3_rows.image_position_loss(adapter, [scenes[k] for k in idx], feats)
                loss = loss + v3_rows.IMAGE_WEIGHT * img
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            loss_val = float(loss.detach())
            ema = loss_val if ema is None else 0.95 * ema + 0.05 * loss_val
            if log is not None and (step % 100 == 0 or step == steps - 1):
                log(f"step {step:5d}  loss {ema:.4f}  {time.perf_counter() - t0:6.1f}s")
        model.eval()
        out.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(out)
        adapter.processor.save_pretrained(out)
    report = TrainReport(
        out=str(out),
        seed=seed,
        steps=steps,
        seconds=round(time.perf_counter() - t0, 2),
        final_loss=round(loss_val, 5),
        n_params=sum(p.numel() for p in model.parameters()),
        init_from=None if init_from is None else str(Path(init_from).resolve()),
        ike_window=ike_window,
        lr=lr,
        threads=torch.get_num_threads(),
        init_digest=None if init_from is None else _digest(Path(init_from)),
        v3_rows=rows_trained,
    )
    if write_suite_dir is not None:
        report.suite = str(world.write_suite(Path(write_suite_dir), seed=0))
    return report  # toy/outputs.train_guarded writes it as toy_train.json, with the final folder's name
