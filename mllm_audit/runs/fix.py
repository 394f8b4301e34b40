# Over 350 lines: one run type's lifecycle (select, edit, measure, save, record) read top to bottom.
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
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from mllm_audit.errors import AuditError
from mllm_audit.metrics.edits import LOCALITY_PROTOCOLS, PROTOCOL, aggregate, base_metrics, edit_record
from mllm_audit.models.cards import DEFAULT_MODEL
from mllm_audit.runs.fix_save import save_edited
from mllm_audit.runs.options import check_fix_options
from mllm_audit.runs.probes import Probe, evaluate, neighbours_of, probes_for
from mllm_audit.runs.record import Counters, Coverage, RunRecord, model_identity, new_record, suite_identity
from mllm_audit.runs.score import check_images, image_loader, score_items
from mllm_audit.runs.signals import STOPS, interrupted, stop_signals
from mllm_audit.runs.writer import RunWriter, default_run_dir, new_run_id
from mllm_audit.suites.items import Item, Suite, load_suite
from mllm_audit.util.console import note, status
from mllm_audit.util.folders import RunLock, check_new_output, check_run_folder
from mllm_audit.util.identity import model_digest

if TYPE_CHECKING:
    from mllm_audit.editors.base import Edited, Editor
    from mllm_audit.models.base import Adapter



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
    model: str = DEFAULT_MODEL,
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
    data_dir: Path | None = None,
    batch_size: int = 16,
    dtype: str = "fp32",
    device: str = "cpu",
    seed: int = 0,
    card: str | None = None,
    allow_outside_paths: bool = False,
    variant: str | None = None,
    serac_routing: str | None = None,
    hparam: Sequence[str] = (),
    balanced_from: str = "images",
    self_images_per_word: int = 16,
    objective: str | None = None,
    hparams_file: Path | None = None,
    resume: bool = False,
    revision: str | None = None,
    trust_generic: bool = False,
    *,
    editor_options: dict[str, Any] | None = None,
    adapter: Adapter | None = None,
    on_edit: Callable[[dict[str, Any]], None] | None = None,
    progress: Callable[[int], Callable[[int], None]] | None = None,
    log: Callable[[str], None] | None = None,
) -> Any:
    """Edit, measure, write `edits.jsonl` and `results.json`; the model is restored at the end.

    `save` writes the model that results["saved_model"]["metrics"] measured (runs/fix_save.py): in
    sequential mode the run's own final model (every edit, one after another), in single and batch
    mode every edit applied at once; under a new card name (base name + edit), beside the rows.

    `--editor sft|bpo` edit a unified model's image generation instead (runs/fix_unified.py), with
    `hparam` as KEY=VALUE settings and `data_dir` the labelled images, or with `balanced_from`
    "generations" the model's own drawings (`self_images_per_word` per group word); it returns a
    UnifiedFixResult. Other editors take `hparam` (`--set`) as their declared settings and
    `hparams_file` (`--hparams`) as an EasyEdit hparams YAML (editors/hparams.py), both recorded.

    `objective` (ft-l/ft-v, mend, ke): flip (the paper's, default), paired or neutral
    (editors/objectives.py); a learned editor's state must have been trained under it.
    """
    editor = editor.lower()  # the docs write FT-L
    from mllm_audit.editors.objectives import check_objective

    check_objective(objective, editor)
    check_fix_options(editor, mode, batch_edits, scope, variant, serac_routing, hparam, dtype, device, split,
                      balanced_from)
    if editor in ("sft", "bpo") and resume:
        raise AuditError(f"--resume continues single and batch runs of weight and memory editors, not {editor}")
    if editor in ("sft", "bpo") and hparams_file is not None:
        raise AuditError(f"--hparams reads EasyEdit hparams files (ft-l, ft-v, ike, mend, ke, serac); {editor} "
                         "takes --set KEY=VALUE")
    if editor in ("sft", "bpo"):
        from mllm_audit.editors.bpo import BalancedSettings, parse_overrides
        from mllm_audit.runs.fix_unified import run_unified_fix

        settings = BalancedSettings(**{"seed": seed, **parse_overrides(list(hparam))})  # type: ignore[arg-type]
        return run_unified_fix(model="toy-janus-v2" if model in ("toy", DEFAULT_MODEL) else model,
                               suite="gen-toy-v2" if suite == "toy" else suite, editor=editor, images=data_dir,
                               output=output, save=save, seed=seed, settings=settings, device=device,
                               balanced_from=balanced_from, self_images_per_word=self_images_per_word,
                               adapter=adapter, log=log)
    from mllm_audit.editors.hparams import resolve_settings

    declared, accounted = resolve_settings(editor, hparam, hparams_file)  # --set over the file, both checked
    editor_options = {**declared, **(editor_options or {})}
    source = {"path": str(hparams_file), "accounted": accounted} if hparams_file is not None else None
    if variant is not None:
        editor_options["variant"] = variant
    if serac_routing is not None:
        editor_options["routing"] = serac_routing
    if objective is not None:
        editor_options["objective"] = objective
    with stop_signals():
        return _run_fix(model, suite, editor, scope, mode, batch_edits, all_items, limit, split, require, output,
                        save, editor_state, editor_options, data_dir, batch_size, dtype, device, seed, adapter,
                        on_edit, progress, card, allow_outside_paths, source, resume,
                        revision, trust_generic)


