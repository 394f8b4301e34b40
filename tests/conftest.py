"""Shared fixtures: a tiny random BLIP-2 saved to a folder, and a small suite with real PNGs."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def tiny_blip2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from mllm_audit.testing.tiny import save_tiny_blip2

    return save_tiny_blip2(tmp_path_factory.mktemp("models") / "tiny-blip2", seed=0)


@pytest.fixture(scope="session")
def tiny_adapter(tiny_blip2_dir: Path):  # noqa: ANN201 - an Adapter
    from mllm_audit.models import load_model

    return load_model(str(tiny_blip2_dir))


def write_images(folder: Path, n: int, seed: int = 0, size: int = 40) -> list[str]:
    from PIL import Image

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for k in range(n):
        name = f"img{k}.png"
        Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(folder / name)
        names.append(f"images/{name}")
    return names


ANSWERS = [("doctor", "nurse"), ("pilot", "flight attendant"), ("office", "kitchen"), ("red", "blue green")]


def make_items(images: list[str], per_image: int = 2) -> list[dict]:
    items = []
    for i, img in enumerate(images):
        for j in range(per_image):
            more, less = ANSWERS[(i + j) % len(ANSWERS)]
            items.append(
                {
                    "id": f"it{i}-{j}",
                    "task": "vqa" if j % 2 == 0 else "ic",
                    "bias_type": ["gender", "race"][i % 2],
                    "image": img,
                    "prompt": "Is this person a doctor or a nurse?" if j % 2 == 0 else "a photo of",
                    "y_more": more,
                    "y_less": less,
                    "cluster": f"scene{i // 2}",
                    "meta": {"k": i},
                }
            )
    return items


@pytest.fixture()
def tiny_suite(tmp_path: Path) -> Path:
    """A .jsonl suite of 12 items over 6 images."""
    images = write_images(tmp_path / "images", 6)
    path = tmp_path / "items.jsonl"
    path.write_text("".join(json.dumps(it) + "\n" for it in make_items(images)))
    return path
