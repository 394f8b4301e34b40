"""The architecture table's tolerance column: max |tool score - stock forward with labels| per architecture.

Same tiny models, requests and reference as tests/models/test_generic.py (fp32, with and without images,
images of two sizes in one batch), the largest difference with and without an image apart.
Run: python benchmarks/generic_conformance.py [--record]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "models"))

from _record import Recorder, add_record_option  # noqa: E402


def main() -> None:
    import torch

    ap = argparse.ArgumentParser()
    add_record_option(ap)
    args = ap.parse_args()
    rec = Recorder("generic_conformance", torch.get_num_threads())
    from test_generic import _images, _requests, load_generic, stock

    from mllm_audit.models.cards import GENERIC_ARCHITECTURES
    from mllm_audit.scoring.contract import score

    imgs, reqs = _images(), _requests(40)
    print("| model_type | requests | max abs diff | with image | without | image tokens (per image) |")
    print("|---|---|---|---|---|---|")
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for arch in sorted(GENERIC_ARCHITECTURES):
            adapter = load_generic(arch, Path(tmp))
            got = score(adapter, reqs, imgs.__getitem__, batch_size=8)
            diffs = [(r.image is not None, abs(s.logp - stock(adapter, r, imgs)))
                     for r, s in zip(reqs, got, strict=True)]
            with_img = max((d for i, d in diffs if i), default=None)
            without = max((d for i, d in diffs if not i), default=None)
            counts = sorted({adapter.image_token_count(r, imgs[r.image]) for r in reqs if r.image})
            rows[arch] = {"requests": len(reqs), "max_abs_diff": max(d for _, d in diffs), "with_image": with_img,
                          "without_image": without, "n_with_image": sum(i for i, _ in diffs), "image_tokens": counts}
            print(f"| {arch} | {len(reqs)} | {rows[arch]['max_abs_diff']:.1e} | {with_img:.1e} | {without:.1e} | "
                  f"{', '.join(map(str, counts))} |", flush=True)
    if args.record:
        rec.write({"architectures": rows})


if __name__ == "__main__":
    main()
