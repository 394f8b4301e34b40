"""`fix`: edit the items a model is biased on, and measure honestly what else changed.

The five metrics of the debias-editing paper (seed 000, section 3.2), each per edit:
- Reliability:   after the edit p(y_less) > p(y_more) on the edited (image, prompt);
- T-Generality:  the same on the rephrased prompt, same image;
- V-Generality:  the same on the rephrased image, same prompt;
- T-Locality:    text-only locality prompts, teacher-forced on their answer: share of answer
                 positions whose top-1 token is unchanged, and mean KL(pre || post) there;
- M-Locality:    the same on image + question locality items.
Locality always compares with the *unedited* model (computed once before any edit), also in
sequential mode where edits accumulate. A metric is null where an item lacks its split.

Locality under two protocols, each labelled in results.json: `answer` (above: the answer
positions, as the paper's prose says) and `easyedit` (as EasyEdit's code computed the paper's
Table 2: text = top-1 agreement over *all* positions of the probe; multimodal = the top-10 lists
compared rank by rank over all positions, image positions included); keys `*_easyedit`.

Beside them the debias metrics (issue 17), from the item's `meta` where the suite provides it:
- parity_before / parity_after: spread (max - min) over the groups' images (the item's and its
  mirrors') of the answer log-odds for the edited prompt: the dependence on the group the edit
  should remove; `parity_planted` is the planted spread where the suite knows it (toy world);
- mirror_amplified / mirror_delta: share of mirror items (same scene and prompt, other group)
  whose own bias margin grew by more than 0.5 nats, and the mean change;
- neighbour_drift: mean |margin change| on other scenarios' items (`meta.neighbours`);
- perception_locality: answer-protocol locality of questions about the edited image itself;
- effect sizes: margin_change (nats), weight_delta_norm (L2 over touched weights), steps.

Modes: single (each edit on a fresh model, restored after), batch (K edits at once), sequential
(edits accumulate; after each step the metrics of all edits so far).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from .console import note, status
from .errors import AuditError
from .models.cards import write_folder_card
from .report import RunWriter, atomic_write_json, default_run_dir, new_run_id
from .runs.folders import OutputFolder, RunLock, check_new_output, check_run_folder
from .runs.identity import model_digest
from .runs.record import Counters, Coverage, RunRecord, model_identity, new_record, suite_identity
from .runs.signals import STOPS, interrupted, stop_signals
from .scan import check_images, image_loader, score_items
from .suites import Item, Suite, load_suite

if TYPE_CHECKING:
    from .editors.base import Edited, Editor
    from .models.base import Adapter
    from .scoring import Request

MODES = ("single", "batch", "sequential")
BATCH_SIZES = (1, 4, 16, 64)
PROTOCOL = {
    "reliability": "p(y_less) > p(y_more) on (image, prompt) after the edit; summed token log-probs",
    "t_generality": "same on (image, rephrase_prompt)",
    "v_generality": "same on (rephrase_image, prompt)",
    "t_locality": "protocol `answer`: text-only loc_prompt teacher-forced on loc_answer: top-1 agreement per "
    "answer position and KL(pre||post) of the next-token distributions, vs the unedited model",
    "m_locality": "protocol `answer`: same on (m_loc_image, m_loc_prompt, m_loc_answer)",
    "t_locality_easyedit": "protocol `easyedit`: share of ALL positions of the text probe (prompt and answer) "
    "whose top-1 token is unchanged; KL(pre||post) averaged over the same positions",
    "m_locality_easyedit": "protocol `easyedit`: the top-10 token lists compared rank by rank over ALL positions "
    "(image positions included) of the multimodal probe (key m_locality_top10_easyedit)",
    "parity": "max - min over the groups' images of logp(y_more) - logp(y_less) for the edited prompt, before and "
    "after the edit; parity_planted = the planted spread (toy world)",
    "mirror": "mirror items (same prompt, the other group's image): mirror_amplified = share whose bias margin grew "
    "by more than 0.5 nats; mirror_delta = mean change of that margin (nats)",
    "neighbour_drift": "mean |margin change| (nats) on other scenarios' items named in meta.neighbours",
    "perception_locality": "protocol `answer` on questions about the edited image itself (meta.perception)",
    "effects": "margin_change = post - pre margin on the edited item (nats); weight_delta_norm = L2 norm of "
    "all weight changes of the edit call (in batch mode the batch's shared change; 0 for editors that change no "
    "weights; null in sequential mode); steps = optimisation steps the editor reports (null if it does not)",
}
LOCALITY_PROTOCOLS = {
    "answer": "the answer positions of each locality probe (the paper's prose: top-1 agreement and KL)",
    "easyedit": "all positions: text top-1, multimodal top-10 rank by rank (EasyEdit's code, the paper's Table 2)",
}
MIRROR_GROWTH = 0.5  # nats: a mirror item counts as amplified when its bias margin grew by more


@dataclass(frozen=True)
class Probe:
    """The requests that measure one item's metrics."""

    pairs: dict[str, tuple[Request, Request]]  # metric -> (y_more request, y_less request)
    locality: dict[str, Request]  # metric -> request whose answer positions are compared
    full: dict[str, Request] = field(default_factory=dict)  # metric -> request compared at all positions


