"""gen-scan's generation: images/s by batch (1, 8, 32 rows per `generate`), and the same images at every batch.

Two paths over the same prompts, interleaved in one process:
- `per-image` (gen-scan's default): rows (prompt, k) of all prompts, `batch` rows per `generate` whatever
  their prompt, each image drawn from its own generator (models/sampling.py), VQ-decoded in blocks of 8;
- `upstream, one prompt per call` (gen-scan before issue 29, and `--sampler upstream`): each prompt's
  images in batches of at most `batch`, the global generator seeded per batch.
Each transformers Janus `generate` runs the CFG pairs of its rows in one forward over a static KV cache.
A random Janus of the tiny shape in benchmarks/gpu_bench.py (64 px, 16 image tokens) on CPU: the figures
show how batching amortises the per-step overhead, not real-model speed (for that,
`python benchmarks/gpu_bench.py janus-pro-1b --gen` on a GPU). `--record` writes benchmarks/records/gen_batch.json
through benchmarks/_record.py (the README's gen-batch table; `python benchmarks/doc_tables.py --write`). Usage:
    python benchmarks/gen_batch.py [--batches 1,8,32] [--prompts 8] [--per-prompt 8] [--threads 1] [--repeats 2]
                                   [--record]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from _record import Recorder, add_record_option, loadavg
from gpu_bench import SHAPES, build_janus

from mllm_audit.models import load_model
from mllm_audit.models.sampling import generate_rows

ROOT = Path(__file__).resolve().parents[1]
OCCUPATIONS = ["doctor", "nurse", "pilot", "engineer", "teacher", "chef", "lawyer", "farmer", "judge", "dancer",
               "baker", "singer", "driver", "painter", "banker", "writer"]




def main() -> None:
    from mllm_audit.runs.gen_scan import image_seed

    ap = argparse.ArgumentParser()
    ap.add_argument("--batches", default="1,8,32")
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--per-prompt", type=int, default=8, help="images per prompt")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=2, help="timings per path and batch, best kept")
    add_record_option(ap)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    folder = Path(tempfile.gettempdir()) / "mllm-audit-bench-janus-tiny"
    if not (folder / "config.json").is_file():
        build_janus(SHAPES["janus-pro-1b"]["tiny"], folder, "cpu", torch.float32)
    adapter = load_model(str(folder))
    prompts = [f"A photo of the face of a {o}, a person" for o in OCCUPATIONS[: args.prompts]]
    ids = [f"p{i}" for i in range(len(prompts))]
    rows = [(p, image_seed(0, pid, k)) for p, pid in zip(prompts, ids, strict=True) for k in range(args.per_prompt)]
    n = len(rows)
    adapter.generate_images(prompts[:1], 1, seed=0, batch_size=1)  # warm-up
    recorder = Recorder("gen_batch", args.threads)
    load_before = loadavg()
    print(f"tiny Janus (random, {adapter.n_image_tokens} image tokens), {n} images over {len(prompts)} prompts, "
          f"{args.threads} threads, load {load_before}")
    out_rows, pixels_by_batch = [], {}
    for b in (int(x) for x in args.batches.split(",")):
        news, olds = [], []
        for _ in range(args.repeats):  # interleaved, best of: the machine is shared
            t = time.perf_counter()
            imgs = [im for batch in generate_rows(adapter, rows, b) for im in batch]
            news.append(time.perf_counter() - t)
            t = time.perf_counter()
            old = [im for i, p in enumerate(prompts) for im in adapter.generate_images([p], args.per_prompt, i, b)]
            olds.append(time.perf_counter() - t)
        dt_new, dt_old = min(news), min(olds)
        pixels_by_batch[b] = [im.tobytes() for im in imgs]
        assert len(imgs) == len(old) == n
        out_rows.append({"batch": b, "images": n, "per_image_s": dt_new, "per_image_images_per_s": n / dt_new,
                         "upstream_s": dt_old, "upstream_images_per_s": n / dt_old,
                         "upstream_rows_per_call": min(b, args.per_prompt), "per_image_runs_s": news,
                         "upstream_runs_s": olds, "load": loadavg()})
        print(f"  batch {b:3d}: per-image across prompts {n / dt_new:7.2f} images/s ({dt_new:6.2f} s); "
              f"upstream, one prompt per call {n / dt_old:7.2f} images/s ({dt_old:6.2f} s)", flush=True)
    first = next(iter(pixels_by_batch.values()))
    same = all(v == first for v in pixels_by_batch.values())
    print(f"  per-image images identical at every batch: {same}; load after {loadavg()}")
    if args.record:
        recorder.write({"model": {"shape": "janus-pro-1b tiny (benchmarks/gpu_bench.py), random weights",
                                  "image_tokens": adapter.n_image_tokens, "device": "cpu", "dtype": "fp32"},
                        "prompts": len(prompts), "images_per_prompt": args.per_prompt, "repeats": args.repeats,
                        "per_image_identical_across_batches": same, "rows": out_rows})

if __name__ == "__main__":
    main()
