"""The default model (issue 26): toy world v3, the one toy VLM on which every editor can work, spelled
once (models.cards.DEFAULT_MODEL) and read by every command, API function and harness bridge.

`fix --editor ike` with no --model is the README's example: on v3 it reaches the paper's reliability
with perception locality intact; on world v2 (`--model toy`, the negative control) it does not."""

from __future__ import annotations

import contextlib
import inspect
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mllm_audit.cli import run
from mllm_audit.models.cards import DEFAULT_MODEL
from mllm_audit.util.identity import model_digest
from mllm_audit.util.resources import adapters_dir


def _model_default(fn: Callable[..., Any], arg: str = "model") -> Any:
    return inspect.signature(fn).parameters[arg].default


def _defaults() -> dict[str, Any]:
    from cliwalk import leaf_commands

    from mllm_audit import api
    from mllm_audit.cli import app
    from mllm_audit.integrations.likelihood import BridgeModel
    from mllm_audit.runs.fix import run_fix
    from mllm_audit.runs.scan import run_scan
    from mllm_audit.runs.studies import run_study
    from mllm_audit.runs.train_editor import train_editor

    found = {"run_scan": _model_default(run_scan), "run_fix": _model_default(run_fix),
             "run_study": _model_default(run_study), "train_editor": _model_default(train_editor),
             "BridgeModel": _model_default(BridgeModel.__init__, "pretrained")}
    found |= {f"api.{n}": _model_default(getattr(api, n)) for n in ("scan", "fix", "study", "train_editor")}
    commands = leaf_commands(app)
    for name in ("scan", "fix", "study", "train-editor"):
        found[f"cli {name}"] = next(p.default for p in commands[name].params if p.name == "model")
    return found


def test_every_default_is_the_one_constant_toy_v3(monkeypatch: pytest.MonkeyPatch) -> None:
    assert DEFAULT_MODEL == "toy-v3"
    found = _defaults()
    assert {k: v for k, v in found.items() if v != DEFAULT_MODEL} == {}
    # Negative control: run_fix with world v2 as its default again is reported by the same walk (and
    # api.fix, whose signature is run_fix's).
    from mllm_audit.runs import fix

    monkeypatch.setattr(fix.run_fix, "__defaults__", ("toy", *fix.run_fix.__defaults__[1:]))
    assert {k: v for k, v in _defaults().items() if v != DEFAULT_MODEL} == {"run_fix": "toy", "api.fix": "toy"}


def test_inspect_task_default_is_the_constant() -> None:
    inspect_mod = pytest.importorskip("mllm_audit.integrations.inspect", reason="inspect_ai is not installed")
    assert _model_default(inspect_mod.bias_task) == DEFAULT_MODEL


def test_help_names_the_default() -> None:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
        run(["fix", "--help"])
    assert f"[default: {DEFAULT_MODEL}]" in " ".join(out.getvalue().split())


def _fix(argv: list[str], out: Path) -> dict[str, Any]:
    assert run(["fix", *argv, "-q", "-o", str(out)]) == 0
    return json.loads((out / "results.json").read_text())


@pytest.mark.parametrize("model,ok", [([], True), (["--model", "toy"], False)], ids=["default", "toy-v2"])
def test_fix_ike_on_the_default_reaches_the_papers_reliability(model: list[str], ok: bool, tmp_path: Path) -> None:
    """`mllm-audit fix --editor ike` (faithful IKE, single mode, the first 48 biased eval edits): the
    default reaches reliability >= 0.9 with perception locality reported and kept (>= 0.9); world v2,
    whose LM read at most two demonstrations, stays far below on both (measured 0.50 and 0.00 on v2)."""
    res = _fix(["--editor", "ike", "--limit", "48", *model], tmp_path / "fix")
    m = res["metrics"]
    assert res["model"]["name"] == ("toy-v3" if ok else "toy") and res["n_edits"] == 48
    assert isinstance(m["perception_locality_top1"], float)
    assert (m["reliability"] >= 0.9) is ok, m["reliability"]
    assert (m["perception_locality_top1"] >= 0.9) is ok, m["perception_locality_top1"]
    if not ok:
        assert m["reliability"] <= 0.7 and m["perception_locality_top1"] <= 0.5, m


@pytest.mark.parametrize("editor", ["mend", "ke", "serac"])
def test_learned_editors_on_the_default_use_its_cards_states(editor: str, tmp_path: Path) -> None:
    """`fix --editor mend|ke|serac` with no --model reads the v3 card's trained state (its digest is in the
    record), not world v2's: a v2 state on v3 would be a network trained for other weights."""
    text = json.dumps(_fix(["--editor", editor, "--limit", "1"], tmp_path / "fix"))
    v3, v2 = (model_digest(adapters_dir() / f / editor)[0] for f in ("toy-v3-editors", "toy-editors"))  # type: ignore[index]
    assert v3 in text and v2 not in text
