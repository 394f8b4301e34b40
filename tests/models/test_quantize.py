"""--quantize and device maps for every family, on CPU with tiny models.

8-bit must load, keep the card's `keep_fp32` modules unquantized, shrink the quantized linear weights
to at most 35 % of their fp32 bytes, and move scores by at most QUANT_TOL nats (tiny random models
have small, well-conditioned matrices; real ones are checked by users against fp32 runs).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from family_checks import images, requests

from mllm_audit.errors import AuditError
from mllm_audit.models import load_model
from mllm_audit.models.base import LoadOptions
from mllm_audit.models.loading import keeps_full_precision
from mllm_audit.scoring.contract import score
from mllm_audit.testing.tiny import save_tiny_instructblip, save_tiny_llava

QUANT_TOL = 0.05  # max |logp_8bit - logp_fp32| per request, nats
BYTE_RATIO = 0.35


def _minigpt4(folder: Path) -> Path:
    from test_minigpt4 import HEADS, original_checkpoints

    from mllm_audit.models.convert.minigpt4 import convert_minigpt4

    (folder / "orig").mkdir()
    return convert_minigpt4(
        **original_checkpoints(folder / "orig"),
        out=folder / "minigpt4",
        vision_heads=HEADS,
        qformer_heads=HEADS,
    )


BUILDERS = {
    "blip2": lambda d: __import__("mllm_audit.testing.tiny", fromlist=["x"]).save_tiny_blip2(d / "blip2"),
    "llava": lambda d: save_tiny_llava(d / "llava"),
    "instructblip": lambda d: save_tiny_instructblip(d / "instructblip"),
    "minigpt4": _minigpt4,
}


@pytest.fixture(scope="module", params=sorted(BUILDERS))
def folder(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return BUILDERS[request.param](tmp_path_factory.mktemp(request.param))


def test_8bit_loads_shrinks_and_keeps_card_modules(folder: Path) -> None:
    import bitsandbytes as bnb

    full = load_model(str(folder))
    q = load_model(str(folder), LoadOptions(quantize="8bit"))
    keep = q.card.keep_fp32
    assert keep
    fp32_weights = dict(full.model.named_modules())
    quantized = {n: m for n, m in q.model.named_modules() if isinstance(m, bnb.nn.Linear8bitLt)}
    assert quantized, "nothing was quantized"
    q_bytes = sum(m.weight.numel() * m.weight.element_size() + _scb_bytes(m) for m in quantized.values())
    f_bytes = sum(fp32_weights[n].weight.numel() * 4 for n in quantized)
    assert q_bytes / f_bytes <= BYTE_RATIO, q_bytes / f_bytes
    # Modules the card keeps: never quantized, still fp32.
    kept = [(n, m) for n, m in q.model.named_modules() if n and keeps_full_precision(n, keep)]
    assert kept
    for n, m in kept:
        assert not isinstance(m, bnb.nn.Linear8bitLt), n
        assert all(p.dtype == torch.float32 for p in m.parameters(recurse=False)), n
    assert not any(keeps_full_precision(n, keep) for n in quantized)
    imgs = images(3)
    reqs = requests(12, imgs, seed=7)
    ref = score(full, reqs, imgs.__getitem__, batch_size=4)
    got = score(q, reqs, imgs.__getitem__, batch_size=4)
    worst = max(abs(a.logp - b.logp) for a, b in zip(ref, got, strict=True))
    assert 0 < worst <= QUANT_TOL, worst
    assert q.identity()["quantization"] == "8bit"


def _scb_bytes(module: torch.nn.Module) -> int:
    scb = getattr(module.weight, "SCB", None)
    return 0 if scb is None else scb.numel() * scb.element_size()


def test_device_map_and_budget_are_honoured(folder: Path) -> None:
    full = load_model(str(folder))
    mapped = load_model(str(folder), LoadOptions(device_map="auto", max_memory={"cpu": "2GiB"}))
    assert {p.device.type for p in mapped.model.parameters()} == {"cpu"}
    imgs = images(2)
    reqs = requests(6, imgs, seed=1)
    a = [s.logp for s in score(full, reqs, imgs.__getitem__)]
    b = [s.logp for s in score(mapped, reqs, imgs.__getitem__)]
    assert a == pytest.approx(b, abs=1e-6)
    with pytest.raises(AuditError, match="memory budget"):
        load_model(str(folder), LoadOptions(device_map="auto", max_memory={"cpu": "10KB"}))


def test_quantize_without_bitsandbytes_gives_the_install_hint(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tiny_suite: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from mllm_audit.cli import run

    monkeypatch.setitem(sys.modules, "bitsandbytes", None)  # import now raises ImportError
    with pytest.raises(AuditError, match="pip install"):
        load_model("llava-1.5-7b", LoadOptions(quantize="8bit"))
    rc = run(
        [
            "scan",
            "--model",
            "llava-1.5-7b",
            "--suite",
            str(tiny_suite),
            "--quantize",
            "8bit",
            "--output",
            str(tmp_path / "o"),
            "--quiet",
        ]
    )
    assert rc == 2
    err = capsys.readouterr().err
    assert "pip install" in err and "Traceback" not in err
