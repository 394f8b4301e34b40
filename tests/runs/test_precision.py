"""`--dtype bf16`: log-softmax stays fp32, and the run records drift and flips against fp32."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from mllm_audit.cli import run
from mllm_audit.models import load_model
from mllm_audit.models.base import LoadOptions
from mllm_audit.runs.precision import precision_check, upcast
from mllm_audit.runs.score import score_items
from mllm_audit.scoring.contract import Request, next_token_logprobs
from mllm_audit.scoring.differentiable import logprob_tensor
from mllm_audit.suites.items import load_suite
from mllm_audit.util.files import read_jsonl


def test_bf16_scan_records_drift_and_flips(tiny_blip2_dir: Path, tiny_suite: Path, tmp_path: Path) -> None:
    args = ["scan", "--model", str(tiny_blip2_dir), "--suite", str(tiny_suite), "-q"]
    assert run([*args, "--dtype", "bf16", "--output", str(tmp_path / "bf16")]) == 0
    assert run([*args, "--output", str(tmp_path / "fp32")]) == 0
    res = json.loads((tmp_path / "bf16" / "results.json").read_text())
    check = res["precision"]
    assert check["dtype"] == "bf16" and check["n_items"] == 12 and len(check["item_ids"]) == 12
    assert check["weights_stored"] == "float32" and "rounding" in check["not_included"]
    # The recorded drift is the run's samples against fp32 arithmetic on the same (bf16) weights.
    adapter = load_model(str(tiny_blip2_dir), LoadOptions(dtype="bf16"))
    suite = load_suite(str(tiny_suite))
    with upcast(adapter):
        ref = {s["item_id"]: s for s in score_items(adapter, suite, suite.items, "x")}
    low = {s["item_id"]: s for s in read_jsonl(tmp_path / "bf16" / "samples.jsonl")}
    drift = [abs(low[i][k] - ref[i][k]) for i in check["item_ids"] for k in ("logp_more", "logp_less")]
    assert check["max_abs_drift"] == pytest.approx(max(drift), abs=1e-6)
    assert 0 < check["max_abs_drift"] < 1  # bf16 does drift, a little
    flips = sorted(i for i in check["item_ids"] if (low[i]["margin"] > 0) != (ref[i]["margin"] > 0))
    assert sorted(check["flipped"]) == flips and check["flips"] == len(flips)
    assert "precision" not in json.loads((tmp_path / "fp32" / "results.json").read_text())


def test_the_fp32_reference_restores_the_weights_and_has_no_drift_of_its_own(tiny_blip2_dir: Path,
                                                                          tiny_suite: Path) -> None:
    """Negative control: checked against itself (fp32 weights called bf16), the drift is 0 and
    no item flips (1e-5: batch-size reordering), so the bf16 figures above are the precision's and not the check's."""
    adapter = load_model(str(tiny_blip2_dir), LoadOptions(dtype="bf16"))
    before = {n: p.detach().clone() for n, p in adapter.model.named_parameters()}
    suite = load_suite(str(tiny_suite))
    with upcast(adapter):
        assert all(p.dtype == torch.float32 for p in adapter.model.parameters())
        fp32 = score_items(adapter, suite, suite.items, "x")
    for n, p in adapter.model.named_parameters():
        assert p.dtype == before[n].dtype and torch.equal(p, before[n])
    exact = load_model(str(tiny_blip2_dir))  # fp32 weights, labelled bf16: the check compares fp32 with fp32
    own = score_items(exact, suite, suite.items, "x")
    exact.options.dtype = "bf16"
    same = precision_check(exact, suite, suite.items, own, seed=0, batch_size=4)
    assert fp32 != own  # the bf16-rounded weights do score differently ...
    assert same is not None and same["max_abs_drift"] < 1e-5 and same["flips"] == 0  # ... this does not


def test_bf16_log_softmax_is_fp32(tiny_blip2_dir: Path) -> None:
    adapter = load_model(str(tiny_blip2_dir), LoadOptions(dtype="bf16"))
    reqs = [Request("a photo of", "red", None, "ic"), Request("Question:", "doctor", None, "vqa")]
    for d in next_token_logprobs(adapter, reqs):
        assert d.dtype == torch.float32
    lp, _ = logprob_tensor(adapter, reqs, {})
    assert lp.dtype == torch.float32
