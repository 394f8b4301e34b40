"""Decoded pixels held at once while encoding are bounded by ENCODE_PIXELS, whatever the batch size
(issue 24: memory by pixel budget, not by --batch-size)."""

from __future__ import annotations

from typing import Any

import pytest
from PIL import Image

from mllm_audit.scoring import contract


class _Recorder:
    """Stands in for an adapter: records the pixels of each encode call."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def encode_images(self, images: list[Any]) -> list[int]:
        self.calls.append(sum(im.width * im.height for im in images))
        return list(range(len(images)))


def _encode(batch_size: int) -> tuple[_Recorder, dict[str, Any]]:
    rec = _Recorder()
    keys = [f"img{k}" for k in range(40)]
    feats = contract._encode(rec, keys, lambda _k: Image.new("RGB", (2000, 2000)), batch_size)  # type: ignore[arg-type]
    return rec, feats


@pytest.mark.parametrize("batch_size", [16, 64, 256])
def test_decoded_pixels_held_at_once_stay_under_the_budget(batch_size: int) -> None:
    rec, feats = _encode(batch_size)
    assert len(feats) == 40  # every image encoded once
    assert max(rec.calls) <= contract.ENCODE_PIXELS
    assert max(rec.calls) == 8 * 4_000_000  # eight 4 MP images fill the 32 MP budget at every batch size


def test_without_the_budget_the_batch_size_decides(monkeypatch: pytest.MonkeyPatch) -> None:
    """Negative control: with the budget lifted, batch 64 holds all 40 images (160 MP) at once."""
    monkeypatch.setattr(contract, "ENCODE_PIXELS", 10**12)
    rec, _ = _encode(64)
    assert max(rec.calls) == 40 * 4_000_000 > 32_000_000