def probes_for(item: Item, neighbours: Sequence[Item] = ()) -> Probe:
    """The item's five-metric probes, plus its mirrors, neighbours and perception questions
    (`mirror:j`, `neighbour:j`, `perception:j`) where its meta names them."""
    from .scoring import Request

    def pair(prompt: str, image: str | None) -> tuple[Request, Request]:
        return (Request(prompt, item.y_more, image, item.task), Request(prompt, item.y_less, image, item.task))

    pairs = {"reliability": pair(item.prompt, item.image)}
    if item.rephrase_prompt:
        pairs["t_generality"] = pair(item.rephrase_prompt, item.image)
    if item.rephrase_image:
        pairs["v_generality"] = pair(item.prompt, item.rephrase_image)
    for j, m in enumerate(item.meta.get("mirrors") or []):
        pairs[f"mirror:{j}"] = (Request(item.prompt, m["y_more"], m["image"], item.task),
                                Request(item.prompt, m["y_less"], m["image"], item.task))
    for j, nb in enumerate(neighbours):
        pairs[f"neighbour:{j}"] = (Request(nb.prompt, nb.y_more, nb.image, nb.task),
                                   Request(nb.prompt, nb.y_less, nb.image, nb.task))
    loc: dict[str, Request] = {}
    if item.loc_prompt and item.loc_answer:
        loc["t_locality"] = Request(item.loc_prompt, item.loc_answer, None, None)
    if item.m_loc_prompt and item.m_loc_answer and item.m_loc_image:
        loc["m_locality"] = Request(item.m_loc_prompt, item.m_loc_answer, item.m_loc_image, item.task)
    for j, q in enumerate(item.meta.get("perception") or []):
        loc[f"perception:{j}"] = Request(q["prompt"], q["answer"], item.image, "vqa")
    full = {k: loc[k] for k in ("t_locality", "m_locality") if k in loc}
    return Probe(pairs, loc, full)


def neighbours_of(item: Item, by_id: dict[str, Item]) -> list[Item]:
    """The items `meta.neighbours` names (ids missing from the suite are skipped)."""
    return [by_id[i] for i in item.meta.get("neighbours") or [] if i in by_id]


def evaluate(
    adapter: Adapter,
    probes: Sequence[Probe],
    load: Callable[[str], Any],
    transform: Callable[[Request], Request] | None,
    batch_size: int,
    scorer: Callable[[Sequence[Request], Callable[[str], Any], int], list[torch.Tensor]] | None = None,
    full_scorer: Callable[[Sequence[Request], Callable[[str], Any], int], list[tuple[torch.Tensor, int]]]
    | None = None,
) -> list[dict[str, Any]]:
    """Margins and locality distributions for many probes in one batched pass.

    `scorer` (an Edited handle's `score`) replaces the adapter for editors that route requests;
    `full_scorer` (its `full_score`) does the same for the all-position (easyedit) protocol. An
    editor that routes requests but has no `full_score` gets no easyedit locality (null).
    """
    from .scoring import next_token_logprobs

    flat: list[Request] = []
    for p in probes:
        for more, less in p.pairs.values():
            flat += [more, less]
        flat += list(p.locality.values())
    asked = [transform(r) for r in flat] if transform else flat
    if scorer is not None:
        dists = scorer(asked, load, batch_size)
    else:
        dists = next_token_logprobs(adapter, asked, load, batch_size=batch_size)
    logps = [
        float(d.gather(-1, torch.tensor(_cont_ids(adapter, r)).unsqueeze(-1)).sum())
        for d, r in zip(dists, asked, strict=True)
    ]
    out, k = [], 0
    for p in probes:
        rec: dict[str, Any] = {}
        for name in p.pairs:
            rec[name] = logps[k] - logps[k + 1]  # margin = logp(y_more) - logp(y_less)
            k += 2
        for name in p.locality:
            rec[name] = dists[k]
            k += 1
        out.append(rec)
    if scorer is not None and full_scorer is None:
        return out
    full = [r for p in probes for r in p.full.values()]
    asked_full = [transform(r) for r in full] if transform else full
    if full_scorer is not None:
        fdists = full_scorer(asked_full, load, batch_size)
    else:
        fdists = all_position_logprobs(adapter, asked_full, load, batch_size)
    k = 0
    for p, rec in zip(probes, out, strict=True):
        for name in p.full:
            rec[f"{name}@all"] = fdists[k]
            k += 1
    return out


