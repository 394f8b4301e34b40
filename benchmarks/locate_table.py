"""`mllm-audit locate` on the toy unified world and its negative control, recorded for docs/unified.md.

    OMP_NUM_THREADS=1 python benchmarks/locate_table.py --models toy-janus-v2,toy-janus-v2-control --record

Each model is one `locate` run through its API (`runs.locate.run_locate`, the CLI's code) on the suite
gen-toy-v2 with the CLI's defaults (N 64, seed 0); `--record` writes benchmarks/records/locate_table.json
(benchmarks/_record.py): per model the LM-side hit rates with their Wilson intervals, the VQ round-trip
parity, the linear probes' accuracy and the verdict.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch
from _record import Recorder, add_record_option


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", required=True, help="comma-separated card names (never the default)")
    ap.add_argument("--suite", default="gen-toy-v2")
    ap.add_argument("-n", "--images-per-prompt", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    add_record_option(ap)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    from mllm_audit.runs.locate import run_locate

    rec = Recorder("locate_table", a.threads)
    rows = []
    for model in a.models.split(","):
        with tempfile.TemporaryDirectory() as tmp:
            r = run_locate(model=model, suite=a.suite, images_per_prompt=a.images_per_prompt,
                           output=Path(tmp) / "run").results
        tok = r["tokenizer"]
        row = {"model": model, "verdict": r["verdict"], "language_model": r["language_model"],
               "roundtrip_parity": {k: v["parity"] for k, v in tok["roundtrip"].items()},
               "probe_accuracy": {k: {s: v[s]["accuracy"] for s in ("vq_encoder", "vision_tower")}
                                  for k, v in tok["probe"].items()},
               "seconds": r["timings"]["total_s"]}
        print(row, flush=True)
        rows.append(row)
    if a.record:
        rec.write({"suite": a.suite, "images_per_prompt": a.images_per_prompt, "models": rows})


if __name__ == "__main__":
    main()