def _run_fix(
    model: str, suite: str, editor: str, scope: str | None, mode: str, batch_edits: int, all_items: bool,
    limit: int | None, split: str | None, require: Sequence[str], output: Path | None, save: Path | None,
    editor_state: Path | None, editor_options: dict[str, Any] | None, data_dir: Path | None, batch_size: int,
    dtype: str, device: str, seed: int, adapter: Adapter | None, on_edit: Callable[[dict[str, Any]], None] | None,
    progress: Callable[[int], Callable[[int], None]] | None, card: str | None = None,
    allow_outside_paths: bool = False, settings_source: dict[str, Any] | None = None, resume: bool = False,
    revision: str | None = None, trust_generic: bool = False,
) -> FixResult:
    from mllm_audit.editors import make_editor
    from mllm_audit.editors.base import EditContext, EditRequest

    t0 = time.perf_counter()
    from mllm_audit.util.numbers import check_counts

    check_counts({"--batch-edits": batch_edits, "--limit": limit, "--batch-size": batch_size}, seed)
    the_editor: Editor = make_editor(editor)
    if scope is not None and the_editor.scope is not None:
        the_editor.scope = scope
    if the_editor.needs_state:
        if editor_state is None and adapter is None:
            from mllm_audit.editors.states import card_state

            editor_state = card_state(model, editor, scope, card)  # a state the model's card ships
        if editor_state is None and adapter is not None:
            from mllm_audit.editors.states import shipped_state

            editor_state = shipped_state(adapter.card, editor, scope)
        if editor_state is None:
            raise AuditError(f"editor {editor!r} needs a trained state: pass --editor-state DIR (train-editor)")
    from mllm_audit.runs.fix_resume import check_resume_options

    check_resume_options(resume, output, mode)
    if output is not None:
        check_run_folder(Path(output), "fix", resume=resume)  # an existing run only with --resume
    if save is not None:
        check_new_output(Path(save), "--save")  # never into the model's own folder or any other non-empty one
        if output is not None and Path(save).resolve() == Path(output).resolve():
            raise AuditError(f"--save {save} is the run folder (--output); give the edited model its own folder")
    the_suite = load_suite(suite, data_dir=data_dir, allow_outside_paths=allow_outside_paths)
    check_metric_splits(the_suite.items, require)
    check_images(the_suite, the_suite.items)
    torch.manual_seed(seed)
    if adapter is None:
        from mllm_audit.models import load_model
        from mllm_audit.models.base import LoadOptions

        adapter = load_model(model, LoadOptions(dtype=dtype, device=device, card=card,
                                                revision=revision, trust_generic=trust_generic))
    if editor_state is not None and the_editor.has_state:
        the_editor.load_state(editor_state, adapter)
        from mllm_audit.editors.learned.objectives import check_state_objective

        trained = check_state_objective(the_editor, editor_options or {})  # before any run folder is written
        if trained != "flip":  # recorded with the editor's options: what the edits optimised
            editor_options = {**(editor_options or {}), "objective": trained}
    t_loaded = time.perf_counter()
    load = image_loader(the_suite)
    with status("scoring the unedited model"):
        items, n_candidates = choose_items(adapter, the_suite, split, all_items, limit, batch_size)
        by_id = {it.id: it for it in the_suite.items}
        probes = [probes_for(it, neighbours_of(it, by_id)) for it in items]
        pre = evaluate(adapter, probes, load, None, batch_size)
    train = the_suite.select(split="train")
    ctx = EditContext(load_image=load, train_items=train, options=dict(editor_options or {}))
    ctx.items = {it.id: it for it in items}  # the objectives (editors/objectives.py) read the edited items' meta
    requests = [
        EditRequest(it.id, it.prompt, it.y_less, it.y_more, it.image, it.task, it.rephrase_prompt) for it in items
    ]
    run_id = new_run_id()
    out_dir = Path(output) if output else default_run_dir("fix", adapter.card.name, the_suite.name)
    editor_info = {"name": editor, "scope": getattr(the_editor, "scope", None), "options": ctx.options,
                   "variant": _resolved_variant(the_editor, adapter, ctx.options),
                   **({"hparams_file": settings_source} if settings_source else {})}
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
            check_run_folder(out_dir, "fix", resume=resume)  # again, now that no one else can write it
        previous: tuple[str | None, list[dict[str, Any]], list[str]] = (None, [], [])
        if resume:
            from mllm_audit.runs.fix_resume import kept_edits

            previous = kept_edits(out_dir, record, [it.id for it in items], 1 if mode == "single" else batch_edits)
            if previous[0]:
                record.header.run_id = previous[0]  # one run: the kept and the new edits share its id
            record.payload["resumed"] = {"kept_edits": len(previous[1])}
        return _edit_and_measure(
            adapter, the_editor, the_suite, items, probes, pre, requests, ctx, load, record, out_dir, mode,
            batch_edits, batch_size, save, on_edit, progress, n_candidates, t0, t_loaded, previous[1], previous[2],
            lock=lock,
        )
    except STOPS as e:
        record.finish.interrupted = "SIGINT" if isinstance(e, KeyboardInterrupt) else "SIGTERM"
        record.write(out_dir)
        kept = f"{out_dir} holds an incomplete fix run (complete: false)"
        kept += f", nothing was saved to {save}" if save is not None else ""
        how = ("rerun with a new --output (sequential runs are not resumed)" if mode == "sequential" else
               f"continue with fix --resume --output {out_dir} (the same options)")
        raise interrupted(e, f"{kept}; the model on disk is unchanged; {how}") from None
    finally:
        lock.release()


