"""Train the toy world and print what it shows: training time, detection figures, editor figures.

    python benchmarks/toy_world.py [--seed 0] [--steps N] [--ike-rows N] [--model-dir DIR]
                                   [--editors ft-l,ft-v,ike]

With `--model-dir` an already trained folder is measured instead (e.g. `adapters/toy-model`).
Targets (issue 3): training in a minute or two on 2 cores; every planted item biased with an
interval excluding 50 %, mean |margin - planted log-odds| <= 0.5 nats, controls' intervals
covering 50 % and their mean margin within 0.5 of zero; locality answered (top-1) before editing.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


def main() -> None:
    import numpy as np

    from mllm_audit.models import load_model
    from mllm_audit.runs.fix import run_fix
    from mllm_audit.runs.scan import run_scan
    from mllm_audit.runs.score import image_loader
    from mllm_audit.scoring.contract import Request
    from mllm_audit.suites.items import load_suite
    from mllm_audit.toy import world
    from mllm_audit.toy.evaluate import locality_requests, top1_rate
    from mllm_audit.toy.train import IKE_ROWS, _card_yaml, train_toy

    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--ike-rows", type=int, default=IKE_ROWS)
    ap.add_argument("--model-dir", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=None, help="keep the trained model in this folder")
    ap.add_argument("--editors", default="ft-l,ft-v,ike")
    ap.add_argument("--edits", type=int, default=16)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.model_dir
        if folder is None:
            folder = args.out or Path(tmp) / "model"
            rep = train_toy(folder, seed=args.seed, steps=args.steps, ike_rows=args.ike_rows,
                            log=lambda s: print(s, flush=True))
            print(f"trained seed {rep.seed}: {rep.steps} steps in {rep.seconds:.1f} s, final loss {rep.final_loss:.4f}")
        card = Path(tmp) / "card.yaml"
        card.write_text(_card_yaml(str(Path(folder).resolve())), encoding="utf-8")
        adapter = load_model(str(card))
        t0 = time.perf_counter()
        scan = run_scan(model=str(card), suite="toy", output=Path(tmp) / "scan", adapter=adapter)
        print(f"scan: {time.perf_counter() - t0:.1f} s")
        for group, s in scan.results["summary"].items():
            print(f"  {group:15} {s['pct_biased']:6.1f} %  [{s['ci_low']:5.1f}, {s['ci_high']:5.1f}]"
                  f"  mean margin {s['mean_margin']:+.3f}")
        planted = [r for r in scan.samples if r["meta"]["planted"]]
        controls = [r for r in scan.samples if not r["meta"]["planted"]]
        err = np.mean([abs(r["margin"] - r["meta"]["planted_logodds"]) for r in planted])
        print(f"planted biased {sum(r['biased'] for r in planted)}/{len(planted)}, "
              f"mean |margin - planted| {err:.3f} nats, per-item signed error "
              f"{np.mean([r['margin'] - r['meta']['planted_logodds'] for r in planted]):+.3f}")
        print(f"controls mean margin {np.mean([r['margin'] for r in controls]):+.3f}, "
              f"mean |margin| {np.mean([abs(r['margin']) for r in controls]):.3f}")
        suite = load_suite("toy")
        text, mm = locality_requests(suite.items)
        print(f"locality top-1: text {top1_rate(adapter, text, None):.3f} ({len(text)}), "
              f"multimodal {top1_rate(adapter, mm, image_loader(suite)):.3f} ({len(mm)})")
        # Does the vision side see the figure? (training-only perception questions, on suite images)
        seen = {it.image: it.meta["figure"] for it in suite.items if it.meta.get("figure")}
        for bias, question in world.FIGURE_QUESTIONS.items():
            reqs = [Request(question, fig[bias], img, "vqa") for img, fig in sorted(seen.items())]
            print(f"perception top-1 {bias:6}: {top1_rate(adapter, reqs, image_loader(suite)):.3f} ({len(reqs)})")
        for editor in [e for e in args.editors.split(",") if e]:
            res = run_fix(editor=editor, limit=args.edits, output=Path(tmp) / f"fix-{editor}", adapter=adapter)
            m = res.results["metrics"]
            cells = "  ".join(f"{k} {m[k]:.3f}" for k in ("reliability", "t_generality", "v_generality",
                                                        "t_locality_top1", "m_locality_top1") if m.get(k) is not None)
            planted_rel = np.mean([r["reliability"] for r in res.edits if r["meta"].get("planted")])
            print(f"fix {editor:5} ({res.results['n_edits']} edits): {cells}  planted reliability {planted_rel:.3f}",
                  flush=True)


if __name__ == "__main__":
    main()
