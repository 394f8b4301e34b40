"""Faithful editors (each original's defaults, docs/editors.md) vs this project's earlier variants.

    OMP_NUM_THREADS=1 python benchmarks/faithful_editors.py --model toy [--limit 24] [--steps N]
        [--editors ft-l,ft-v,ike,mend,ke,serac] [--train] [--record]

`fix` in single mode on the first LIMIT biased items of the toy suite's eval split (held out from
the learned editors' training). Learned editors: by default the states the model card ships (their
default variant only: MEND easyedit, KE decao, SERAC under both routings, which share one state);
`--train` trains each variant here on the train split instead (minutes per variant). Prints one
line per (editor, variant): the five metrics (answer-position locality, the protocol `fix` reports),
parity before -> after (studies.py), training and edit seconds. `--record` writes
benchmarks/records/faithful_editors.json (benchmarks/_record.py) for benchmarks/doc_tables.py.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from _record import Recorder, add_record_option

PAIRS = {
    "ft-l": [("easyedit", {"variant": "easyedit"}), ("margin", {"variant": "margin"})],
    "ft-v": [("easyedit", {"variant": "easyedit"}), ("margin", {"variant": "margin"})],
    "ike": [("easyedit", {"variant": "easyedit"}), ("prompt", {"variant": "prompt"})],
    "mend": [("easyedit", {"variant": "easyedit"}), ("margin", {"variant": "margin"})],
    "ke": [("decao", {"variant": "decao"}), ("margin", {"variant": "margin"})],
    "serac": [("soft", {"routing": "soft"}), ("hard", {"routing": "hard"})],
}


def main() -> None:
    import torch

    from mllm_audit.editors.base import EditContext
    from mllm_audit.editors.states import shipped_state
    from mllm_audit.models import load_model
    from mllm_audit.runs.fix import choose_items
    from mllm_audit.runs.score import image_loader
    from mllm_audit.runs.studies import Engine, Setting, make_study_editor, summarise
    from mllm_audit.suites.items import load_suite

    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True, help="a toy card (toy, toy-v3): never the default")
    ap.add_argument("--suite", default="toy")
    ap.add_argument("--limit", type=int, default=24)
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--editors", default=",".join(PAIRS))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--train", action="store_true", help="train MEND / KE / SERAC here instead of the shipped states")
    add_record_option(ap)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rec = Recorder("faithful_editors", args.threads)
    adapter = load_model(args.model)
    suite = load_suite(args.suite)
    items, _ = choose_items(adapter, suite, None, False, args.limit, 16)
    train = suite.select(split="train")
    engine = Engine(adapter, suite, 16)
    load = image_loader(suite)
    print(f"{len(items)} biased eval items; {'editor':6} {'variant':9} {'rel':>5} {'t-gen':>5} {'v-gen':>5} "
          f"{'t-loc':>5} {'t-kl':>6} {'m-loc':>5} {'m-kl':>6} {'parity':>11} {'train_s':>7} {'s/edit':>6}")
    made: dict = {}
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.editors.split(","):
            shipped = None if args.train or name not in ("mend", "ke", "serac") else shipped_state(adapter.card, name,
                                                                                                   None)
            for i, (variant, opts) in enumerate(PAIRS[name]):
                if shipped is not None and name in ("mend", "ke") and i > 0:
                    print(f"{'':22}{name:6} {variant:9} skipped: the shipped state is the default variant; --train "
                          "trains this one", flush=True)
                    continue
                t0 = time.perf_counter()
                learned = name in ("mend", "ke") and shipped is None
                if learned:
                    from mllm_audit.editors import make_editor
                    from mllm_audit.editors.learned.training import TRAIN_DEFAULTS, train_loop

                    ed = make_editor(name)
                    torch.manual_seed(0)
                    ed.setup(adapter, opts)
                    settings = {**TRAIN_DEFAULTS, **ed.train_defaults}
                    if args.steps:
                        settings["steps"] = args.steps
                    val = suite.select(split="val")
                    train_loop(ed, adapter, train, val, load, Path(tmp) / f"{name}-{variant}", 0, False, settings, {})
                    ctx_opts: dict = {}
                else:
                    if name not in made:
                        made[name] = make_study_editor(name, adapter, suite, "vision" if name == "ft-v" else "text",
                                                       train, Path(tmp) / name, {name: shipped} if shipped else {},
                                                       args.steps, 0)
                    ed = made[name]
                    ctx_opts = opts
                train_s = time.perf_counter() - t0 if name in ("mend", "ke", "serac") and shipped is None else 0.0
                ctx = EditContext(load_image=load, train_items=train, options=ctx_opts)
                m = summarise(engine.run(Setting({}, ed, ctx, [[it] for it in items])))

                def f(k: str, m: dict = m, w: int = 5) -> str:
                    return f"{'—':>{w}}" if m.get(k) is None else f"{m[k]:{w}.3f}"

                par = f"{m['parity_before']:.2f}->{m['parity_after']:.2f}" if m.get("parity_after") is not None \
                    else "—"
                print(f"{'':22}{name:6} {variant:9} {f('reliability')} {f('t_generality')} {f('v_generality')} "
                      f"{f('t_locality_top1')} {f('t_locality_kl', w=6)} {f('m_locality_top1')} "
                      f"{f('m_locality_kl', w=6)} {par:>11} {train_s:7.1f} {m['edit_s']:6.3f}", flush=True)
                keys = ("n", "reliability", "t_generality", "v_generality", "t_locality_top1", "t_locality_kl",
                        "m_locality_top1", "m_locality_kl", "parity_before", "parity_after", "parity_planted", "edit_s")
                rows.append({"editor": name, "variant": variant, **{k: m.get(k) for k in keys},
                             "state": "trained here" if learned or (name == "serac" and shipped is None) else (
                                 "shipped" if shipped else None),
                             "train_s": round(train_s, 1), "steps": args.steps})
    if args.record:
        rec.write({"model": args.model, "suite": args.suite, "limit": args.limit, "n_items": len(items),
                   "rows": rows})


if __name__ == "__main__":
    main()
