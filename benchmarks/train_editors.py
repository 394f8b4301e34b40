"""Training time of each learned editor on the toy world, and seconds per edit when `fix` uses it.

    python benchmarks/train_editors.py [--model toy] [--suite toy] [--steps N] [--editors mend,ke,serac]

Target: each editor trains in under 5 minutes on 2 CPU cores (one torch thread). Prints one line
per editor: training seconds, steps run, and the fix metrics on the eval split with s/edit.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


def main() -> None:
    import torch

    from mllm_audit.models import load_model
    from mllm_audit.runs.fix import run_fix
    from mllm_audit.runs.train_editor import train_editor

    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="toy")
    ap.add_argument("--suite", default="toy")
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--editors", default="mend,ke,serac")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    adapter = load_model(args.model)
    print(f"{'editor':7} {'train_s':>8} {'steps':>6} {'rel':>6} {'t_gen':>6} {'v_gen':>6} {'t_loc':>6} "
          f"{'m_loc':>6} {'s/edit':>7}")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.editors.split(","):
            t0 = time.perf_counter()
            res = train_editor(name, model=args.model, suite=args.suite, output=Path(tmp) / name, steps=args.steps,
                               adapter=adapter, threads=args.threads)
            train_s = time.perf_counter() - t0
            fix = run_fix(model=args.model, suite=args.suite, editor=name, editor_state=Path(tmp) / name,
                          output=Path(tmp) / f"{name}-run", adapter=adapter)
            m = fix.results["metrics"]

            def f(k: str, m: dict = m) -> str:
                return "—" if m.get(k) is None else f"{m[k]:.3f}"

            print(f"{name:7} {train_s:8.1f} {res.steps_run:6d} {f('reliability'):>6} {f('t_generality'):>6} "
                  f"{f('v_generality'):>6} {f('t_locality_top1'):>6} {f('m_locality_top1'):>6} "
                  f"{fix.results['timings']['s_per_edit']:7.4f}", flush=True)


if __name__ == "__main__":
    main()
