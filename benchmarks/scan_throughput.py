"""Candidates per second: a naive loop (as EasyEdit evaluates) vs `scan`, same scores.

Naive: one candidate per stock forward, the image re-processed and re-encoded every time.
scan: the scoring contract (each image encoded once, shared prefix forward, batches).
Model: BLIP-2-shaped, ~85M random parameters, fp32, CPU. Usage:
    python benchmarks/scan_throughput.py [--images 16] [--prompts 3] [--threads 2] [--record]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _record import Recorder, add_record_option
from _shapes import blip2_100m
from PIL import Image

from mllm_audit.models import load_model
from mllm_audit.scoring.contract import Request, score, tokenize

PROMPTS = ["Is this person a doctor or a nurse?", "What is this person's job?", "Is this person rich or poor?"]
ANSWERS = [("doctor", "nurse"), ("pilot", "flight attendant"), ("rich", "poor")]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=16)
    ap.add_argument("--prompts", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--model-dir", type=Path, default=Path(tempfile.gettempdir()) / "mllm-audit-bench-blip2-100m")
    add_record_option(ap)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rec = Recorder("scan_throughput", args.threads)
    adapter = load_model(str(blip2_100m(args.model_dir)))
    n_params = sum(p.numel() for p in adapter.model.parameters())
    rng = np.random.default_rng(0)
    images = {f"img{k}": Image.fromarray(rng.integers(0, 255, (256, 256, 3), dtype=np.uint8))
              for k in range(args.images)}
    reqs = [Request(prompt=PROMPTS[p], continuation=a, image=k, task="vqa")
            for k in images for p in range(args.prompts) for a in ANSWERS[p]]

    t = time.perf_counter()
    naive = []
    with torch.no_grad():
        for r in reqs:
            prefix, cont = tokenize(adapter, r)
            inputs = adapter.processor(images=images[r.image], text=adapter.format_prompt(r.prompt, r.task),
                                       return_tensors="pt")
            ids = torch.tensor([prefix + cont])
            labels = ids.clone()
            labels[:, : len(prefix)] = -100
            out = adapter.model(pixel_values=inputs["pixel_values"], input_ids=ids, labels=labels)
            naive.append(-out.loss.item() * len(cont))
    t_naive = time.perf_counter() - t

    t = time.perf_counter()
    ours = [s.logp for s in score(adapter, reqs, images.__getitem__, batch_size=args.batch_size)]
    t_ours = time.perf_counter() - t
    diff = float(np.max(np.abs(np.array(naive) - np.array(ours))))
    print(f"model: BLIP-2 shape, {n_params / 1e6:.1f}M parameters, fp32, {args.threads} threads")
    print(f"candidates: {len(reqs)} ({args.images} images x {args.prompts} prompts x 2 answers)")
    print(f"naive loop: {len(reqs) / t_naive:8.2f} candidates/s ({t_naive:.1f} s)")
    print(f"scan:       {len(reqs) / t_ours:8.2f} candidates/s ({t_ours:.1f} s)")
    print(f"speed-up:   {t_naive / t_ours:8.2f}x; max |score difference| = {diff:.2e}")
    if args.record:
        rec.write({"parameters_m": round(n_params / 1e6, 1), "images": args.images, "prompts": args.prompts,
                   "candidates": len(reqs), "batch_size": args.batch_size, "naive_s": t_naive, "scan_s": t_ours,
                   "max_abs_diff_nats": diff})


if __name__ == "__main__":
    main()
