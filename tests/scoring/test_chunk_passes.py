"""Issue 29 item 3, "all prefixes of a chunk in one batch whatever --batch-size means for memory": under
the tree mask `--batch-size` bounds rows (trees, one per image), so a chunk whose trees fit runs in one
pass whatever its prompts and answers (shared prefixes, suffixes and answers in one forward), a smaller
bound in the fewest passes it allows (an image's prompts are never split off to re-run its shared
prefix), and the scores do not move."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mllm_audit.scoring import prefix as prefix_mod
from mllm_audit.scoring.contract import score
from tests.scoring.test_contract import _images
from tests.scoring.test_prefix import PROMPTS, _grid


def passes(adapter, reqs, images, batch_size: int) -> tuple[int, int, list[float]]:  # noqa: ANN001
    c = adapter.counters
    before, saved = c.forward_passes, c.prefix_forwards_saved
    got = score(adapter, reqs, images.__getitem__, batch_size=batch_size)
    return c.forward_passes - before, c.prefix_forwards_saved - saved, [s.logp for s in got]


def test_a_chunk_runs_in_the_fewest_passes_its_batch_size_allows(tiny_adapter) -> None:  # noqa: ANN001
    assert prefix_mod.uses_tree_mask(tiny_adapter)  # the path under test (sdpa takes the tree mask)
    images = _images(10)
    reqs = _grid(images)  # 10 images x 3 prompts x 2 answers = 60 candidates
    n, saved, ref = passes(tiny_adapter, reqs, images, 64)
    assert n == 1 and saved == 10 * (len(PROMPTS) - 1)  # the whole chunk in one tree pass
    for bs in (1, 2, 4, 16):
        n, saved, got = passes(tiny_adapter, reqs, images, bs)
        assert n == math.ceil(10 / bs) and saved == 10 * (len(PROMPTS) - 1), bs
        np.testing.assert_allclose(got, ref, atol=1e-5, rtol=0)


def test_negative_control_a_planner_counting_unfolded_rows(tiny_adapter, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    """The planner before this change counted a tree's prompts as rows even under the tree mask: below
    three rows it split each image's tree and re-ran its shared prefix per part. The same check sees it."""
    plan = prefix_mod.plan_trees
    monkeypatch.setattr(prefix_mod, "plan_trees", lambda *a, **k: plan(*a[:5]))  # folded left False
    images = _images(10)
    n, saved, _ = passes(tiny_adapter, _grid(images), images, 1)
    assert n == 10 * len(PROMPTS) != 10 and saved == 0
