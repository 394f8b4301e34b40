"""Processors with a video part, built without torchvision when only images are used."""

from __future__ import annotations

from pathlib import Path

import pytest

from mllm_audit.models.base import LoadOptions
from mllm_audit.models.cards import Card
from mllm_audit.models.processors import has_torchvision, load_processor
from mllm_audit.testing.tiny_generic import save_tiny_generic


@pytest.mark.skipif(has_torchvision(), reason="with torchvision, AutoProcessor loads the whole processor")
@pytest.mark.parametrize("arch", ["qwen2_vl", "llava_onevision", "internvl"])
def test_video_processors_load_for_images_without_torchvision(arch: str, tmp_path: Path) -> None:
    from PIL import Image
    from transformers import AutoProcessor

    folder = save_tiny_generic(arch, tmp_path / arch)
    with pytest.raises(Exception):  # noqa: B017, PT011 - the control: transformers' own loader cannot build it
        AutoProcessor.from_pretrained(folder)
    proc = load_processor(Card(name=arch, family="generic", weights=str(folder)), LoadOptions())
    assert proc.chat_template and getattr(proc, "video_processor", None) is None
    out = proc(text=[f"x {proc.image_token} y"], images=[Image.new("RGB", (40, 40))], return_tensors="pt")
    assert (out["input_ids"] == proc.image_token_id).sum() > 1  # the image expanded as the real processor does
