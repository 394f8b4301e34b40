# Over 350 lines: the three studies share one engine (settings, siblings, parity probes).
"""The debias-editing paper's studies (seed 000, section 4.2-4.3 and its appendix), on any model.

- `modules` (Figure 4): FT, MEND and KE editing the language module vs the vision module.
- `cross-bias` (Table 3): edit on one bias type, measure Reliability and parity on each.
- `batch` (appendix): edits applied 1, 4, 16 or 64 at a time.

Every study edits the biased items of the eval split (as `fix` does), measures the paper's metrics
with editing.py's own probes and `evaluate`, and adds *parity*: for an item's prompt, the spread
(max - min) of the answer log-odds log p(y_more) - log p(y_less) across the groups' images of the
same scenario and task in the same split, group means first. Parity before vs after shows whether
an edit removed the dependence of the answer on the group or only moved the answer for everyone
(then parity stays). On the toy world it is compared with the planted spread. Parity is computed
here because the shared debias metrics were not in the package when the studies were written.

Cross-bias, two protocols (the paper does not say which it used; its FT rows read like the first,
its IKE and MEND rows like the second):
- `fit` (default): the editor is fitted on bias type S only (learned editors trained on S's train
  items, IKE's demonstrations drawn from S's train items; FT has nothing to fit, so its rows repeat)
  and then edits each bias type T's items one at a time; the cell is T's Reliability.
- `transfer`: S's items are edited all at once; the cell is the share of T's (unedited, for T != S)
  items that now prefer y_less: how far debiasing one type spills over into another.

Each study writes a run folder: results.json (`command: study`, the table) and records.jsonl (one line
per measured item and setting). `mllm-audit study` then renders report.html into it (report/studies.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from mllm_audit.errors import AuditError
from mllm_audit.metrics.paired_edits import CLUSTERS, study_pairs
from mllm_audit.models.cards import DEFAULT_MODEL
from mllm_audit.runs.options import FIX_BATCH_SIZES, LEARNED_EDITORS, check_load_options

if TYPE_CHECKING:
    from mllm_audit.editors.base import EditContext, Editor
    from mllm_audit.models.base import Adapter
    from mllm_audit.runs.probes import Probe
    from mllm_audit.suites.items import Item, Suite

STUDIES = ("modules", "cross-bias", "batch")
LEARNED = LEARNED_EDITORS
RATE_KEYS = ("reliability", "t_generality", "v_generality", "t_locality_top1", "m_locality_top1")
TABLE_KEYS = (*RATE_KEYS, "t_locality_kl", "m_locality_kl", "parity_before", "parity_after", "parity_planted")
MODULE_EDITORS = {"ft": ("ft-l", "ft-v"), "mend": ("mend", "mend"), "ke": ("ke", "ke")}
BATCH_SIZES = FIX_BATCH_SIZES  # the paper's 1/4/16/64, the sizes fix --batch-edits takes
CROSS_PROTOCOLS = ("fit", "transfer")


# ---- parity --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sibling:
    """One image of a group that an item's prompt is also asked on (for parity)."""

    group: str
    image: str
    planted: float | None  # planted log-odds of the item's y_more on this image (toy world), if known


def siblings(item: Item, pool: Sequence[Item]) -> list[Sibling]:
    """Images of every group in the item's scenario (meta.scenario; else same prompt), same task and
    bias type, in the pool; group from meta.group (else the image). Empty when only one group."""
    scen = item.meta.get("scenario")
    out: dict[str, Sibling] = {}
    for it in pool:
        if it.image is None or it.task != item.task or it.bias_type != item.bias_type:
            continue
        if (it.meta.get("scenario") != scen) if scen is not None else (it.prompt != item.prompt):
            continue
        if {it.y_more, it.y_less} != {item.y_more, item.y_less}:
            continue
        planted = it.meta.get("planted_logodds")
        if planted is not None:
            planted = float(planted) if it.meta.get("planted") else 0.0
            planted = planted if it.y_more == item.y_more else -planted
        out.setdefault(it.image, Sibling(str(it.meta.get("group", it.image)), it.image, planted))
    sibs = list(out.values())
    return sibs if len({s.group for s in sibs}) > 1 else []


