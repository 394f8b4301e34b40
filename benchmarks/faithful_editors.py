"""Faithful editors (each original's defaults, docs/editors.md) vs this project's earlier variants.

    python benchmarks/faithful_editors.py [--limit 24] [--steps N] [--editors ft-l,ft-v,ike,mend,ke,serac]

`fix` in single mode on the first LIMIT biased items of the toy suite's eval split (held out from
the learned editors' training); learned editors are trained here on the train split, once per
variant. Prints one line per (editor, variant): the five metrics (answer-position locality, the
protocol `fix` reports), parity before -> after (studies.py), training and edit seconds.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

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
    from mllm_audit.models import load_model
    from mllm_audit.runs.fix import choose_items
    from mllm_audit.runs.score import image_loader
    from mllm_audit.runs.studies import Engine, Setting, make_study_editor, summarise
    from mllm_audit.suites.items import load_suite

    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="toy")
    ap.add_argument("--suite", default="toy")
    ap.add_argument("--limit", type=int, default=24)
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--editors", default=",".join(PAIRS))
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    adapter = load_model(args.model)
    suite = load_suite(args.suite)
    items, _ = choose_items(adapter, suite, None, False, args.limit, 16)
    train = suite.select(split="train")
    engine = Engine(adapter, suite, 16)
    load = image_loader(suite)
    print(f"{len(items)} biased eval items; {'editor':6} {'variant':9} {'rel':>5} {'t-gen':>5} {'v-gen':>5} "
          f"{'t-loc':>5} {'t-kl':>6} {'m-loc':>5} {'m-kl':>6} {'parity':>11} {'train_s':>7} {'s/edit':>6}")
    made: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.editors.split(","):
            for variant, opts in PAIRS[name]:
                t0 = time.perf_counter()
                learned = name in ("mend", "ke")
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
                                                       train, Path(tmp) / name, {}, args.steps, 0)
                    ed = made[name]
                    ctx_opts = opts
                train_s = time.perf_counter() - t0 if name in ("mend", "ke", "serac") else 0.0
                ctx = EditContext(load_image=load, train_items=train, options=ctx_opts)
                m = summarise(engine.run(Setting({}, ed, ctx, [[it] for it in items])))

                def f(k: str, m: dict = m, w: int = 5) -> str:
                    return f"{'—':>{w}}" if m.get(k) is None else f"{m[k]:{w}.3f}"

                par = f"{m['parity_before']:.2f}->{m['parity_after']:.2f}" if m.get("parity_after") is not None \
                    else "—"
                print(f"{'':22}{name:6} {variant:9} {f('reliability')} {f('t_generality')} {f('v_generality')} "
                      f"{f('t_locality_top1')} {f('t_locality_kl', w=6)} {f('m_locality_top1')} "
                      f"{f('m_locality_kl', w=6)} {par:>11} {train_s:7.1f} {m['edit_s']:6.3f}", flush=True)


if __name__ == "__main__":
    main()
