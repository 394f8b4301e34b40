"""Images over the pixel budget are reduced while they are decoded (suites.items.load_image); smaller
ones are untouched; the budget is part of the run's identity and set by `--max-pixels`."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from mllm_audit.suites import items
from mllm_audit.suites.items import DEFAULT_MAX_PIXELS, MAX_PIXELS_ENV, load_image, pixel_budget


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_a_large_image_is_reduced_to_the_budget_keeping_its_aspect(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / f"big.{fmt.lower()}"
    Image.new("RGB", (3000, 2000), (200, 30, 30)).save(path, format=fmt)
    img = load_image(path, max_pixels=600_000)  # before: 3000 x 2000 whatever the budget
    w, h = img.size
    assert w * h <= 600_000 and w * h > 0.8 * 600_000 and abs(w / h - 1.5) < 0.01
    assert img.mode == "RGB" and img.getpixel((w // 2, h // 2)) == pytest.approx((200, 30, 30), abs=3)


def test_an_image_within_the_budget_is_untouched(tmp_path: Path) -> None:
    """Negative control: the same check on an image under the budget sees it at full size."""
    path = tmp_path / "small.png"
    Image.new("RGB", (300, 200), (1, 2, 3)).save(path)
    assert load_image(path, max_pixels=600_000).size == (300, 200)


def test_budget_comes_from_the_option(monkeypatch: pytest.MonkeyPatch) -> None:
    from mllm_audit.cli import run

    monkeypatch.delenv(MAX_PIXELS_ENV, raising=False)
    assert pixel_budget() == DEFAULT_MAX_PIXELS == 4_000_000
    assert run(["--max-pixels", "123456", "ls", "suites"]) == 0
    assert pixel_budget() == 123456
    monkeypatch.setenv(MAX_PIXELS_ENV, "junk")
    assert pixel_budget() == DEFAULT_MAX_PIXELS


def test_the_budget_is_in_the_suite_identity(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    from mllm_audit.runs.record import suite_identity

    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    item = {"id": "i", "task": "vqa", "bias_type": "g", "image": "a.png", "prompt": "q", "y_more": "a", "y_less": "b"}
    (tmp_path / "items.jsonl").write_text(json.dumps(item) + "\n")
    suite = items.load_suite(str(tmp_path / "items.jsonl"))
    monkeypatch.setenv(MAX_PIXELS_ENV, "1000")
    assert suite_identity(suite, suite.items).extra["max_pixels"] == 1000
