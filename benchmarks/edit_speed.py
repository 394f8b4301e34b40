"""Seconds per edit for FT-L and IKE, on the toy world and on a ~85M BLIP-2 shape.

Each edit's evaluation (reliability, T/V-generality, T/M-locality) goes through one batched
`next_token_logprobs` call, so its cost is a handful of forwards. Usage:
    python benchmarks/edit_speed.py [--edits 8] [--threads 2] [--skip-large] [--record]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _record import Recorder, add_record_option
from _shapes import blip2_100m
from PIL import Image

from mllm_audit.models import load_model
from mllm_audit.runs.fix import run_fix


def synthetic_suite(folder: Path, n: int) -> Path:
    """n items with every editing split, over random 256 px images."""
    rng = np.random.default_rng(0)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    for k in range(n + 2):
        Image.fromarray(rng.integers(0, 255, (256, 256, 3), dtype=np.uint8)).save(folder / "images" / f"{k}.png")
    lines = []
    for k in range(n):
        lines.append(json.dumps({
            "id": f"e{k}", "task": "vqa", "bias_type": "gender", "image": f"images/{k}.png",
            "prompt": "Is this person a doctor or a nurse?", "y_more": "doctor", "y_less": "nurse",
            "rephrase_prompt": "Is this a doctor or a nurse?", "rephrase_image": f"images/{k + 1}.png",
            "loc_prompt": "The capital of France is", "loc_answer": "Paris",
            "m_loc_image": f"images/{k + 2}.png", "m_loc_prompt": "What colour is the background?",
            "m_loc_answer": "red", "split": "train" if k < 4 else "eval",
        }))
    (folder / "items.jsonl").write_text("\n".join(lines) + "\n")
    return folder / "items.jsonl"


def bench(label: str, model: str, suite: str, edits: int, adapter=None) -> dict:  # noqa: ANN001
    adapter = adapter or load_model(model)
    fig: dict = {"label": label, "parameters_m": round(sum(p.numel() for p in adapter.model.parameters()) / 1e6, 2)}
    for editor in ("ft-l", "ike"):
        with tempfile.TemporaryDirectory() as out:
            t = time.perf_counter()
            res = run_fix(model=model, suite=suite, editor=editor, all_items=True, limit=edits,
                          output=Path(out), adapter=adapter)
            dt = time.perf_counter() - t
            m = res.results["metrics"]
            per = res.results["timings"]["s_per_edit"]
            print(f"{label:22} {editor:5} {res.results['n_edits']:3d} edits  {per:7.3f} s/edit"
                  f"  (wall {dt:6.1f} s; reliability {m['reliability']:.2f})")
            fig[editor] = {"edits": res.results["n_edits"], "s_per_edit": per, "reliability": m["reliability"]}
    return fig


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--edits", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--skip-large", action="store_true")
    add_record_option(ap)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rec = Recorder("edit_speed", args.threads)
    rows = [bench("toy world", "toy", "toy", args.edits)]
    if not args.skip_large:
        tmp = Path(tempfile.gettempdir())
        model_dir = blip2_100m(tmp / "mllm-audit-bench-blip2-100m")
        suite = synthetic_suite(tmp / "mllm-audit-bench-edit-suite", args.edits + 4)
        rows.append(bench("BLIP-2 shape, 80M", str(model_dir), str(suite), args.edits))
    if args.record:
        rec.write({"models": rows})


if __name__ == "__main__":
    main()
