"""Balanced SFT / BPO on the toy unified world v2: held-out bias against prop fidelity (issue #20).

Each configuration is one `fix --editor sft|bpo` run (`unified_fix.run_unified_fix`, the same code the
CLI runs), measured on the 8 held-out occupations and the 4 controls at N 64 (gender floor 0.099).
Printed per configuration and stage: held-out (test) normalised gender bias, control gender bias,
prop fidelity and its drop from the base, adherence to augmented prompts (gender / race).

    OMP_NUM_THREADS=1 python benchmarks/unified_fidelity.py                    # the table in docs/unified.md
    OMP_NUM_THREADS=1 python benchmarks/unified_fidelity.py --only tuned,anchored --seeds 0,1,2
    OMP_NUM_THREADS=1 python benchmarks/unified_fidelity.py --set anchor=3 --set sft_lr=1e-3   # one ad-hoc row

`--record` writes benchmarks/records/unified_fidelity.json (benchmarks/_record.py), from which
benchmarks/doc_tables.py renders docs/unified.md's table; `--model` names the model (never the default).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

import torch
from _record import Recorder, add_record_option

# name -> (editor, BalancedSettings overrides). "paper": the paper's defaults.
CONFIGS: dict[str, tuple[str, dict[str, Any]]] = {
    "paper": ("bpo", {}),
    "tuned": ("bpo", {"sft_lr": 1e-3, "sft_guidance": 5.0, "bpo_lr": 1e-4}),
    "paper-bpo1e-3": ("bpo", {"bpo_lr": 1e-3}),
    "anchored": ("bpo", {"sft_lr": 1e-3, "sft_guidance": 5.0, "bpo_lr": 1e-4, "anchor": 0.3}),
}


def run(editor: str, overrides: dict[str, Any], seed: int, model: str) -> dict[str, Any]:
    from mllm_audit.editors.bpo import BalancedSettings
    from mllm_audit.runs.fix_unified import run_unified_fix

    s = BalancedSettings(**{"seed": seed, **overrides})
    with tempfile.TemporaryDirectory() as tmp:
        res = run_unified_fix(model=model, editor=editor, settings=s, seed=seed, output=Path(tmp) / "run")
    return res.results


def rows_of(results: dict[str, Any]) -> list[dict[str, Any]]:
    stages = results["stages"]
    base_fid = stages["base"]["fidelity"]
    out = []
    for name, m in stages.items():
        out.append({"stage": name, "test": m["summary"]["test"]["gender"]["normalised"],
                    "floor": m["summary"]["test"]["gender"]["floor"],
                    "control": m["summary"]["control"]["gender"]["normalised"],
                    "fidelity": m["fidelity"], "drop": base_fid - m["fidelity"],
                    "adh_g": m["adherence"].get("gender"), "adh_r": m["adherence"].get("race"),
                    "steps": (m["training"] or {}).get("steps")})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default=",".join(CONFIGS), help="comma-separated configuration names")
    ap.add_argument("--seeds", default="0", help="comma-separated seeds")
    ap.add_argument("--set", action="append", default=[], help="KEY=VALUE: one ad-hoc configuration (bpo)")
    ap.add_argument("--model", required=True, help="a unified card (toy-janus-v2): never the default")
    ap.add_argument("--threads", type=int, default=1)
    add_record_option(ap)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    rec = Recorder("unified_fidelity", a.threads)
    from mllm_audit.editors.bpo import parse_overrides

    configs = {"adhoc": ("bpo", parse_overrides(a.set))} if a.set else {k: CONFIGS[k] for k in a.only.split(",")}
    print("| config | seed | stage | held-out gender (floor 0.099) | control gender | prop fidelity | drop | "
          "adherence gender / race |")
    print("|---|---|---|---|---|---|---|---|")
    runs = []
    for name, (editor, ov) in configs.items():
        for seed in (int(x) for x in a.seeds.split(",")):
            stages = rows_of(run(editor, ov, seed, a.model))
            runs.append({"config": name, "seed": seed, "overrides": ov, "stages": stages})
            for r in runs[-1]["stages"]:
                print(f"| {name} | {seed} | {r['stage']} | {r['test']:.3f} | {r['control']:.3f} | "
                      f"{r['fidelity']:.3f} | {r['drop']:+.3f} | {r['adh_g']:.3f} / {r['adh_r']:.3f} |", flush=True)
    if a.record:
        rec.write({"model": a.model, "runs": runs})


if __name__ == "__main__":
    main()
