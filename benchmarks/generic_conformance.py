"""The architecture table's tolerance column: max |tool score - stock forward with labels| per architecture.

Same tiny models, requests and reference as tests/models/test_generic.py (fp32, with and without images,
images of two sizes in one batch). Run: python benchmarks/generic_conformance.py
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "models"))


def main() -> None:
    from test_generic import _images, _requests, load_generic, stock

    from mllm_audit.models.cards import GENERIC_ARCHITECTURES
    from mllm_audit.scoring.contract import score

    imgs, reqs = _images(), _requests(40)
    print("| model_type | requests | max abs diff | image tokens (per image) |")
    print("|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for arch in sorted(GENERIC_ARCHITECTURES):
            adapter = load_generic(arch, Path(tmp))
            got = score(adapter, reqs, imgs.__getitem__, batch_size=8)
            worst = max(abs(s.logp - stock(adapter, r, imgs)) for r, s in zip(reqs, got, strict=True))
            counts = sorted({adapter.image_token_count(r, imgs[r.image]) for r in reqs if r.image})
            print(f"| {arch} | {len(reqs)} | {worst:.1e} | {', '.join(map(str, counts))} |", flush=True)


if __name__ == "__main__":
    main()
