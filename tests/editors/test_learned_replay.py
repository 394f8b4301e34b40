"""MEND and KE training replay each item's frozen layers (editors/cache.py via Data.forward): the trained
state equals the one trained with every layer run each step, to 1e-6, while fewer layers compute; a
stale cache (one key for every item) is the negative control that changes the result."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from test_train_editor import learned_suite

from mllm_audit.editors import cache as cache_mod
from mllm_audit.editors.learned import objective, training

STEPS = 8  # batch 4 over 8 train items: every item is drawn more than once
# The tiny model has two decoder layers: edit the last one's MLP, so the first is frozen.
HPARAMS = {"mend": {"init_lr": 1e-2, "text_layers": 1}, "ke": {"text_layers": 1}}


def train(adapter, tmp: Path, editor: str, monkeypatch: pytest.MonkeyPatch, replay: bool,  # noqa: ANN001
          stale: bool = False) -> tuple[dict[str, torch.Tensor], int]:
    from mllm_audit.runs.train_editor import train_editor

    monkeypatch.setattr(training, "REPLAY_BYTES", training.REPLAY_BYTES if replay else 0)
    if stale:
        monkeypatch.setattr(objective, "replay_key", lambda kind, parts: kind)
    calls = [0]
    # A replayed layer keeps its hooks but its forward is the instance's stand-in: count computed ones.
    hooks = [m.register_forward_hook(lambda m, *_: calls.__setitem__(0, calls[0] + ("forward" not in m.__dict__)))
             for s in cache_mod._stacks(adapter.model) for m in s]
    try:
        suite = learned_suite(tmp / "suite")
        out = tmp / f"state-{replay}-{stale}"
        train_editor(editor, suite=str(suite), output=out, adapter=adapter, steps=STEPS, batch=4, val_every=4,
                     patience=100, hparams=HPARAMS[editor])
    finally:
        for h in hooks:
            h.remove()
        monkeypatch.undo()
    return load_file(str(out / "state.safetensors")), calls[0]


@pytest.mark.parametrize("editor", ["mend", "ke"])
def test_replayed_training_equals_the_whole_forward(tiny_adapter, tmp_path: Path, editor: str,  # noqa: ANN001
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    ref, n_ref = train(tiny_adapter, tmp_path, editor, monkeypatch, replay=False)
    got, n_got = train(tiny_adapter, tmp_path, editor, monkeypatch, replay=True)
    assert ref.keys() == got.keys()
    for k in ref:
        torch.testing.assert_close(got[k], ref[k], atol=1e-6, rtol=0)
    assert n_got < 0.8 * n_ref, (n_got, n_ref)  # the frozen layers computed less
    # negative control: one cache entry per kind of forward replays the first item's layers for every
    # item: a later item of another length cannot even run (its mask does not fit the replayed states)
    with pytest.raises(RuntimeError, match="must match the size"):
        train(tiny_adapter, tmp_path, editor, monkeypatch, replay=True, stale=True)
