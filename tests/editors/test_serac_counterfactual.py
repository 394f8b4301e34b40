"""SERAC with a separate, smaller counterfactual model of the same family (`counterfactual: DIR`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from test_train_editor import learned_suite

from mllm_audit.cli import run


@pytest.fixture(scope="module")
def small_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from mllm_audit.testing.tiny import save_tiny_blip2

    # Same family and tokenizer, one text layer instead of two, other random weights.
    return save_tiny_blip2(tmp_path_factory.mktemp("cf") / "small", seed=7, text_layers=1)


def test_serac_trains_and_answers_with_a_separate_counterfactual(tiny_blip2_dir: Path, small_dir: Path,
                                                                  tmp_path: Path) -> None:
    from mllm_audit.editors import make_editor
    from mllm_audit.models import load_model
    from mllm_audit.runs.train_editor import train_editor

    base = load_model(str(tiny_blip2_dir))
    suite = learned_suite(tmp_path / "suite")
    small_before = {k: v.clone() for k, v in load_model(str(small_dir)).model.state_dict().items()}
    res = train_editor("serac", suite=str(suite), output=tmp_path / "state", adapter=base, steps=40, batch=4,
                       val_every=40, patience=100, hparams={"counterfactual": str(small_dir)})
    losses = [h["loss"] for h in res.history]
    k = len(losses) // 4
    assert sum(losses[-k:]) / k < sum(losses[:k]) / k
    config = json.loads((tmp_path / "state" / "config.json").read_text())
    assert config["hparams"]["counterfactual"] == str(small_dir)
    # The adapters sit on the small model: one text layer, so fewer Linear layers than the base's two.
    editor = make_editor("serac")
    editor.load_state(tmp_path / "state", base)
    cf = editor.cf_model(base)
    assert cf is not base and cf.model.config.text_config.num_hidden_layers == 1
    from mllm_audit.editors.learned.serac import lm_linears

    assert editor.require_net().names == sorted(lm_linears(cf))
    assert len(lm_linears(cf)) < len(lm_linears(base))
    # Its own weights stay frozen; only the adapters learned.
    assert all(torch.equal(v, small_before[k]) for k, v in cf.model.state_dict().items())
    # fix routes in-scope requests to it, through the same protocol and metrics.
    argv = ["fix", "-q", "--model", str(tiny_blip2_dir), "--suite", str(suite), "--editor", "serac", "--all",
            "--editor-state", str(tmp_path / "state"), "--output", str(tmp_path / "run")]
    assert run(argv) == 0
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["complete"] and results["metrics"]["reliability"] is not None


def test_scope_features_of_no_requests_are_empty_not_a_crash(tiny_adapter) -> None:  # noqa: ANN001
    """A suite without locality probes gives SERAC no negatives; torch.stack([]) crashed (reported by #20)."""
    from mllm_audit.editors import make_editor
    from mllm_audit.editors.learned.objective import Data

    ed = make_editor("serac")
    feats = ed.request_features(tiny_adapter, [], Data(tiny_adapter, lambda _k: None))
    width = tiny_adapter.input_embeddings().weight.shape[1]
    assert tuple(feats.shape) == (0, 2 * width)