def parity_probe(item: Item, sibs: Sequence[Sibling]) -> Probe:
    """(y_more, y_less) on the item's own prompt with each sibling image."""
    from mllm_audit.runs.probes import Probe
    from mllm_audit.scoring.contract import Request

    pairs = {f"img{j}": (Request(item.prompt, item.y_more, s.image, item.task),
                         Request(item.prompt, item.y_less, s.image, item.task)) for j, s in enumerate(sibs)}
    return Probe(pairs, {})


def spread(sibs: Sequence[Sibling], values: Sequence[float]) -> float | None:
    """max - min over groups of the group-mean value (None without two groups)."""
    by: dict[str, list[float]] = {}
    for s, v in zip(sibs, values, strict=True):
        by.setdefault(s.group, []).append(v)
    if len(by) < 2:
        return None
    means = [sum(v) / len(v) for v in by.values()]
    return max(means) - min(means)


def planted_spread(sibs: Sequence[Sibling]) -> float | None:
    if not sibs or any(s.planted is None for s in sibs):
        return None
    return spread(sibs, [float(s.planted) for s in sibs])  # type: ignore[arg-type]


# ---- the shared engine ---------------------------------------------------------------------------


@dataclass
class Setting:
    """One row of a study: an editor (already set up) applied in chunks, measured on some items."""

    label: dict[str, Any]
    editor: Editor
    ctx: EditContext
    chunks: list[list[Item]]
    measure: Callable[[list[Item]], list[Item]] | None = None  # default: the chunk itself


class Engine:
    """Pre-edit measurements computed once per item; edits applied and restored per chunk."""

    def __init__(self, adapter: Adapter, suite: Suite, batch_size: int) -> None:
        from mllm_audit.runs.score import image_loader

        self.adapter = adapter
        self.suite = suite
        self.load = image_loader(suite)
        self.batch_size = batch_size
        self._pre: dict[str, tuple[dict[str, Any], list[float]]] = {}
        self._sibs: dict[str, list[Sibling]] = {}

    def sibs(self, item: Item) -> list[Sibling]:
        if item.id not in self._sibs:
            pool = [it for it in self.suite.items if it.split == item.split]
            self._sibs[item.id] = siblings(item, pool)
        return self._sibs[item.id]

    def _measure(self, items: Sequence[Item], transform: Any, scorer: Any) -> list[tuple[dict[str, Any], list[float]]]:
        from mllm_audit.runs.probes import evaluate, probes_for

        probes = []
        for it in items:
            probes += [probes_for(it), parity_probe(it, self.sibs(it))]
        recs = evaluate(self.adapter, probes, self.load, transform, self.batch_size, scorer)
        out = []
        for k, it in enumerate(items):
            par = recs[2 * k + 1]
            out.append((recs[2 * k], [par[f"img{j}"] for j in range(len(self.sibs(it)))]))
        return out

    def pre(self, items: Sequence[Item]) -> list[tuple[dict[str, Any], list[float]]]:
        missing = list({it.id: it for it in items if it.id not in self._pre}.values())
        if missing:
            for it, m in zip(missing, self._measure(missing, None, None), strict=True):
                self._pre[it.id] = m
        return [self._pre[it.id] for it in items]

    def run(self, setting: Setting) -> list[dict[str, Any]]:
        """Per measured item and chunk: edit_record + parity before/after + edited flag."""
        from mllm_audit.editors.base import EditRequest
        from mllm_audit.metrics.edits import edit_record

        records = []
        for ci, chunk in enumerate(setting.chunks):
            measured = setting.measure(chunk) if setting.measure else chunk
            pre = self.pre(measured)
            reqs = [EditRequest(it.id, it.prompt, it.y_less, it.y_more, it.image, it.task, it.rephrase_prompt)
                    for it in chunk]
            t0 = time.perf_counter()
            edited = setting.editor.apply(self.adapter, reqs, setting.ctx)
            t_edit = time.perf_counter() - t0
            try:
                post = self._measure(measured, edited.transform, edited.score)
                touched = len(edited.touched)
                norm = float(sum(d.float().pow(2).sum() for d in edited.delta().values()) ** 0.5) if touched else 0.0
            finally:
                edited.restore()
            chunk_ids = {it.id for it in chunk}
            for it, (p0, par0), (p1, par1) in zip(measured, pre, post, strict=True):
                rec = edit_record(it, p0, p1, touched)
                sibs = self.sibs(it)
                rec.update({**setting.label, "chunk": ci, "chunk_size": len(chunk), "edited": it.id in chunk_ids,
                            "parity_before": spread(sibs, par0), "parity_after": spread(sibs, par1),
                            "parity_planted": planted_spread(sibs), "delta_norm": norm,
                            "edit_s": round(t_edit / len(chunk), 4)})
                records.append(rec)
        return records


