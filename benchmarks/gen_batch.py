"""gen-scan's generation: images/s by batch (1, 8, 32 rows per `generate`), prompts mixed in a batch.

`JanusAdapter.generate_images` takes (prompt, k) rows `batch_size` at a time, across prompts; each
row is one CFG pair (transformers' Janus `generate` runs the conditional and unconditional rows in
one forward). A random Janus of the tiny shape in benchmarks/gpu_bench.py (64 px, 16 image tokens)
on CPU: the figures show how batching amortises the per-step overhead, not real-model speed (for
that, `python benchmarks/gpu_bench.py janus-pro-1b --gen` on a GPU). Usage:
    python benchmarks/gen_batch.py [--batches 1,8,32] [--images 32] [--threads 2]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from _baseline import load
from gpu_bench import GEN_PROMPTS, SHAPES, build_janus

from mllm_audit.models import load_model


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batches", default="1,8,32")
    ap.add_argument("--images", type=int, default=32, help="images in all, split over the prompts")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    folder = Path(tempfile.gettempdir()) / "mllm-audit-bench-janus-tiny"
    if not (folder / "config.json").is_file():
        build_janus(SHAPES["janus-pro-1b"]["tiny"], folder, "cpu", torch.float32)
    adapter = load_model(str(folder))
    per_prompt = max(1, args.images // len(GEN_PROMPTS))
    n = per_prompt * len(GEN_PROMPTS)
    adapter.generate_images(GEN_PROMPTS[:1], 1, seed=0, batch_size=1)  # warm-up
    print(f"tiny Janus (random, {adapter.model.config.vision_config.num_image_tokens} image tokens), {n} images over "
          f"{len(GEN_PROMPTS)} prompts, {args.threads} threads, load {load()}")
    for b in (int(x) for x in args.batches.split(",")):
        t = time.perf_counter()
        imgs = adapter.generate_images(GEN_PROMPTS, per_prompt, seed=0, batch_size=b)
        dt = time.perf_counter() - t
        print(f"  batch {b:3d}: {len(imgs) / dt:7.2f} images/s ({dt:6.2f} s)")
    print(f"  load after {load()}")


if __name__ == "__main__":
    main()
