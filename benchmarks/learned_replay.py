"""MEND training with frozen layers replayed (editors/cache.py through Data.forward), against every layer
each step; and the seconds of one MEND edit (edit application runs each forward once: nothing to replay).

On the issue-29 56M BLIP-2 shape (benchmarks/_shapes.py; OPT 512 x 6, MEND's EasyEdit variant edits the
last three decoder layers' MLPs, so three decoder layers are frozen below them; text features are cached
by Data either way), 4 items, interleaved, best of `--repeats`. Usage:
    python benchmarks/learned_replay.py [--threads 1] [--repeats 3]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from _shapes import blip2_shape
from edit_speed import synthetic_suite


def main() -> None:
    from mllm_audit.editors.base import EditContext
    from mllm_audit.editors.learned.mend import MEND
    from mllm_audit.editors.learned.objective import Data, edit_request
    from mllm_audit.models import load_model
    from mllm_audit.runs.score import image_loader
    from mllm_audit.suites.items import load_suite

    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    root = Path(tempfile.gettempdir())
    adapter = load_model(str(blip2_shape("56m", root)))
    suite = load_suite(synthetic_suite(root / "mllm-audit-bench-replay-suite", 8))
    items, load = suite.items[:4], image_loader(suite)
    ed = MEND()
    ed.setup(adapter, {})
    for p in adapter.model.parameters():
        p.requires_grad_(False)
    whole, replay = Data(adapter, load), Data(adapter, load, replay_bytes=2 << 30)
    for d in (whole, replay):  # first visit: features cached, frozen layers recorded
        ed.train_loss(adapter, items, d)[0].backward()
    t_whole, t_replay = [], []
    for _ in range(args.repeats):
        for d, ts in ((whole, t_whole), (replay, t_replay)):
            t = time.perf_counter()
            loss, _ = ed.train_loss(adapter, items, d)
            loss.backward()
            ts.append((time.perf_counter() - t) / len(items))
    a, b = min(t_whole), min(t_replay)
    print(f"MEND training, s per item (forward + backward): every layer {a:.3f}, frozen layers replayed {b:.3f} "
          f"({a / b:.2f}x); replay holds {replay.replay.held / 2**20:.1f} MiB for {len(items)} items")
    ed.net.eval()
    ctx = EditContext(load_image=load)
    times = []
    for it in items:
        t = time.perf_counter()
        ed.apply(adapter, [edit_request(it)], ctx).restore()
        times.append(time.perf_counter() - t)
    print(f"MEND edit application: {min(times):.3f} s/edit (best of {len(items)}; one forward + one backward)")


if __name__ == "__main__":
    main()
