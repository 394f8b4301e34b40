"""Cost of the model identity: full sha256 of a weight file, cold (no sidecar entry) and warm (cache hit).

A run's identity hashes every byte of every weight, config and tokenizer file; the sidecar cache
(util/identity.py, keyed by path, size, mtime and inode) makes the second run of the same files
read only the cache. Usage:
    python benchmarks/hash_speed.py [--gib 1.0] [--dir /tmp] [--record]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from _record import Recorder, add_record_option

from mllm_audit.util.identity import HashCache


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--gib", type=float, default=1.0, help="size of the weight file in GiB")
    ap.add_argument("--dir", default=tempfile.gettempdir(), help="where to write it (needs that much free space)")
    add_record_option(ap)
    args = ap.parse_args()
    rec = Recorder("hash_speed", 1)
    size = int(args.gib * (1 << 30))
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        weights = Path(tmp) / "model.safetensors"
        block = os.urandom(1 << 20)
        with open(weights, "wb") as f:
            for _ in range(size // len(block)):
                f.write(block)
        cache_file = Path(tmp) / "hashes.json"
        t0 = time.perf_counter()
        cold = HashCache(cache_file)
        digest = cold.sha256(weights)
        cold.save()
        t_cold = time.perf_counter() - t0
        t0 = time.perf_counter()
        warm = HashCache(cache_file)  # a later run: a new process reads the sidecar
        assert warm.sha256(weights) == digest and warm.hits == 1
        t_warm = time.perf_counter() - t0
    gib = size / (1 << 30)
    print(f"sha256 of a {gib:.2f} GiB weight file: cold {t_cold:.2f} s ({gib / t_cold * 1024:.0f} MiB/s), "
          f"warm (sidecar cache) {t_warm * 1000:.2f} ms")
    if args.record:
        rec.write({"gib": gib, "cold_s": t_cold, "cold_mib_per_s": gib / t_cold * 1024, "warm_ms": t_warm * 1000})


if __name__ == "__main__":
    main()
