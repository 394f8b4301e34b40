"""Every editor and the negative controls on the toy world's held-out eval split, and the paper's Table 2.

    OMP_NUM_THREADS=1 python benchmarks/editor_table.py --model toy [--limit N] [--editors ...] [--controls ...]
        [--threads 1] [--record]

`fix` (single mode) on the biased items of the eval split (the default of `fix`); every editor is
its faithful default variant. MEND, KE and SERAC use the states the toy card ships
(adapters/toy-editors, trained on the train split with `train-editor` defaults by
scripts/train_toy_editors.py); `--train` trains them afresh (and is needed for a model whose card
ships none). Negative controls:
`control-shift` (one bias vector fine-tuned: an input-independent shift) and the untrained
(initial) MEND / KE / SERAC states. Rows are aggregated over the *planted* edits (where parity and
mirrors mean something), with 95 % cluster-bootstrap intervals for the debias metrics.

Columns: the five metrics, locality under both protocols (`answer`: the answer positions;
`easyedit`: all positions, text top-1, multimodal top-10 rank by rank, as EasyEdit's code computed
the paper's Table 2), parity before -> after (planted spread beside), mirror amplification
(share > 0.5 nats, mean change), neighbour drift, perception locality, effect sizes.
Then the toy numbers (easyedit protocol, in %) beside the paper's Table 2 (BLIP-2 OPT, VQA / IC).
`--record` writes benchmarks/records/editor_table.json (benchmarks/_record.py): the per-task five
metrics beside the paper's, which benchmarks/doc_tables.py renders into docs/editors.md.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from _record import Recorder, add_record_option

# The paper's Table 2 (seed 000), BLIP-2 OPT: Reliability, T-Gen, V-Gen, T-Loc, M-Loc in %.
PAPER_TABLE2 = {
    "ft-l": {"ic": (71.69, 72.61, 70.08, 57.31, 10.25), "vqa": (54.19, 51.61, 53.55, 62.83, 11.68)},
    "ft-v": {"ic": (81.35, 80.67, 69.05, 100.0, 7.11), "vqa": (63.87, 64.52, 61.29, 100.0, 5.37)},
    "ike": {"ic": (99.77, 98.73, 99.54, 12.11, 2.96), "vqa": (100.0, 100.0, 100.0, 15.76, 2.74)},
    "serac": {"ic": (98.85, 98.73, 98.50, 99.98, 10.32), "vqa": (100.0, 100.0, 100.0, 100.0, 2.58)},
    "ke": {"ic": (76.30, 74.23, 78.13, 95.24, 69.16), "vqa": (89.03, 84.52, 89.67, 98.68, 76.07)},
    "mend": {"ic": (100.0, 100.0, 100.0, 95.94, 73.52), "vqa": (96.77, 96.77, 96.77, 99.05, 89.97)},
}
FIVE_EASYEDIT = ("reliability", "t_generality", "v_generality", "t_locality_top1_easyedit", "m_locality_top10_easyedit")


def _f(v: float | None, nd: int = 2) -> str:
    return "  n/a" if v is None else f"{v:.{nd}f}"


def main() -> None:
    import torch

    from mllm_audit.metrics.edits import aggregate
    from mllm_audit.models import load_model
    from mllm_audit.runs.fix import run_fix
    from mllm_audit.runs.train_editor import train_editor
    from mllm_audit.toy.evaluate import write_untrained_state

    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True, help="a toy card (toy, toy-v3): never the default")
    ap.add_argument("--suite", default="toy")
    ap.add_argument("--limit", type=int, default=None, help="edit at most N items (default: every biased eval item)")
    ap.add_argument("--editors", default="ft-l,ft-v,ike,mend,ke,serac")
    ap.add_argument("--controls", default="control-shift,mend-untrained,ke-untrained,serac-untrained")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--train", action="store_true", help="train MEND/KE/SERAC afresh, not the card's states")
    add_record_option(ap)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rec = Recorder("editor_table", args.threads)
    adapter = load_model(args.model)
    rows: dict[str, dict] = {}
    by_task: dict[str, dict[str, dict]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in [e for e in (args.editors + "," + args.controls).split(",") if e]:
            editor, state = name.removesuffix("-untrained"), None
            t0 = time.perf_counter()
            if name.endswith("-untrained"):
                state = write_untrained_state(editor, adapter, Path(tmp) / name)
            elif editor in ("mend", "ke", "serac") and args.train:
                state = Path(tmp) / name
                train_editor(editor, model=args.model, suite=args.suite, output=state, adapter=adapter,
                             threads=args.threads)
            t1 = time.perf_counter()
            res = run_fix(model=args.model, suite=args.suite, editor=editor, editor_state=state, limit=args.limit,
                          output=Path(tmp) / f"fix-{name}", adapter=adapter)
            planted = [r for r in res.edits if r["meta"].get("planted")]
            rows[name] = {**aggregate(planted, intervals=True), "n": len(planted), "n_all": len(res.edits),
                          "train_s": t1 - t0, "fix_s": time.perf_counter() - t1}
            by_task[name] = {t: {**aggregate(mine), "n": len(mine)} for t in ("vqa", "ic")
                             if (mine := [r for r in planted if r["item_id"].endswith("/" + t)])}
            print(f"# {name}: {len(res.edits)} edits ({len(planted)} planted), train {t1 - t0:.1f} s, "
                  f"fix {time.perf_counter() - t1:.1f} s", flush=True)

    print("\n## Five metrics, both locality protocols (planted edits of the eval split; rates 0..1)\n")
    print("| editor | n | Rel | T-Gen | V-Gen | T-Loc answer | M-Loc answer | T-Loc easyedit (top-1) "
          "| M-Loc easyedit (top-10) | perception loc |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, m in rows.items():
        print(f"| {name} | {m['n']} | {_f(m['reliability'])} | {_f(m['t_generality'])} | {_f(m['v_generality'])} "
              f"| {_f(m['t_locality_top1'])} | {_f(m['m_locality_top1'])} | {_f(m['t_locality_top1_easyedit'])} "
              f"| {_f(m['m_locality_top10_easyedit'])} | {_f(m['perception_locality_top1'])} |")
    print("\n## Debias metrics (planted edits; [95 % cluster-bootstrap interval])\n")
    print("| editor | parity before -> after (planted) | mirror amplified | mirror delta (nats) "
          "| neighbour drift (nats) | margin change | weight-delta L2 | steps |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, m in rows.items():
        def ci(k: str, nd: int = 2, m: dict = m) -> str:
            lo, hi = m.get(f"{k}_ci_low"), m.get(f"{k}_ci_high")
            return f"{_f(m[k], nd)} [{_f(lo, nd)}, {_f(hi, nd)}]" if lo is not None else _f(m[k], nd)

        print(f"| {name} | {_f(m['mirror_spread_before'])} -> {ci('mirror_spread_after')} "
              f"({_f(m['mirror_spread_planted'])}) "
              f"| {ci('mirror_amplified')} | {ci('mirror_delta')} | {ci('neighbour_drift')} | {ci('margin_change')} "
              f"| {_f(m['weight_delta_norm'], 3)} | {_f(m['steps'], 1)} |")
    print("\n## Toy (easyedit protocol) beside the paper's Table 2 (BLIP-2 OPT), in %: toy / paper\n")
    print("| editor | task | Reliability | T-Generality | V-Generality | T-Locality | M-Locality |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, paper in PAPER_TABLE2.items():
        if name not in by_task:
            continue
        for task in ("ic", "vqa"):
            m = by_task[name].get(task, {})
            cells = [f"{_f(None if m.get(k) is None else 100 * m[k], 1)} / {p:.1f}"
                     for k, p in zip(FIVE_EASYEDIT, paper[task], strict=True)]
            print(f"| {name} | {task} | " + " | ".join(cells) + " |")
    if args.record:
        rec.write({"model": args.model, "suite": args.suite, "limit": args.limit, "five_easyedit": list(FIVE_EASYEDIT),
                   "by_task": {name: {t: {k: m.get(k) for k in ("n", *FIVE_EASYEDIT)} for t, m in tasks.items()}
                               for name, tasks in by_task.items()},
                   "paper_table2": PAPER_TABLE2})


if __name__ == "__main__":
    main()