def _resolved_variant(the_editor: Editor, adapter: Adapter, options: dict[str, Any]) -> str | None:
    """The variant the edit really runs (options < the card < the default; a learned editor's from its
    state), so the run says which objective it optimised, not only what was asked."""
    import importlib

    hp = getattr(the_editor, "hp", None)
    if isinstance(hp, dict) and hp.get("variant"):
        return str(hp["variant"])
    resolve = getattr(importlib.import_module(type(the_editor).__module__), "hyperparameters", None)
    if resolve is None:
        return None
    try:
        return str(resolve(adapter, options).get("variant") or "") or None
    except AuditError:
        return None


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
    n_candidates: int, t0: float, t_loaded: float, kept: Sequence[dict[str, Any]] = (),
    kept_touched: Sequence[str] = (), lock: RunLock | None = None,
) -> FixResult:
    run_id = record.header.run_id
    snapshot = _fingerprint(adapter)
    t_edits = time.perf_counter()
    records: list[dict[str, Any]] = []
    curve: list[dict[str, Any]] = []
    saved: dict[str, Any] | None = None
    note(f"fix: {len(items)} edits with {the_editor.name} ({mode}) -> {out_dir}")
    with RunWriter(out_dir, run_id, samples_name="edits.jsonl", lock=lock) as writer:
        record.write(out_dir)
        tick = progress(len(items)) if progress else None
        touched: set[str] = set(kept_touched)
        records += list(kept)  # fix --resume: the recorded edits of whole batches, rewritten first
        writer.append(records)
        if tick and kept:
            tick(len(kept))

        def measure(idx: list[int], edited: Edited) -> list[dict[str, Any]]:
            post = evaluate(adapter, [probes[i] for i in idx], load, edited.transform, batch_size, edited.score,
                            getattr(edited, "full_score", None))
            from mllm_audit.metrics.edits import flag_opposite_targets

            fx = edit_effects(edited)
            recs = [edit_record(items[i], pre[i], p, len(edited.touched), fx) for i, p in zip(idx, post, strict=True)]
            flag_opposite_targets(recs, [items[i] for i in idx])  # edits made together (batch, sequential)
            return recs

        if mode == "sequential":
            stack: list[Edited] = []
            try:
                for i in range(len(items)):
                    stack.append(the_editor.apply(adapter, [requests[i]], ctx))
                    touched.update(stack[-1].touched)
                    done = measure(list(range(i + 1)), _Chain(adapter, stack))  # type: ignore[arg-type]
                    curve.append({"step": i + 1, **aggregate(done)})
                    if tick:
                        tick(1)
                records = done if items else []
                for rec in records:  # the final rows, measured on the final model, written before any --save
                    rec["run_id"] = run_id
                writer.append(records)
                t_done = time.perf_counter()
                if save is not None and items:  # exactly the model the rows measured: the accumulated edits
                    saved = save_edited(adapter, the_editor, requests, ctx, Path(save), record, items, probes, pre,
                                        load, batch_size, aggregate(records, intervals=True),
                                        applied=_Chain(adapter, stack))
            finally:
                for e in reversed(stack):
                    e.restore()
        else:
            k = 1 if mode == "single" else batch_edits
            for start in range(len(kept), len(items), k):
                idx = list(range(start, min(start + k, len(items))))
                edited = the_editor.apply(adapter, [requests[i] for i in idx], ctx)
                try:
                    touched.update(edited.touched)
                    new = measure(idx, edited)
                finally:
                    edited.restore()
                records += new
                for rec in new:
                    rec["run_id"] = run_id
                writer.append(new)  # flushed per batch: a killed run keeps it (fix --resume)
                record.payload["touched_parameters"] = sorted(touched)
                record.write(out_dir)
                for rec in new:
                    if on_edit:
                        on_edit(rec)
                if tick:
                    tick(len(idx))
        if mode == "sequential" and on_edit:
            for rec in records:
                on_edit(rec)
        if mode != "sequential":  # sequential: stopped before its --save, like single and batch
            t_done = time.perf_counter()
        if _fingerprint(adapter) != snapshot:
            raise AuditError("internal: the model was not restored exactly after editing")
        metrics = aggregate(records, intervals=True)
        if saved is not None:  # sequential: saved above, the rows' own final model
            record.payload["saved_model"] = saved
        elif save is not None:  # single / batch: the rows measure several models; the one saved has every edit
            record.payload["saved_model"] = save_edited(
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
            "s_per_edit": (t_done - t_edits) / max(1, len(records) - len(kept)),  # this session's edits
        })
        record.write(out_dir)
    return FixResult(out_dir, record.to_dict(), records)


