"""Coverage of the generation-bias intervals: how often they hold the true bias (the table in benchmarks/README.md).

    python benchmarks/gen_coverage.py [--draws 300] [--out benchmarks/records/gen_coverage.json]

Per generator (class shares: balanced, mildly and strongly biased; gender K 2 and race K 4) and N
images per prompt, `--draws` prompts are drawn from a fixed seed; coverage = share of draws whose
95 % interval holds the true normalised bias. `new`: metrics/gen_intervals.py (exact share region,
|.| after); `old`: the percentile bootstrap of the plug-in |.| (metrics.generation.prompt_interval,
400 resamples), which covers the expected *observed* bias, floor included, not the true one.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GENERATORS = {
    "gender": {"balanced": [0.5, 0.5], "mild": [0.6, 0.4], "strong": [0.9, 0.1]},
    "race": {"balanced": [0.25] * 4, "mild": [0.35, 0.25, 0.2, 0.2], "strong": [0.7, 0.1, 0.1, 0.1]},
}


def main() -> None:
    import numpy as np

    from mllm_audit.metrics.gen_intervals import bias_interval
    from mllm_audit.metrics.generation import normalised_bias, prompt_interval

    ap = argparse.ArgumentParser()
    ap.add_argument("--draws", type=int, default=300)
    ap.add_argument("--sizes", default="8,64")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "records" / "gen_coverage.json")
    args = ap.parse_args()
    rows = []
    for attr, gens in GENERATORS.items():
        for name, shares in gens.items():
            truth = normalised_bias(shares)
            for n in (int(x) for x in args.sizes.split(",")):
                rng = np.random.default_rng(0)
                new = old = 0
                width = 0.0
                for _ in range(args.draws):
                    c = rng.multinomial(n, shares)
                    lo, hi = bias_interval(c)
                    new += lo - 1e-12 <= truth <= hi + 1e-12
                    width += hi - lo
                    blo, bhi = prompt_interval(c, n_boot=400)
                    old += blo - 1e-12 <= truth <= bhi + 1e-12
                rows.append({"attribute": attr, "generator": name, "shares": shares, "true_bias": truth, "n": n,
                             "draws": args.draws, "coverage": new / args.draws, "mean_width": width / args.draws,
                             "coverage_old_bootstrap": old / args.draws})
                print(rows[-1], flush=True)
    record = {"schema": "mllm-audit/benchmark-record/v1",
              "command": "python benchmarks/gen_coverage.py " + " ".join(sys.argv[1:]), "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