def summarise(records: Sequence[dict[str, Any]]) -> dict[str, float | None]:
    """editing.aggregate's metrics plus the parity means and s/edit over the records."""
    from mllm_audit.metrics.edits import aggregate

    out = aggregate(records) if records else {}
    for key in ("parity_before", "parity_after", "parity_planted", "delta_norm", "edit_s"):
        vals = [r[key] for r in records if r.get(key) is not None]
        out[key] = sum(vals) / len(vals) if vals else None
    out["n"] = len(records)
    return out


# ---- editors for a study -------------------------------------------------------------------------


def make_study_editor(
    name: str,
    adapter: Adapter,
    suite: Suite,
    scope: str,
    train_items: Sequence[Item],
    out: Path,
    states: dict[str, Path],
    train_steps: int | None,
    seed: int,
) -> Editor:
    """An editor ready to apply: weight/in-context editors as they are; learned ones loaded from a
    given state (`states["name:scope"]`, or `states[name]` for the text side) or trained here on
    `train_items` (val split for early stopping)."""
    from mllm_audit.editors import make_editor
    from mllm_audit.editors.learned.base import LearnedEditor
    from mllm_audit.editors.learned.training import TRAIN_DEFAULTS, train_loop
    from mllm_audit.runs.score import image_loader

    ed = make_editor(name)
    if ed.scope is not None:
        ed.scope = scope
    if not isinstance(ed, LearnedEditor):
        return ed
    given = states.get(f"{name}:{scope}") or (states.get(name) if scope == "text" else None)
    if given is not None:
        ed.load_state(given, adapter)
        if ed.scope != scope:
            raise AuditError(f"editor state {given} edits the {ed.scope} side; this study row needs {scope} "
                             f"(pass it as {name}:{ed.scope}=DIR)")
        return ed
    if not train_items:
        raise AuditError(f"suite {suite.name!r}: no train items to train {name} on for this study")
    torch.manual_seed(seed)
    ed.setup(adapter)
    settings = {**TRAIN_DEFAULTS, **ed.train_defaults}
    if train_steps is not None:
        settings["steps"] = int(train_steps)
    val = [it for it in suite.items if it.split == "val"]
    train_loop(ed, adapter, list(train_items), val, image_loader(suite), out, seed, False, settings,
               {"suite": suite.identity(), "n_train": len(train_items), "n_val": len(val)})
    return ed


# ---- the studies ---------------------------------------------------------------------------------


@dataclass
class StudyResult:
    run_dir: Path
    results: dict[str, Any]
    records: list[dict[str, Any]]