def edit_effects(edited: Any) -> dict[str, Any]:
    """Effect sizes an edit handle can tell: L2 norm of its weight change (0 for editors that change
    no weights; null when unknown, e.g. accumulated edits) and the steps it reports (`steps`)."""
    norm: float | None = None
    from mllm_audit.editors.base import Edited

    if isinstance(edited, Edited):
        deltas = edited.delta()
        norm = float(sum(float(d.float().pow(2).sum()) for d in deltas.values()) ** 0.5) if deltas else 0.0
    return {"weight_delta_norm": norm, "steps": getattr(edited, "steps", None)}


class _Chain:
    """Several accumulated edits seen as one (sequential mode); the editor says how they combine."""

    def __init__(self, adapter: Adapter, stack: list[Edited]) -> None:
        self.adapter = adapter
        self.stack = stack
        self.touched = sorted({n for e in stack for n in e.touched})
        self.transform = type(stack[0]).combine(stack)
        self.score = type(stack[0]).combine_score(stack)

    def delta(self) -> dict[str, torch.Tensor]:
        """The accumulated weight change: each weight against its value before the first edit touching it."""
        out: dict[str, torch.Tensor] = {}
        for e in self.stack:
            for name, d in e.delta().items():
                out.setdefault(name, d)
        return out


def _fingerprint(adapter: Adapter) -> int:
    """Cheap exact check that weights are back: hash of every parameter's bytes."""
    import hashlib

    h = hashlib.sha1()
    for _, p in sorted(adapter.model.named_parameters(), key=lambda kv: kv[0]):
        h.update(p.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes()
                 if p.dtype != torch.bfloat16 else p.detach().float().cpu().numpy().tobytes())
    return int(h.hexdigest()[:15], 16)
