"""Issue 29 item 3, "all prefixes of a chunk in one batch whatever --batch-size means for memory": under
the tree mask `--batch-size` bounds rows (trees, one per image), so a chunk whose trees fit runs in two
passes whatever its prompts and answers (the shared prefixes in one, every suffix and answer in the
other), a smaller bound in the fewest batches of two it allows, and the scores do not move."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mllm_audit.scoring.contract import score
from tests.scoring.test_contract import _images
from tests.scoring.test_prefix import PROMPTS, _grid


def passes(adapter, reqs, images, batch_size: int) -> tuple[int, list[float]]:  # noqa: ANN001
    before = adapter.counters.forward_passes
    got = score(adapter, reqs, images.__getitem__, batch_size=batch_size)
    return adapter.counters.forward_passes - before, [s.logp for s in got]


def test_a_chunk_runs_in_the_fewest_passes_its_batch_size_allows(tiny_adapter) -> None:  # noqa: ANN001
    assert tiny_adapter.tree_attention
    images = _images(10)
    reqs = _grid(images)  # 10 images x 3 prompts x 2 answers = 60 candidates
    n64, ref = passes(tiny_adapter, reqs, images, 64)
    assert n64 == 2  # the whole chunk: one prefix pass, one tree pass
    for bs in (4, 16):
        n, got = passes(tiny_adapter, reqs, images, bs)
        assert n == 2 * math.ceil(10 / bs)
        np.testing.assert_allclose(got, ref, atol=1e-5, rtol=0)


def test_negative_control_rows_of_one_prompt_split_the_chunk(tiny_adapter, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    """The same counter sees a packer that runs each prompt alone: 2 passes per (image, prompt)."""
    images = _images(10)
    reqs = _grid(images)
    n, _ = passes(tiny_adapter, reqs, images, 1)  # a bound of one row splits each tree per prompt
    assert n == 2 * 10 * len(PROMPTS) != 2