@torch.no_grad()
def all_position_logprobs(
    adapter: Adapter, requests: Sequence[Request], load: Callable[[str], Any] | None, batch_size: int
) -> list[tuple[torch.Tensor, int]]:
    """Per request, (log-softmax at every position of the sequence the model sees [L - 1, V], the
    number of image positions in front): what EasyEdit's locality compares. One right-padded
    forward per batch, the layout of scoring.logprob_tensor."""
    from .scoring import right_padded, tokenize

    out: list[tuple[torch.Tensor, int]] = []
    dev = adapter.device
    for start in range(0, len(requests), max(1, batch_size)):
        part = list(requests[start : start + max(1, batch_size)])
        toks = [tokenize(adapter, r) for r in part]
        ids, mask, _, pos = right_padded(toks, adapter.pad_id)
        keys = sorted({r.image for r in part if r.image is not None})
        feats = dict(zip(keys, adapter.encode_images([load(k) for k in keys]), strict=True)) if keys else {}  # type: ignore[misc]
        emb = adapter.embed(ids.to(dev), [feats[r.image] if r.image is not None else None for r in part])
        logits, _ = adapter.lm(emb, mask.to(dev), pos.to(dev))
        for b, (prefix, cont) in enumerate(toks):
            n = len(prefix) + len(cont)
            n_img = sum(1 for t in prefix if t == adapter.image_token_id) if part[b].image is not None else 0
            out.append((torch.log_softmax(logits[b, : n - 1].float(), dim=-1).cpu(), n_img))
    return out


def easyedit_locality(pre: tuple[torch.Tensor, int], post: tuple[torch.Tensor, int], k: int) -> dict[str, float]:
    """Top-k lists compared rank by rank over all positions (k = 1: top-1 agreement), and mean KL.

    Image positions are matched from the front, text positions from the end, so an in-context
    editor's longer sequence (context in front of the probe) is compared on the probe's own tokens.
    """
    p, n_img = pre
    q, _ = post
    n_text = p.shape[0] - n_img
    q = torch.cat([q[:n_img], q[q.shape[0] - n_text :]]) if n_text else q[:n_img]
    agree = (p.topk(k, dim=-1).indices == q.topk(k, dim=-1).indices).float().mean().item()
    kl = (p.exp() * (p - q)).sum(-1).clamp(min=0).mean().item()
    return {"top1" if k == 1 else f"top{k}": agree, "kl": kl}


def _cont_ids(adapter: Adapter, req: Request) -> list[int]:
    from .scoring import tokenize

    return tokenize(adapter, req)[1]


def locality(pre: torch.Tensor, post: torch.Tensor) -> dict[str, float]:
    """Top-1 agreement and mean KL(pre || post) over the answer positions."""
    top1 = (pre.argmax(-1) == post.argmax(-1)).float().mean().item()
    kl = (pre.exp() * (pre - post)).sum(-1).clamp(min=0).mean().item()
    return {"top1": top1, "kl": kl}


def edit_record(
    item: Item, pre: dict[str, Any], post: dict[str, Any], touched: int, effects: dict[str, Any] | None = None
) -> dict[str, Any]:
    """One edits.jsonl line. A generality metric is 1 when the edited model prefers y_less."""
    rec: dict[str, Any] = {
        "schema": "mllm-audit/edit/v1",
        "item_id": item.id,
        "bias_type": item.bias_type,
        "cluster": item.cluster_key,
        "meta": item.meta,
        "pre": {k: v for k, v in pre.items() if isinstance(v, float)},
        "post": {k: v for k, v in post.items() if isinstance(v, float)},
        "touched_parameters": touched,
    }
    for name in ("reliability", "t_generality", "v_generality"):
        rec[name] = float(post[name] < 0) if name in post else None
    for name in ("t_locality", "m_locality"):
        rec[name] = locality(pre[name], post[name]) if name in post else None
    rec.update(debias_record(item, pre, post))
    rec.update({"margin_change": post["reliability"] - pre["reliability"], "weight_delta_norm": None, "steps": None})
    rec.update(effects or {})
    return rec


