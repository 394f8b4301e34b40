"""FT-L seconds and FLOPs per edit on the 389M BLIP-2 shape: today's path vs frozen layers cached.

Today's path (002b852): every AdamW step runs every decoder layer and the LM head at every
position, and AdamW updates tensor by tensor. Now: the layers below the edited one run once per
edit (editors/cache.py), the head only where the loss reads it (scoring/differentiable.py), and
AdamW is fused (one kernel over the edited tensors, the same update to float rounding).

Measured: the edit itself (`FineTune.apply` at EasyEdit's settings, whole last layer, lr 2e-4),
with the loss stop off so that every edit takes `--steps` (13 by default, the average issue 29
measured; random weights would stop early); old and new interleaved in one process; FLOPs by
FlopCounterMode (load-independent), then time. The edited weights are compared: cached and
uncached on the same head must agree to 1e-6. Usage:
    python benchmarks/ftl_speed.py [--shape 389m] [--edits 2] [--threads 2] [--record]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _baseline import load, old_module
from _record import Recorder, add_record_option
from _shapes import blip2_shape
from PIL import Image
from torch.utils.flop_counter import FlopCounterMode

import mllm_audit.scoring.differentiable as differentiable
from mllm_audit.editors.base import EditContext, EditRequest
from mllm_audit.editors.ft import ft_l
from mllm_audit.models import load_model

PROMPTS = [("Is this person a doctor or a nurse?", "nurse", "doctor"), ("What is this person's job?", "pilot", "nurse")]


def edit(adapter: Any, req: EditRequest, images: dict[str, Image.Image], old: Any | None, cache: bool,
         steps: int) -> tuple[dict, int]:
    """One FT-L edit, restored after; old = today's differentiable module (head at every position)."""
    saved, adamw = differentiable.logprob_tensor, torch.optim.AdamW
    if old is not None:  # today: the head at every position, per-tensor AdamW, no cache
        differentiable.logprob_tensor = old.logprob_tensor
        torch.optim.AdamW = lambda params, fused=None, **kw: adamw(params, **kw)  # type: ignore[misc]
    try:
        editor = ft_l()
        opts = {"cache_frozen": cache, "steps": steps, "stop_loss": None}
        done = editor.apply(adapter, [req], EditContext(load_image=images.__getitem__, options=opts))
    finally:
        differentiable.logprob_tensor, torch.optim.AdamW = saved, adamw
    params = dict(adapter.model.named_parameters())
    after = {n: params[n].detach().clone() for n in done.touched}
    done.restore()
    return after, editor.steps_taken


def _diff(a: dict, b: dict) -> float:
    return max(float((a[n] - b[n]).abs().max()) for n in a)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shape", default="389m")
    ap.add_argument("--edits", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=13, help="AdamW steps per edit (loss stop off; 13 as measured)")
    add_record_option(ap)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rec = Recorder("ftl_speed", args.threads)
    adapter = load_model(str(blip2_shape(args.shape, Path(tempfile.gettempdir()))))
    old = old_module("mllm_audit/scoring/differentiable.py")
    rng = np.random.default_rng(0)
    images = {f"img{k}": Image.fromarray(rng.integers(0, 255, (256, 256, 3), dtype=np.uint8))
              for k in range(args.edits)}
    reqs = [EditRequest(f"e{k}", *PROMPTS[k % len(PROMPTS)], f"img{k}", "vqa") for k in range(args.edits)]
    n_params = sum(p.numel() for p in adapter.model.parameters())
    print(f"FT-L on the BLIP-2 {args.shape} shape ({n_params / 1e6:.1f}M parameters), {args.edits} edits, "
          f"{args.threads} threads")
    paths = {"today": (old, False), "head where read": (None, False), "cached": (None, True)}
    fl: dict[str, int] = {}
    got: dict[str, dict] = {}
    for label, (o, c) in paths.items():
        with FlopCounterMode(display=False) as fc:
            got[label], steps = edit(adapter, reqs[0], images, o, c, args.steps)
        fl[label] = fc.get_total_flops()
        print(f"  {label:16} {fl[label] / 1e9:8.1f} GFLOP for one edit ({steps} AdamW steps)")
    print(f"  FLOPs per edit: {fl['today'] / fl['cached']:.2f}x fewer than today")
    same, today = _diff(got["cached"], got["head where read"]), _diff(got["cached"], got["today"])
    print(f"  max |edited weight difference|: cached vs uncached (same head) {same:.1e}; vs today {today:.1e} "
          "(Adam's first steps move each weight by about lr * sign(grad): weights whose gradient is rounding "
          "noise differ by up to 2 lr = 4e-4)")
    times: dict[str, list[float]] = {"today": [], "cached": []}
    loads = [load()]
    for req in reqs:
        for label in times:
            t = time.perf_counter()
            edit(adapter, req, images, *paths[label], args.steps)
            times[label].append(time.perf_counter() - t)
        loads.append(load())
    per = {k: sum(v) / len(v) for k, v in times.items()}
    print(f"  seconds per edit ({args.threads} threads, interleaved; load averages {' -> '.join(loads)}):")
    ratio = per["today"] / per["cached"]
    print(f"    today's path {per['today']:.2f} s, now {per['cached']:.2f} s: {ratio:.2f}x faster")
    if args.record:
        rec.write({"shape": args.shape, "parameters_m": round(n_params / 1e6, 1), "edits": args.edits,
                   "steps": args.steps, "gflop_per_edit": {k: v / 1e9 for k, v in fl.items()},
                   "max_weight_diff": {"cached_vs_uncached": same, "cached_vs_today": today},
                   "seconds_per_edit": per, "loads": loads})


if __name__ == "__main__":
    main()
