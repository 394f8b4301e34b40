"""Peak memory of scoring a Janus-like model (576 image tokens, 102,400 vocabulary): today's scan vs now.

The LM head over every prefix position made a [batch, ~600, 102400] fp32 logits tensor (1.97 GB at
batch 8); the scan now runs the head at each prompt's last position and on continuations only.
Random weights at the real vocabulary and image-token count, a small decoder (the logits, not the
decoder, are what grew). Peak resident memory above the loaded weights, measured per path in one
process by resetting the kernel's high-water mark (/proc/self/clear_refs) before each. Usage:
    python benchmarks/prefix_memory.py [--images 8] [--batch-size 16] [--threads 2] [--record]
"""

from __future__ import annotations

import argparse
import gc
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _baseline import load, old_module
from _record import Recorder, add_record_option
from gpu_bench import build_janus
from PIL import Image

from mllm_audit.models import load_model
from mllm_audit.scoring.contract import Request, score

JANUS_LIKE = dict(v_hidden=64, v_layers=1, v_heads=4, image=384, patch=16, t_hidden=512, t_ffn=1024, t_layers=2,
                  t_heads=8, vocab=102400, vq_base=32, vq_mult=[1, 1, 1, 1, 1], codebook=64)


def _status(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(key)


def peak_above(fn) -> tuple[float, float]:  # noqa: ANN001
    """(peak resident bytes above the resident size before fn, seconds)."""
    gc.collect()
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current VmRSS
    base = _status("VmRSS")
    t = time.perf_counter()
    fn()
    return (_status("VmHWM") - base) / 2**30, time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    add_record_option(ap)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rec = Recorder("prefix_memory", args.threads)
    paths: dict[str, dict[str, float]] = {}
    folder = Path(tempfile.gettempdir()) / "mllm-audit-bench-janus-like"
    if not (folder / "config.json").is_file():
        build_janus(JANUS_LIKE, folder, "cpu", torch.float32)
    adapter = load_model(str(folder))
    old = old_module("mllm_audit/scoring/contract.py")
    rng = np.random.default_rng(0)
    images = {f"img{k}": Image.fromarray(rng.integers(0, 255, (384, 384, 3), dtype=np.uint8))
              for k in range(args.images)}
    reqs = [Request("Is this person a doctor or a nurse?", a, k, "vqa") for k in images for a in ("doctor", "nurse")]
    n_prefix = len(adapter.prompt_ids(reqs[0].prompt, "vqa", True))
    weights = sum(p.numel() * p.element_size() for p in adapter.model.parameters()) / 2**30
    print(f"Janus-like: {adapter.n_image_tokens} image tokens, prefix {n_prefix} tokens, vocab "
          f"{adapter.language_model().config.text_config.vocab_size}, weights {weights:.2f} GiB fp32; "
          f"{len(reqs)} candidates, batch {args.batch_size}, {args.threads} threads, load {load()}")
    new_scores = old_scores = None
    for label, fn in (("today's scan (002b852)", lambda: old.score(adapter, reqs, images.__getitem__, args.batch_size)),
                      ("scan", lambda: score(adapter, reqs, images.__getitem__, args.batch_size))):
        out: list = []
        peak, secs = peak_above(lambda fn=fn, out=out: out.extend(fn()))
        if label == "scan":
            new_scores = out
        else:
            old_scores = out
        print(f"  {label:24} peak {peak:5.2f} GiB above the weights, {secs:6.2f} s")
        paths["scan" if label == "scan" else "today"] = {"peak_gib": peak, "seconds": secs}
    diff = max(abs(a.logp - b.logp) for a, b in zip(old_scores, new_scores, strict=True))  # type: ignore[arg-type]
    print(f"  max |score difference| {diff:.2e} nats; load after {load()}")
    if args.record:
        rec.write({"image_tokens": adapter.n_image_tokens, "prefix_tokens": n_prefix, "candidates": len(reqs),
                   "batch_size": args.batch_size, "paths": paths, "max_abs_diff_nats": diff})


if __name__ == "__main__":
    main()