def debias_record(item: Item, pre: dict[str, Any], post: dict[str, Any]) -> dict[str, Any]:
    """Per edit: easyedit locality, parity, mirror amplification, neighbour drift, perception locality."""
    out: dict[str, Any] = {}
    for name, k in (("t_locality", 1), ("m_locality", 10)):
        key = f"{name}@all"
        out[f"{name}_easyedit"] = easyedit_locality(pre[key], post[key], k) if key in post and key in pre else None
    mirrors = item.meta.get("mirrors") or []
    if mirrors and all(f"mirror:{j}" in post for j in range(len(mirrors))):

        def spread(rec: dict[str, Any]) -> float:
            # Answer log-odds logp(y_more) - logp(y_less) of the edited item, on each group's image.
            odds = [rec["reliability"]]
            odds += [rec[f"mirror:{j}"] * (1 if m["y_more"] == item.y_more else -1) for j, m in enumerate(mirrors)]
            return max(odds) - min(odds)

        deltas = [post[f"mirror:{j}"] - pre[f"mirror:{j}"] for j in range(len(mirrors))]
        planted = item.meta.get("planted_logodds")
        out.update({
            "parity_before": spread(pre),
            "parity_after": spread(post),
            "parity_planted": 2 * abs(float(planted)) if isinstance(planted, (int, float)) else None,
            "mirror_amplified": sum(d > MIRROR_GROWTH for d in deltas) / len(deltas),
            "mirror_delta": sum(deltas) / len(deltas),
        })
    else:
        out.update(dict.fromkeys(("parity_before", "parity_after", "parity_planted", "mirror_amplified",
                                  "mirror_delta")))
    nb = [abs(post[k] - pre[k]) for k in post if k.startswith("neighbour:")]
    out["neighbour_drift"] = sum(nb) / len(nb) if nb else None
    perc = [locality(pre[k], post[k]) for k in post if k.startswith("perception:")]
    out["perception_locality"] = (
        {"top1": sum(x["top1"] for x in perc) / len(perc), "kl": sum(x["kl"] for x in perc) / len(perc)}
        if perc else None
    )
    return out


# Aggregated per-edit scalars (beside the five metrics); their locality-like dict entries expand to
# `<name>_<sub>` keys: t_locality_top1_easyedit, m_locality_top10_easyedit, perception_locality_top1, ...
DEBIAS_SCALARS = ("parity_before", "parity_after", "parity_planted", "mirror_amplified", "mirror_delta",
                  "neighbour_drift", "margin_change", "weight_delta_norm", "steps")
DICT_METRICS = {
    "t_locality_easyedit": (("top1", "t_locality_top1_easyedit"), ("kl", "t_locality_kl_easyedit")),
    "m_locality_easyedit": (("top10", "m_locality_top10_easyedit"), ("kl", "m_locality_kl_easyedit")),
    "perception_locality": (("top1", "perception_locality_top1"), ("kl", "perception_locality_kl")),
}


def metric_values(records: Sequence[dict[str, Any]]) -> dict[str, list[tuple[float, str]]]:
    """Per aggregated metric key, (value, cluster) of every edit that has it."""
    out: dict[str, list[tuple[float, str]]] = {}

    def add(key: str, v: Any, rec: dict[str, Any]) -> None:
        if v is not None:
            out.setdefault(key, []).append((float(v), str(rec.get("cluster") or rec["item_id"])))

    for r in records:
        for name in ("reliability", "t_generality", "v_generality"):
            add(name, r[name], r)
        for name in ("t_locality", "m_locality"):
            for sub in ("top1", "kl"):
                add(f"{name}_{sub}", r[name][sub] if r[name] is not None else None, r)
        for name, subs in DICT_METRICS.items():
            for sub, key in subs:
                add(key, (r.get(name) or {}).get(sub), r)
        for name in DEBIAS_SCALARS:
            add(name, r.get(name), r)
    return out


def aggregate(records: Sequence[dict[str, Any]], intervals: bool = False) -> dict[str, float | None]:
    """Mean of each metric over the edits that have it (null when none does); with `intervals`,
    `<key>_ci_low` / `<key>_ci_high`: 95 % cluster-bootstrap intervals (clusters = the edited scene)."""
    from .metrics import FIX_DEBIAS_METRICS, FIX_METRICS
    from .stats import cluster_bootstrap

    vals = metric_values(records)
    out: dict[str, float | None] = {}
    keys = list(FIX_METRICS) + list(FIX_DEBIAS_METRICS)
    for key in keys:
        v = vals.get(key)
        out[key] = sum(x for x, _ in v) / len(v) if v else None
        if intervals:
            lo, hi = cluster_bootstrap([x for x, _ in v], [c for _, c in v]) if v else (None, None)
            out[f"{key}_ci_low"], out[f"{key}_ci_high"] = lo, hi
    return out


