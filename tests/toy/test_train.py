"""Training from scratch on a short schedule: two seeds reach the same conclusions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mllm_audit.models import load_model
from mllm_audit.suites.items import load_image, load_suite
from mllm_audit.toy import world
from mllm_audit.toy.evaluate import margins
from mllm_audit.toy.train import CARD_TEMPLATES, _card_yaml, train_toy

# About 45 s per seed on 2 cores. The shipped model trains 1700 steps with in-context-editing rows;
# detection needs neither, so the two-seed check trains 800 steps without them.
SHORT_STEPS = 800


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    root = tmp_path_factory.mktemp("suite")
    return load_suite(str(world.write_suite(root / "toy", seed=0, scenes_per_group=2)))


@pytest.mark.slow
@pytest.mark.xfail(run=False, reason="toy world v2 needs ~3000 steps (the shipped model); 800 steps of v2 "
                   "had not finished after 6.8 CPU minutes (one thread, measured), so no run under ~4 CPU minutes can "
                   "pass this two-seed check (issue 17)")
@pytest.mark.parametrize("seed", [1, 2])
def test_short_training_recovers_the_planted_bias(seed: int, suite, tmp_path: Path) -> None:  # noqa: ANN001
    report = train_toy(tmp_path / "model", seed=seed, steps=SHORT_STEPS, ike_rows=0)
    assert report.steps == SHORT_STEPS and np.isfinite(report.final_loss)
    card = tmp_path / "card.yaml"
    card.write_text(_card_yaml(str(tmp_path / "model")), encoding="utf-8")
    adapter = load_model(str(card))
    assert adapter.card.templates == CARD_TEMPLATES
    m = np.asarray(margins(adapter, suite.items, lambda k: load_image(suite.image_path(k))))
    planted = np.asarray([it.meta["planted"] for it in suite.items])
    assert (m[planted] > 0).mean() >= 0.8, m[planted]
    assert m[planted].mean() > 0.8
    assert abs(m[~planted].mean()) < 0.4
    assert np.abs(m[~planted]).mean() < np.abs(m[planted]).mean() / 2
    for bias_type in world.BIAS_TYPES:  # every planted bias type is found, by each seed
        sel = np.asarray([it.meta["planted"] and it.bias_type == bias_type for it in suite.items])
        assert m[sel].mean() > 0.3, (bias_type, m[sel].mean())


def test_training_is_deterministic(tmp_path: Path) -> None:
    a = train_toy(tmp_path / "a", seed=3, steps=3, pool_size=64)
    b = train_toy(tmp_path / "b", seed=3, steps=3, pool_size=64)
    assert a.final_loss == b.final_loss
    assert (tmp_path / "a" / "model.safetensors").read_bytes() == (tmp_path / "b" / "model.safetensors").read_bytes()


def test_training_rows_are_scored_as_scan_scores_them() -> None:
    """The training loss reads the same log-probabilities that `scan` reports (1e-5)."""
    from mllm_audit.scoring.contract import Request, score
    from mllm_audit.toy.train import _Batcher, _sequence_logp

    adapter = load_model("toy")
    suite = load_suite("toy")
    items = [it for it in suite.items if it.split == "eval"][:6]
    feats = adapter.encode_images([load_image(suite.image_path(it.image)) for it in items])
    b = _Batcher(adapter)
    rows = [(j, b.prefix(it.prompt, it.task, True), b.cont(ans), 1.0)
            for j, it in enumerate(items) for ans in (it.y_more, it.y_less)]
    rows += [(-1, b.prefix(it.loc_prompt, None, False), b.cont(it.loc_answer), 1.0) for it in items]
    reqs = [Request(it.prompt, ans, it.image, it.task) for it in items for ans in (it.y_more, it.y_less)]
    reqs += [Request(it.loc_prompt, it.loc_answer) for it in items]
    expected = [s.logp for s in score(adapter, reqs, lambda k: load_image(suite.image_path(k)))]
    got = _sequence_logp(adapter, rows, feats).detach().numpy()
    assert np.abs(got - np.asarray(expected)).max() < 1e-5


def test_warm_start_with_the_ike_window_is_deterministic_and_recorded(tmp_path: Path) -> None:
    """Toy world v3's recipe (`--init-from` the shipped v2, `--ike-window`): same bytes twice, recorded."""
    import json

    from mllm_audit.util.resources import adapters_dir

    v2 = adapters_dir() / "toy-model"
    a = train_toy(tmp_path / "a", seed=0, steps=2, pool_size=32, init_from=v2, ike_window=True)
    b = train_toy(tmp_path / "b", seed=0, steps=2, pool_size=32, init_from=v2, ike_window=True)
    assert a.final_loss == b.final_loss and a.init_from == str(v2) and a.ike_window
    assert (tmp_path / "a" / "model.safetensors").read_bytes() == (tmp_path / "b" / "model.safetensors").read_bytes()
    rec = json.loads((tmp_path / "a" / "toy_train.json").read_text())
    assert rec["init_from"] == str(v2.resolve()) and rec["ike_window"] is True and rec["lr"] == 5e-4
    from mllm_audit.toy.train import THREADS
    from mllm_audit.util.identity import model_digest

    # what the bits depend on is recorded: the thread count and the exact weights warm-started from
    assert rec["threads"] == THREADS and rec["init_digest"] == model_digest(v2)[0]
    # negative control: without the warm start the same two steps give other weights (a random init)
    c = train_toy(tmp_path / "c", seed=0, steps=2, pool_size=32, ike_window=True)
    assert c.init_from is None and c.init_digest is None and c.final_loss != a.final_loss
    # v3's signals are recorded by name; the eval paraphrases' new words start from the mean known embedding
    # only when the model warm-started from never trained them (v2), not again from a v3 model (d)
    assert rec["v3_rows"] == ["ike_window", "paraphrase_words", "image_positions", "new_words_from_mean"]
    d = train_toy(tmp_path / "d", seed=0, steps=1, pool_size=32, init_from=tmp_path / "a", ike_window=True)
    assert d.v3_rows == ["ike_window", "paraphrase_words", "image_positions"] and c.v3_rows == d.v3_rows


def test_init_from_a_folder_without_a_model_is_refused_in_one_line(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    from mllm_audit.cli import run

    (tmp_path / "empty").mkdir()
    assert run(["toy", "train", "--init-from", str(tmp_path / "empty"), "--output", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err
    assert "--init-from" in err and "Traceback" not in err
    assert not (tmp_path / "m").exists()