def run_study(
    study: str,
    model: str = DEFAULT_MODEL,
    suite: str = "toy",
    editors: Sequence[str] | None = None,
    limit: int | None = 24,
    sizes: Sequence[int] = BATCH_SIZES,
    protocol: str = "fit",
    editor_state: Mapping[str, Path] | None = None,
    train_steps: int | None = None,
    output: Path | None = None,
    data_dir: Path | None = None,
    batch_size: int = 16,
    dtype: str = "fp32",
    device: str = "cpu",
    seed: int = 0,
    revision: str | None = None,
    trust_generic: bool = False,
    cluster: str = "image",
    *,
    adapter: Adapter | None = None,
    on_row: Callable[[dict[str, Any]], None] | None = None,
) -> StudyResult:
    """Run one study, write its run folder, return the table (results["table"])."""
    from mllm_audit.editors import EDITORS
    from mllm_audit.editors.base import EditContext
    from mllm_audit.runs.fix import choose_items
    from mllm_audit.runs.record import versions
    from mllm_audit.runs.score import check_images, image_loader
    from mllm_audit.runs.writer import RESULTS_SCHEMA, RunWriter, default_run_dir, new_run_id
    from mllm_audit.suites.items import load_suite
    from mllm_audit.util.folders import RunLock, check_run_folder

    t0 = time.perf_counter()
    if study not in STUDIES:
        raise AuditError(f"unknown study {study!r} (known: {', '.join(STUDIES)})")
    check_load_options(dtype, device)
    if protocol not in CROSS_PROTOCOLS:
        raise AuditError(f"--protocol must be one of {', '.join(CROSS_PROTOCOLS)}, got {protocol!r}")
    if cluster not in CLUSTERS:
        raise AuditError(f"--cluster must be one of {', '.join(CLUSTERS)}, got {cluster!r}")
    bad = [s for s in sizes if s < 1]
    if bad:
        raise AuditError(f"--sizes must be positive, got {bad[0]}")
    editors = [e.lower() for e in editors] if editors else None  # the docs write FT-L
    if study == "modules":
        editors = list(editors or MODULE_EDITORS)
        unknown = [e for e in editors if e not in MODULE_EDITORS]
    else:
        editors = list(editors or (["ft-l", "ft-v", "ike", "serac", "ke", "mend"] if study == "cross-bias"
                                   else ["ft-l", "ft-v", "ike"]))
        unknown = [e for e in editors if e not in EDITORS]
    if unknown:
        known = MODULE_EDITORS if study == "modules" else EDITORS
        raise AuditError(f"study {study}: unknown editor {unknown[0]!r} (known: {', '.join(known)})")
    if output is not None:  # a model, suite or editor-state folder is never a run folder (util/folders.py)
        check_run_folder(Path(output), "study", resume=False)
    states = {k: Path(v) for k, v in (editor_state or {}).items()}
    the_suite = load_suite(suite, data_dir=data_dir)
    check_images(the_suite, the_suite.items)
    torch.manual_seed(seed)
    if adapter is None:
        from mllm_audit.models import load_model
        from mllm_audit.models.base import LoadOptions

        adapter = load_model(model, LoadOptions(dtype=dtype, device=device,
                                                revision=revision, trust_generic=trust_generic))
    if study != "cross-bias":  # cross-bias trains per bias type; the others take the card's shipped states
        from mllm_audit.editors.states import shipped_state

        for name in LEARNED:
            shipped = shipped_state(adapter.card, name, None)
            if shipped is not None and name not in states:
                states[name] = shipped
    items, n_candidates = choose_items(adapter, the_suite, None, False, None, batch_size)
    if not items:
        raise AuditError(f"model {adapter.card.name!r} is biased on no eval item of suite {the_suite.name!r}")
    out_dir = Path(output) if output else default_run_dir(f"study-{study}", adapter.card.name, the_suite.name)
    lock = RunLock(out_dir, f"study {study}").acquire()  # one writer; released when the run ends
    try:
        check_run_folder(out_dir, "study", resume=False)  # again, now that no one else can write it
    except AuditError:
        lock.release()
        raise
    run_id = new_run_id()
    engine = Engine(adapter, the_suite, batch_size)
    load = image_loader(the_suite)
    train_all = the_suite.select(split="train")
    states_dir = out_dir / "editor-states"
    table: list[dict[str, Any]] = []
    all_records: list[dict[str, Any]] = []
    results: dict[str, Any] = {
        "schema": RESULTS_SCHEMA, "command": "study", "study": study, "run_id": run_id, "complete": False,
        "model": adapter.identity(), "suite": the_suite.identity(), "versions": versions(), "seed": seed,
        "editors": editors, "limit": limit,
        "editor_states": {k: str(v) for k, v in states.items()} if study != "cross-bias" else {},
        "parity": "spread (max - min over groups) of log p(y_more) - log p(y_less) for the item's prompt on "
                  "each group's images of the same scenario and task (group means); computed in studies.py",
    }

    def ctx_for(train_items: Sequence[Item]) -> EditContext:
        return EditContext(load_image=load, train_items=list(train_items), options={})

    with lock, RunWriter(out_dir, run_id, samples_name="records.jsonl", lock=lock) as writer:
        writer.write_results(results)

        def add(setting: Setting, row_label: dict[str, Any]) -> None:
            recs = engine.run(setting)
            for r in recs:
                r["run_id"] = run_id
            writer.append(recs)
            all_records.extend(recs)
            row = {**row_label, **summarise(recs)}
            table.append(row)
            if on_row:
                on_row(row)

        chosen = items[:limit] if limit is not None else items
        if study == "modules":
            for fam in editors:
                for module, scope in (("language", "text"), ("vision", "vision")):
                    name = MODULE_EDITORS[fam][0 if scope == "text" else 1]
                    ed = make_study_editor(name, adapter, the_suite, scope, train_all,
                                           states_dir / f"{name}-{scope}", states, train_steps, seed)
                    label: dict[str, Any] = {"editor": fam, "module": module, "edited_as": name}
                    add(Setting(label, ed, ctx_for(train_all), [[it] for it in chosen]), label)
        elif study == "cross-bias":
            types = list(dict.fromkeys(it.bias_type for it in items))
            by_type = {t: [it for it in items if it.bias_type == t] for t in types}
            per_type = {t: (v[:limit] if limit is not None else v) for t, v in by_type.items()}
            for name in editors:
                fitted = name in LEARNED or name == "ike"  # FT has nothing to fit on a bias type
                for src in types:
                    train_src = [it for it in train_all if it.bias_type == src]
                    scope = "vision" if name == "ft-v" else "text"
                    # Learned editors are trained on this bias type only: given states do not apply.
                    ed = make_study_editor(name, adapter, the_suite, scope, train_src, states_dir / f"{name}-{src}",
                                           {}, train_steps, seed)
                    ctx = ctx_for(train_src)
                    for tgt in types:
                        label = {"editor": name, "edit_type": src, "eval_type": tgt, "protocol": protocol}
                        if protocol == "fit" and not fitted and src != types[0]:
                            # Same editor, same items: the row of the first source type, not re-run.
                            same = next(r for r in table if r["editor"] == name and r["eval_type"] == tgt)
                            table.append({**same, **label})
                            continue
                        if protocol == "fit":
                            setting = Setting(label, ed, ctx, [[it] for it in per_type[tgt]])
                        else:
                            tgt_items = per_type[tgt]
                            setting = Setting(label, ed, ctx, [per_type[src]],
                                              measure=lambda _c, t=tgt_items: t)  # type: ignore[misc]
                        add(setting, label)
        else:  # batch
            for name in editors:
                scope = "vision" if name == "ft-v" else "text"
                ed = make_study_editor(name, adapter, the_suite, scope, train_all, states_dir / name, states,
                                       train_steps, seed)
                for k in sizes:
                    chunks = [chosen[i : i + k] for i in range(0, len(chosen), k)]
                    label = {"editor": name, "batch": k}
                    add(Setting(label, ed, ctx_for(train_all), chunks), label)
        results.update({
            "complete": True, "n_items": len(chosen), "n_candidates": n_candidates,
            "protocol": protocol if study == "cross-bias" else None,
            "sizes": list(sizes) if study == "batch" else None, "table": table,
            # settings vs their reference on the same items, with paired cluster-bootstrap intervals
            "paired": study_pairs(study, all_records, cluster), "paired_cluster": cluster,
            "timings": {"total_s": round(time.perf_counter() - t0, 3)},
        })
        writer.write_results(results)
    return StudyResult(out_dir, results, all_records)


# ---- tables and the report section -------------------------------------------------------------