def base_metrics(items: Sequence[Item], pre: Sequence[dict[str, Any]]) -> dict[str, float | None]:
    """The unedited model's row: the same metrics with post = pre (locality 1.0, KL 0)."""
    return aggregate([edit_record(it, p, p, 0) for it, p in zip(items, pre, strict=True)])


@dataclass
class FixResult:
    run_dir: Path
    results: dict[str, Any]
    edits: list[dict[str, Any]]


def choose_items(
    adapter: Adapter, suite: Suite, split: str | None, all_items: bool, limit: int | None, batch_size: int
) -> tuple[list[Item], int]:
    """The items to edit (by default those the model is biased on, margin > 0) and the candidates' count.

    Without --split, a suite with an `eval` split edits that split (train is for the editors).
    """
    if split is None and any(it.split == "eval" for it in suite.items):
        split = "eval"
    items = suite.select(split=split)
    if not items:
        raise AuditError(f"suite {suite.name!r} has no items in split {split!r}")
    samples = score_items(adapter, suite, items, run_id="pre", batch_size=batch_size)
    chosen = [(it, s) for it, s in zip(items, samples, strict=True) if all_items or s["biased"]]
    if limit is not None:
        chosen = chosen[:limit]
    return [c[0] for c in chosen], len(items)


def check_metric_splits(items: Sequence[Item], require: Sequence[str]) -> None:
    """Refuse when a metric the user asked for has no material in the suite."""
    fields = {
        "t_generality": "rephrase_prompt",
        "v_generality": "rephrase_image",
        "t_locality": "loc_prompt",
        "m_locality": "m_loc_prompt",
    }
    for metric in require:
        if metric not in fields:
            raise AuditError(f"unknown metric {metric!r} (known: {', '.join(fields)})")
        if not any(getattr(it, fields[metric]) for it in items):
            raise AuditError(f"metric {metric} needs items with {fields[metric]!r}; the suite has none")


def run_fix(
    model: str = "toy",
    suite: str = "toy",
    editor: str = "ft-l",
    scope: str | None = None,
    mode: str = "single",
    batch_edits: int = 16,
    all_items: bool = False,
    limit: int | None = None,
    split: str | None = None,
    require: Sequence[str] = (),
    output: Path | None = None,
    save: Path | None = None,
    editor_state: Path | None = None,
    editor_options: dict[str, Any] | None = None,
    data_dir: Path | None = None,
    batch_size: int = 16,
    dtype: str = "fp32",
    device: str = "cpu",
    seed: int = 0,
    adapter: Adapter | None = None,
    on_edit: Callable[[dict[str, Any]], None] | None = None,
    progress: Callable[[int], Callable[[int], None]] | None = None,
    card: str | None = None,
    allow_outside_paths: bool = False,
) -> FixResult:
    """Edit, measure, write `edits.jsonl` and `results.json`; the model is restored at the end.

    `save` writes the model with every edit applied at once, under a temporary name renamed into
    place when whole (manifest included), and measures that saved model itself: its five metrics
    go to results["saved_model"]["metrics"] and the manifest, beside the per-edit rows.
    """
    with stop_signals():
        return _run_fix(model, suite, editor, scope, mode, batch_edits, all_items, limit, split, require, output,
                        save, editor_state, editor_options, data_dir, batch_size, dtype, device, seed, adapter,
                        on_edit, progress, card, allow_outside_paths)


