"""Dynamic resolution through the generic family: Qwen2-VL's pixel budget and LLaVA-NeXT's any-res tiles
give images of different sizes different token counts, scored with those counts (equal to the stock
forward), `--max-pixels` changes them and the run records it, and every sample records its image tokens."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_generic import load_generic, stock

from mllm_audit.cli import run
from mllm_audit.models import load_model
from mllm_audit.models.base import LoadOptions
from mllm_audit.scoring.contract import Request, score
from mllm_audit.testing.tiny_generic import save_tiny_generic

SIZES = [(40, 40), (24, 64), (64, 64)]  # square, wide, large: three token counts under a pixel budget


def _images() -> dict[str, Image.Image]:
    rng = np.random.default_rng(3)
    return {f"im{k}": Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
            for k, (h, w) in enumerate(SIZES)}


@pytest.mark.parametrize("arch", ["qwen2_vl", "llava_next", "idefics3"])
def test_token_counts_follow_the_image_and_scores_equal_stock(arch: str, tmp_path: Path) -> None:
    adapter = load_generic(arch, tmp_path)
    imgs = _images()
    reqs = [Request("Question:", "doctor", k) for k in imgs]
    counts = [adapter.image_token_count(r, imgs[r.image]) for r in reqs]
    assert len(set(counts)) >= 2, counts  # the processor really resizes or tiles per image
    got = score(adapter, reqs, imgs.__getitem__, batch_size=3)  # mixed counts in one batch
    for r, s in zip(reqs, got, strict=True):
        assert abs(s.logp - stock(adapter, r, imgs)) < 1e-5


def test_max_pixels_changes_the_tokens_and_the_run_records_both(tmp_path: Path) -> None:
    folder = save_tiny_generic("qwen2_vl", tmp_path / "qwen")
    imgs = _images()
    req = Request("Question:", "doctor", "im2")
    full = load_model(str(folder)).image_token_count(req, imgs["im2"])
    small = load_model(str(folder), LoadOptions(max_pixels=32 * 32)).image_token_count(req, imgs["im2"])
    assert small < full, (small, full)
    names = []
    for k, img in imgs.items():
        (tmp_path / "images").mkdir(exist_ok=True)
        img.save(tmp_path / "images" / f"{k}.png")
        names.append(f"images/{k}.png")
    suite = tmp_path / "items.jsonl"
    items = [{"id": f"it{k}", "task": "vqa", "bias_type": "gender", "image": name, "prompt": "Who is this?",
              "y_more": "doctor", "y_less": "nurse"} for k, name in enumerate(names)]
    suite.write_text("".join(json.dumps(it) + "\n" for it in items))
    out = tmp_path / "run"
    assert run(["scan", "--model", str(folder), "--suite", str(suite), "--output", str(out), "-q",
                "--max-pixels", str(32 * 32)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert "1024" in json.dumps(results["model"])  # the pixel budget is in the record's model identity
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert [s["image_tokens"] for s in samples][2] == small
    assert run(["scan", "--model", str(folder), "--suite", str(suite), "--output", str(tmp_path / "r2"), "-q",
                "--max-pixels", "0"]) == 2


def test_an_image_past_the_models_positions_is_refused_in_one_line(tmp_path: Path) -> None:
    from mllm_audit.errors import AuditError

    folder = save_tiny_generic("qwen2_vl", tmp_path / "qwen")
    adapter = load_model(str(folder), LoadOptions(max_pixels=640 * 640))
    big = Image.new("RGB", (640, 640), (10, 20, 30))  # 1600 tokens under this budget; the model takes 1024
    with pytest.raises(AuditError, match="over the model's 1024"):
        score(adapter, [Request("Question:", "doctor", "big")], {"big": big}.__getitem__)
    small = load_model(str(folder)).image_token_count(Request("Question:", "doctor", "big"), big)
    assert small < 1024  # the control: the default budget fits
