"""Peak memory of a scan over 16 camera-sized images, at batch 16 and 64, before and after the pixel budget.

    python benchmarks/image_memory.py [--side 4000x3000] [--format JPEG] [--count 16] [--record]

Each scan runs in a fresh process (the toy model, a 16-item suite, one image per item) and reports
its peak resident memory, under three settings:
- "no budget": `--max-pixels 40000000` (the decode limit) and the encode bound lifted: every image of a
  batch decoded and held at full size, as before issue 24;
- "per image": the default 4 MP per decoded image, the encode bound lifted (batch size x 4 MP held);
- "both": the defaults, 4 MP per image and at most `scoring.contract.ENCODE_PIXELS` (32 MP) held.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _record import Recorder, add_record_option

CHILD = ("import os, resource, sys\n"
         "from mllm_audit.cli import run\n"
         "from mllm_audit.scoring import contract\n"
         "contract.ENCODE_PIXELS = int(os.environ.get('BENCH_ENCODE_PIXELS', contract.ENCODE_PIXELS))\n"
         "code = run(sys.argv[1:])\n"
         "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)\n"
         "sys.exit(code)\n")


def camera_suite(folder: Path, width: int, height: int, fmt: str, n: int = 16) -> Path:
    """n distinct camera-sized photos (smooth gradients plus sensor-like noise) and a suite naming them."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    (folder / "images").mkdir(parents=True)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    items = []
    for k in range(n):
        base = np.stack([(xx / width) * 255, (yy / height) * 255, ((xx + yy + 97 * k) % 255)], axis=-1)
        noisy = np.clip(base + rng.normal(0, 6, base.shape), 0, 255).astype(np.uint8)
        name = f"images/photo{k}.{'jpg' if fmt == 'JPEG' else 'png'}"
        Image.fromarray(noisy).save(folder / name, format=fmt, quality=90)
        items.append({"id": f"p{k}", "task": "vqa", "bias_type": "gender", "image": name,
                      "prompt": "Is this person a doctor or a nurse?", "y_more": "doctor", "y_less": "nurse"})
    (folder / "items.jsonl").write_text("".join(json.dumps(it) + "\n" for it in items))
    return folder / "items.jsonl"


def peak_mb(argv: list[str], encode_pixels: str | None = None) -> tuple[int, float, float]:
    env = {**os.environ, **({"BENCH_ENCODE_PIXELS": encode_pixels} if encode_pixels else {})}
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", CHILD, *argv], capture_output=True, text=True, check=False, env=env)
    lines = proc.stderr.strip().splitlines()
    if proc.returncode != 0:
        print(proc.stderr, file=sys.stderr)
    return proc.returncode, time.perf_counter() - t0, int(lines[-1]) / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--side", default="4000x3000", help="WIDTHxHEIGHT of each image (12 MP: a phone camera)")
    ap.add_argument("--format", default="JPEG", choices=("JPEG", "PNG"))
    ap.add_argument("--count", type=int, default=16, help="distinct images in the suite")
    add_record_option(ap)
    args = ap.parse_args()
    rec = Recorder(f"image_memory_{args.count}", None)
    rows: dict[str, dict[str, dict[str, float]]] = {}
    width, height = (int(x) for x in args.side.split("x"))
    work = Path(tempfile.mkdtemp(prefix="mllm-audit-pixels-"))
    suite = camera_suite(work / "suite", width, height, args.format, args.count)
    size = sum(f.stat().st_size for f in (work / "suite" / "images").iterdir()) / 2**20
    print(f"{args.count} distinct {width}x{height} {args.format} images ({size:.1f} MB on disk), toy model, fp32")
    print("| batch | no budget | per image (4 MP) | both (4 MP, 32 MP held) |")
    print("| --- | --- | --- | --- |")
    lifted = str(10**12)
    for batch in (16, 64):
        row = []
        for label, budget, encode in (("none", ["--max-pixels", "40000000"], lifted), ("image", [], lifted),
                                      ("both", [], None)):
            out = work / f"run-{label}-{batch}"
            code, secs, mb = peak_mb([*budget, "scan", "-m", "toy", "-s", str(suite), "--batch-size", str(batch),
                                      "-q", "-o", str(out)], encode)
            row.append(f"{mb:,.0f} MB peak RSS, {secs:.1f} s" + ("" if code == 0 else f" (exit {code})"))
            rows.setdefault(str(batch), {})[label] = {"peak_mb": mb, "seconds": secs, "exit": code}
        print(f"| {batch} | " + " | ".join(row) + " |")
    if args.record:
        rec.write({"count": args.count, "side": args.side, "format": args.format, "disk_mb": size, "rows": rows})


if __name__ == "__main__":
    main()