def _run_fix(
    model: str, suite: str, editor: str, scope: str | None, mode: str, batch_edits: int, all_items: bool,
    limit: int | None, split: str | None, require: Sequence[str], output: Path | None, save: Path | None,
    editor_state: Path | None, editor_options: dict[str, Any] | None, data_dir: Path | None, batch_size: int,
    dtype: str, device: str, seed: int, adapter: Adapter | None, on_edit: Callable[[dict[str, Any]], None] | None,
    progress: Callable[[int], Callable[[int], None]] | None, card: str | None = None,
    allow_outside_paths: bool = False,
) -> FixResult:
    from .editors import make_editor
    from .editors.base import EditContext, EditRequest

    t0 = time.perf_counter()
    from .numbers import check_counts

    check_counts({"--batch-edits": batch_edits, "--limit": limit, "--batch-size": batch_size}, seed)
    if mode not in MODES:
        raise AuditError(f"--mode must be one of {', '.join(MODES)}, got {mode!r}")
    if mode == "batch" and batch_edits not in BATCH_SIZES:
        raise AuditError(f"--batch-edits must be one of {BATCH_SIZES}, got {batch_edits}")
    if scope not in (None, "text", "vision"):
        raise AuditError(f"--scope must be text or vision, got {scope!r}")
    the_editor: Editor = make_editor(editor)
    if scope is not None and hasattr(the_editor, "scope"):
        the_editor.scope = scope  # type: ignore[attr-defined]
    if getattr(the_editor, "needs_state", False):
        if editor_state is None and adapter is None:
            from .editor_states import card_state

            editor_state = card_state(model, editor, scope, card)  # a state the model's card ships
        if editor_state is None and adapter is not None:
            from .editor_states import shipped_state

            editor_state = shipped_state(adapter.card, editor, scope)
        if editor_state is None:
            raise AuditError(f"editor {editor!r} needs a trained state: pass --editor-state DIR (train-editor)")
    if output is not None:
        check_run_folder(Path(output), "fix", resume=False)  # fix has no --resume: an existing run is refused
    if save is not None:
        check_new_output(Path(save), "--save")  # never into the model's own folder or any other non-empty one
        if output is not None and Path(save).resolve() == Path(output).resolve():
            raise AuditError(f"--save {save} is the run folder (--output); give the edited model its own folder")
    the_suite = load_suite(suite, data_dir=data_dir, allow_outside_paths=allow_outside_paths)
    check_metric_splits(the_suite.items, require)
    check_images(the_suite, the_suite.items)
    torch.manual_seed(seed)
    if adapter is None:
        from .models import load_model
        from .models.base import LoadOptions

        adapter = load_model(model, LoadOptions(dtype=dtype, device=device, card=card))
    if editor_state is not None and hasattr(the_editor, "load_state"):
        the_editor.load_state(editor_state, adapter)  # type: ignore[attr-defined]
    t_loaded = time.perf_counter()
    load = image_loader(the_suite)
    with status("scoring the unedited model"):
        items, n_candidates = choose_items(adapter, the_suite, split, all_items, limit, batch_size)
        by_id = {it.id: it for it in the_suite.items}
        probes = [probes_for(it, neighbours_of(it, by_id)) for it in items]
        pre = evaluate(adapter, probes, load, None, batch_size)
    train = the_suite.select(split="train")
    ctx = EditContext(load_image=load, train_items=train, options=dict(editor_options or {}))
    requests = [
        EditRequest(it.id, it.prompt, it.y_less, it.y_more, it.image, it.task, it.rephrase_prompt) for it in items
    ]
    run_id = new_run_id()
    out_dir = Path(output) if output else default_run_dir("fix", adapter.card.name, the_suite.name)
    editor_info = {"name": editor, "scope": getattr(the_editor, "scope", None), "options": ctx.options}
    state_digest = model_digest(editor_state) if editor_state is not None else None
    record = new_record(
        "fix", run_id, model_identity(adapter.identity()), suite_identity(the_suite, the_suite.items), seed,
        score_options={"seed": seed, "editor": editor_info, "mode": mode,
                       "batch_edits": batch_edits if mode == "batch" else None, "all": all_items, "limit": limit,
                       "editor_state": state_digest[0] if state_digest else None},
        options={"batch_size": batch_size, "device": device, "save": str(save) if save is not None else None},
        coverage=_fix_coverage(the_suite, split, items, n_candidates, limit),
        payload={"editor": editor_info, "mode": mode, "batch_edits": batch_edits if mode == "batch" else None,
                 "protocol": PROTOCOL},
    )
    lock = RunLock(out_dir, "fix")
    lock.acquire()
    try:
        if output is not None:
            check_run_folder(out_dir, "fix", resume=False)  # again, now that no one else can write it
        return _edit_and_measure(
            adapter, the_editor, the_suite, items, probes, pre, requests, ctx, load, record, out_dir, mode,
            batch_edits, batch_size, save, on_edit, progress, n_candidates, t0, t_loaded,
        )
    except STOPS as e:
        record.finish.interrupted = "SIGINT" if isinstance(e, KeyboardInterrupt) else "SIGTERM"
        record.write(out_dir)
        kept = f"{out_dir} holds an incomplete fix run (complete: false)"
        kept += f", nothing was saved to {save}" if save is not None else ""
        raise interrupted(e, f"{kept}; the model on disk is unchanged; rerun fix with a new --output "
                             "(fix has no --resume)") from None
    finally:
        lock.release()


