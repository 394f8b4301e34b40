"""KE on a tiny random BLIP-2: a short schedule must learn (loss falls, reliability beats untrained)."""

from __future__ import annotations

from pathlib import Path

from test_train_editor import learned_suite, reliability, untrained_state

EDITOR = "ke"
STEPS = 40


def test_learns_on_a_short_schedule(tiny_adapter, tmp_path: Path) -> None:  # noqa: ANN001
    from mllm_audit.train_editor import train_editor

    suite = learned_suite(tmp_path / "suite")
    res = train_editor(EDITOR, suite=str(suite), out=tmp_path / "trained", adapter=tiny_adapter, steps=STEPS,
                       batch=4, val_every=STEPS, patience=100)
    losses = [h["loss"] for h in res.history]
    k = len(losses) // 4
    assert sum(losses[-k:]) / k < sum(losses[:k]) / k
    before = reliability(tiny_adapter, suite, EDITOR, untrained_state(EDITOR, tiny_adapter, tmp_path / "u"),
                         tmp_path / "r0")
    after = reliability(tiny_adapter, suite, EDITOR, tmp_path / "trained", tmp_path / "r1")
    # Reliability is coarse on 8 items of a random model: it may not drop, and the edited margins
    # (the quantity it thresholds) must move towards y_less.
    assert after["reliability"] >= before["reliability"], (before, after)
    assert after["mean_post_margin"] < before["mean_post_margin"], (before, after)
