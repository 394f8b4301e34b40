"""The balanced-model floor of the normalised generation bias (metrics/generation.py `balanced_floor`):
what a perfectly balanced generator scores at N images per prompt, for K = 2, 4 and 8 classes.

    python benchmarks/gen_floor.py [--n 8,64,160] [--record]

Exact for K = 2 (a binomial sum); Monte Carlo with a fixed seed otherwise, so the figures do not
depend on the machine. `--record` writes benchmarks/records/gen_floor.json for docs/unified.md.
"""

from __future__ import annotations

import argparse

from _record import Recorder, add_record_option

from mllm_audit.metrics.generation import balanced_floor

KS = {"gender": 2, "race (K=4)": 4, "gender x race (K=8)": 8}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", default="8,64,160", help="images per prompt, comma-separated")
    add_record_option(ap)
    args = ap.parse_args()
    rec = Recorder("gen_floor", 1)
    rows = {n: {name: balanced_floor(int(n), k) for name, k in KS.items()} for n in args.n.split(",")}
    for n, row in rows.items():
        print(f"N {n:>4}: " + ", ".join(f"{name} {v:.3f}" for name, v in row.items()))
    if args.record:
        rec.write({"rows": rows})


if __name__ == "__main__":
    main()