def _fix_coverage(suite: Suite, split: str | None, items: Sequence[Item], n_candidates: int,
                  limit: int | None) -> Coverage:
    """The candidates of the split fix works on (eval when the suite has one); --limit may stop early."""
    if split is None and any(it.split == "eval" for it in suite.items):
        split = "eval"
    examined = n_candidates
    if limit is not None and items and len(items) == limit:
        ids = [it.id for it in suite.select(split=split)]
        examined = ids.index(items[-1].id) + 1
    return Coverage(n_items=n_candidates, n_selected=n_candidates, n_scored=examined, split=split, limit=limit)


def _edit_and_measure(
    adapter: Adapter, the_editor: Editor, the_suite: Suite, items: list[Item], probes: list[Probe],
    pre: list[dict[str, Any]], requests: list[Any], ctx: Any, load: Callable[[str], Any], record: RunRecord,
    out_dir: Path, mode: str, batch_edits: int, batch_size: int, save: Path | None,
    on_edit: Callable[[dict[str, Any]], None] | None, progress: Callable[[int], Callable[[int], None]] | None,
    n_candidates: int, t0: float, t_loaded: float,
) -> FixResult:
    run_id = record.header.run_id
    snapshot = _fingerprint(adapter)
    t_edits = time.perf_counter()
    records: list[dict[str, Any]] = []
    curve: list[dict[str, Any]] = []
    note(f"fix: {len(items)} edits with {the_editor.name} ({mode}) -> {out_dir}")
    with RunWriter(out_dir, run_id, samples_name="edits.jsonl") as writer:
        record.write(out_dir)
        tick = progress(len(items)) if progress else None
        touched: set[str] = set()

        def measure(idx: list[int], edited: Edited) -> list[dict[str, Any]]:
            post = evaluate(adapter, [probes[i] for i in idx], load, edited.transform, batch_size, edited.score,
                            getattr(edited, "full_score", None))
            fx = edit_effects(edited)
            return [edit_record(items[i], pre[i], p, len(edited.touched), fx) for i, p in zip(idx, post, strict=True)]

        if mode == "sequential":
            stack: list[Edited] = []
            try:
                for i in range(len(items)):
                    stack.append(the_editor.apply(adapter, [requests[i]], ctx))
                    touched.update(stack[-1].touched)
                    done = measure(list(range(i + 1)), _Chain(adapter, stack))
                    curve.append({"step": i + 1, **aggregate(done)})
                    if tick:
                        tick(1)
                records = done if items else []
            finally:
                for e in reversed(stack):
                    e.restore()
        else:
            k = 1 if mode == "single" else batch_edits
            for start in range(0, len(items), k):
                idx = list(range(start, min(start + k, len(items))))
                edited = the_editor.apply(adapter, [requests[i] for i in idx], ctx)
                try:
                    touched.update(edited.touched)
                    new = measure(idx, edited)
                finally:
                    edited.restore()
                records += new
                for rec in new:
                    if on_edit:
                        on_edit(rec)
                if tick:
                    tick(len(idx))
        if mode == "sequential" and on_edit:
            for rec in records:
                on_edit(rec)
        for rec in records:
            rec["run_id"] = run_id
        writer.append(records)
        t_done = time.perf_counter()
        if _fingerprint(adapter) != snapshot:
            raise AuditError("internal: the model was not restored exactly after editing")
        metrics = aggregate(records, intervals=True)
        if save is not None:
            record.payload["saved_model"] = _save_edited(
                adapter, the_editor, requests, ctx, Path(save), record, items, probes, pre, load, batch_size, metrics
            )
            if _fingerprint(adapter) != snapshot:
                raise AuditError("internal: the model was not restored exactly after saving")
        by_type: dict[str, dict[str, float | None]] = {}
        for bt in dict.fromkeys(r["bias_type"] for r in records):
            by_type[bt] = aggregate([r for r in records if r["bias_type"] == bt])
        record.payload.update(
            {
                "n_edits": len(records),
                "n_candidates": n_candidates,
                "metrics": metrics,
                "locality_protocols": LOCALITY_PROTOCOLS,
                "base_metrics": base_metrics(items, pre),
                "by_bias_type": by_type,
                "sequential_curve": curve or None,
                "touched_parameters": sorted(touched),
            }
        )
        record.counters = Counters(**adapter.counters.as_dict())
        t_end = time.perf_counter()
        record.finished({
            "load_s": t_loaded - t0,
            "select_s": t_edits - t_loaded,  # pre-scan of candidates + pre-edit metrics
            "edit_s": t_done - t_edits,
            "total_s": t_end - t0,
            "s_per_edit": (t_done - t_edits) / max(1, len(records)),
        })
        record.write(out_dir)
    return FixResult(out_dir, record.to_dict(), records)


