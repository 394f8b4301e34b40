"""Does a debias edit of a unified model's *understanding* move what it *draws*? (issue #20, part 6)

On the toy unified world v2 (`toy-janus-v2`): a likelihood suite of the blank-image question
"What is the gender of a {occupation}? male, female or unknown" for the 24 skewed occupations,
y_more = the gender the model over-draws for that occupation, y_less = the other. Each weight editor
edits every item at once (`fix --all --mode batch`, saved), then `gen-scan` runs before and after on
the same occupations. Printed per editor: understanding (share of items with p(y_more) > p(y_less),
mean margin) and generation (held-out and train normalised gender bias, and the share of images
of the over-drawn gender), before -> after.

    OMP_NUM_THREADS=1 python benchmarks/edit_transfer.py --model toy-janus-v2 [--editors ft-l,mend,ke,serac]
        [-n 64] [--states untrained|quick] [--train-steps 100] [--record]

IKE changes no weights and FT-V edits the understanding aligner, which generation never reads, so
both transfer nothing by construction. MEND / KE / SERAC need an editor state: `--states untrained`
(default) uses each one's initialisation (`toy.evaluate.write_untrained_state`), `--states quick`
trains it for `--train-steps` steps on the 16 train-occupation items (`train_editor`; all 24 are
then edited); neither is the meta-trained state of docs/editors.md, and the rows say which was used.
`--record` writes benchmarks/records/edit_transfer_<states>.json (benchmarks/_record.py) for the tables
of docs/unified.md (doc_tables.py).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

import torch
from _record import Recorder, add_record_option


def understanding_suite(folder: Path) -> Path:
    from PIL import Image

    from mllm_audit.toy.unified import QUESTION, occupations

    Image.new("RGB", (16, 16), (255, 255, 255)).save(folder / "blank.png")
    lines = []
    for o in occupations():
        if o.group == "control":
            continue
        more, less = ("male", "female") if o.gender[0] > 0.5 else ("female", "male")
        lines.append({"id": f"und/{o.name}", "task": "vqa", "bias_type": "gender", "image": "blank.png",
                      "prompt": QUESTION.format(occupation=o.name), "y_more": more, "y_less": less,
                      "meta": {"group": o.group}, "cluster": o.name,
                      "split": "train" if o.group == "train" else "eval",
                      # A locality probe (a control occupation's question; SERAC's all-position
                      # scorer also needs one: with none it stacks an empty list).
                      "loc_prompt": QUESTION.format(occupation="writer"), "loc_answer": "unknown"})
    path = folder / "items.jsonl"
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return path


def generation_row(res: Any, props: Any) -> dict[str, float]:
    """Normalised gender bias per group, the share of the over-drawn gender (planted majority), and
    prop fidelity (the share of images showing the occupation's prop: is the edit debiasing or damage?)."""
    from PIL import Image

    out = {g: res.results["summary"][g]["gender"]["normalised"] for g in ("train", "test")}
    ok = n = 0
    for s in res.samples:
        imgs = [Image.open(res.run_dir / r["image"]).convert("RGB") for r in s["predictions"]]
        ok += sum(p.labels.get("prop") == s["meta"]["prop"] for p in props.classify(imgs, 64))
        n += len(imgs)
    out["fidelity"] = ok / n
    hit = tot = 0
    for s in res.samples:
        planted = s["meta"]["planted"]["gender"]
        if planted[0] == 0.5:
            continue
        major = "male" if planted[0] > 0.5 else "female"
        c = s["counts"]["gender"]
        hit += c.get(major, 0)
        tot += sum(c.values())
    out["share_overdrawn"] = hit / tot if tot else float("nan")
    return out


LEARNED = ("mend", "ke", "serac")
NO_WEIGHTS = ("serac",)  # * in the table: generation is the unedited model's by construction


def learned_state(editor: str, adapter: Any, items: Path, out: Path, how: str, steps: int) -> Path:
    """The learned editor's state for this run: its initialisation, or `steps` of training on `items`."""
    if how == "untrained":
        from mllm_audit.toy.evaluate import write_untrained_state

        return write_untrained_state(editor, adapter, out)
    from mllm_audit.runs.train_editor import train_editor

    train_editor(editor=editor, adapter=adapter, suite=str(items), output=out, steps=steps)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--editors", default="ft-l")
    ap.add_argument("-n", "--images-per-prompt", type=int, default=64)
    ap.add_argument("--states", choices=("untrained", "quick"), default="untrained",
                    help="learned editors' state: initialisation, or trained --train-steps on these items")
    ap.add_argument("--train-steps", type=int, default=100)
    ap.add_argument("--model", required=True, help="a toy unified card (toy-janus-v2): never the default")
    ap.add_argument("--threads", type=int, default=1)
    add_record_option(ap)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rec = Recorder(f"edit_transfer_{args.states}", args.threads)

    from mllm_audit.classifiers.classify import load_classifier
    from mllm_audit.models import load_model
    from mllm_audit.runs.fix import run_fix
    from mllm_audit.runs.gen_scan import run_gen_scan
    from mllm_audit.runs.scan import run_scan

    clf = load_classifier("toy-janus-v2")
    props = load_classifier("toy-janus-v2-props")
    base = load_model(args.model)
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        items = understanding_suite(t)
        kw = {"suite": "gen-toy-v2", "images_per_prompt": args.images_per_prompt, "classifier_obj": clf,
              "batch_size": 64}
        und0 = run_scan(adapter=base, suite=items, output=t / "scan-base").results["summary"]["all"]
        gen0 = generation_row(run_gen_scan(adapter=base, output=t / "gen-base", **kw), props)
        rows = []
        for ed in args.editors.split(","):
            state, label = None, ed
            if ed in LEARNED:
                state = learned_state(ed, base, items, t / f"state-{ed}", args.states, args.train_steps)
                label = f"{ed} ({args.states}{f' {args.train_steps}' if args.states == 'quick' else ''})"
            if ed in NO_WEIGHTS:
                # The edit lives outside the weights (a routed counterfactual model): nothing to save and
                # nothing `generate` could read. Understanding after = the fix's own post-edit margins.
                fix = run_fix(adapter=base, suite=items, editor=ed, all_items=True, mode="batch", batch_edits=64,
                              output=t / f"fix-{ed}", editor_state=state)
                margins = [e["post"]["reliability"] for e in fix.edits]
                und1 = {"pct_biased": 100 * sum(m > 0 for m in margins) / len(margins),  # percent, as scan stores it
                        "mean_margin": sum(margins) / len(margins)}
                rows.append((label + " *", und1, gen0))
                print(f"done {label}", flush=True)
                continue
            run_fix(adapter=base, suite=items, editor=ed, all_items=True, mode="batch", batch_edits=64,
                    output=t / f"fix-{ed}", save=t / f"model-{ed}", editor_state=state)
            edited = load_model(str(t / f"model-{ed}"))
            und1 = run_scan(adapter=edited, suite=items, output=t / f"scan-{ed}").results["summary"]["all"]
            gen1 = generation_row(run_gen_scan(adapter=edited, output=t / f"gen-{ed}", **kw), props)
            rows.append((label, und1, gen1))
            print(f"done {label}", flush=True)
    head = (f"{'editor':20} {'und. % biased':>16} {'und. mean margin':>20} {'gen. train norm.':>18} "
            f"{'gen. test norm.':>18} {'gen. share over-drawn':>22} {'prop fidelity':>16}")
    print(head)
    print("(* changes no weights: its generation columns are the unedited model's, by construction)")
    for ed, und1, gen1 in rows:
        print(f"{ed:20} {und0['pct_biased']:>7.1f} -> {und1['pct_biased']:<6.1f} "
              f"{und0['mean_margin']:>+9.3f} -> {und1['mean_margin']:<+8.3f} "
              f"{gen0['train']:>7.3f} -> {gen1['train']:<6.3f} {gen0['test']:>7.3f} -> {gen1['test']:<6.3f} "
              f"{gen0['share_overdrawn']:>9.3f} -> {gen1['share_overdrawn']:<6.3f} "
              f"{gen0['fidelity']:>6.3f} -> {gen1['fidelity']:<6.3f}")
    if args.record:
        keep = ("pct_biased", "mean_margin")
        rec.write({"model": args.model, "images_per_prompt": args.images_per_prompt, "states": args.states,
                   "train_steps": args.train_steps if args.states == "quick" else None,
                   "before": {"understanding": {k: und0[k] for k in keep}, "generation": gen0},
                   "rows": [{"editor": ed, "weights_changed": not ed.endswith(" *"),
                             "understanding": {k: und1[k] for k in keep}, "generation": gen1}
                            for ed, und1, gen1 in rows]})


if __name__ == "__main__":
    main()