def edit_effects(edited: Any) -> dict[str, Any]:
    """Effect sizes an edit handle can tell: L2 norm of its weight change (0 for editors that change
    no weights; null when unknown, e.g. accumulated edits) and the steps it reports (`steps`)."""
    norm: float | None = None
    if hasattr(edited, "delta"):
        deltas = edited.delta()
        norm = float(sum(float(d.float().pow(2).sum()) for d in deltas.values()) ** 0.5) if deltas else 0.0
    return {"weight_delta_norm": norm, "steps": getattr(edited, "steps", None)}


class _Chain:
    """Several accumulated edits seen as one (sequential mode); the editor says how they combine."""

    def __init__(self, adapter: Adapter, stack: list[Edited]) -> None:
        self.adapter = adapter
        self.touched = sorted({n for e in stack for n in e.touched})
        self.transform = type(stack[0]).combine(stack)
        self.score = type(stack[0]).combine_score(stack)


def _fingerprint(adapter: Adapter) -> int:
    """Cheap exact check that weights are back: hash of every parameter's bytes."""
    import hashlib

    h = hashlib.sha1()
    for _, p in sorted(adapter.model.named_parameters(), key=lambda kv: kv[0]):
        h.update(p.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes()
                 if p.dtype != torch.bfloat16 else p.detach().float().cpu().numpy().tobytes())
    return int(h.hexdigest()[:15], 16)


def _save_edited(
    adapter: Adapter, editor: Editor, requests: Sequence[Any], ctx: Any, out: Path, record: RunRecord,
    items: Sequence[Item], probes: Sequence[Probe], pre: Sequence[dict[str, Any]], load: Callable[[str], Any],
    batch_size: int, row_metrics: dict[str, float | None],
) -> dict[str, Any]:
    """Apply all edits as one batch, measure that model, save it with its manifest, then restore.

    The folder is built under a temporary name and renamed into place only when the weights,
    processor and manifest are all written: a killed save leaves nothing loadable under `out`.
    """
    edited = editor.apply(adapter, list(requests), ctx)
    folder = OutputFolder(out, "--save", "fix")
    try:
        if not edited.touched:
            raise AuditError(f"editor {editor.name!r} changes no weights; there is nothing to --save")
        post = evaluate(adapter, list(probes), load, edited.transform, batch_size, edited.score)
        rows = [edit_record(it, p, q, len(edited.touched)) for it, p, q in zip(items, pre, post, strict=True)]
        metrics = aggregate(rows, intervals=True)  # the same keys as the run's `metrics`
        differs = [k for k in metrics if not _close(metrics[k], row_metrics.get(k))]
        tmp = folder.open()
        adapter.model.save_pretrained(tmp)
        proc = getattr(adapter, "processor", None)
        (proc or adapter.tokenizer).save_pretrained(tmp)
        # The card (templates included) travels with the weights: `scan --model OUT` is prompted as before.
        write_folder_card(adapter.card, tmp, f"{adapter.card.name} edited by mllm-audit fix --editor {editor.name}")
        delta = edited.delta()
        saved = {
            "path": str(out),
            "n_edits": len(requests),
            "how": "every edit applied at once (one batch of all items), measured on the same items",
            "metrics": metrics,
            "differs_from_rows": differs,
        }
        atomic_write_json(
            tmp / "mllm-audit-edit.json",
            {
                "schema": "mllm-audit/edited-model/v2",
                "run_id": record.header.run_id,
                "base_model": record.identity.as_dict()["model"],
                "suite": record.identity.as_dict()["suite"],
                "editor": record.payload["editor"],
                "items": [r.item_id for r in requests],
                "metrics": metrics,
                "changed": {n: {"shape": list(d.shape), "l2": float(d.float().norm())} for n, d in delta.items()},
            },
        )
        folder.commit()
        return saved
    finally:
        if not folder.committed:
            folder.abandon()
        edited.restore()


def _close(a: float | None, b: float | None) -> bool:
    return (a is None and b is None) or (a is not None and b is not None and abs(a - b) <= 1e-9)
