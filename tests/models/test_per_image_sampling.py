"""The per-image sampler (models/sampling.py): each image the same token for token whatever rows share its
batch, drawn from the distribution upstream's processors give (CFG, temperature, top-k, top-p); the
global-generator draw (upstream) is the negative control that changes with the grouping."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from transformers import TemperatureLogitsWarper, TopKLogitsWarper

from mllm_audit.models import load_model
from mllm_audit.models.families.janus import derive_seed
from mllm_audit.models.sampling import InverseCdfSampler, generate_rows
from mllm_audit.testing.tiny import save_tiny_emu3, save_tiny_janus

# Mixed lengths (8 to 27 tokens): left padding differs with the grouping.
PROMPTS = ["a photo of a doctor", "a nurse", "a photo of the face of a pilot, a person in a room", "engineer"]


@pytest.fixture(scope="module", params=["janus", "emu3"])
def adapter(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201 - an Adapter
    build = save_tiny_janus if request.param == "janus" else save_tiny_emu3
    return load_model(str(build(tmp_path_factory.mktemp("m") / request.param)))


def rows() -> list[tuple[str, int]]:
    return [(p, derive_seed(0, p, k)) for p in PROMPTS for k in range(3)]


def tokens(adapter: Any, batch: int) -> torch.Tensor:
    r = rows()
    return torch.cat([adapter.generate_tokens([p for p, _ in r[i : i + batch]], 0,
                                              row_seeds=[s for _, s in r[i : i + batch]])
                      for i in range(0, len(r), batch)])


def test_images_are_the_same_for_any_grouping(adapter) -> None:  # noqa: ANN001
    alone = tokens(adapter, 1)
    assert alone.shape[0] == 12 and alone.shape[1] >= 16
    assert torch.equal(alone, tokens(adapter, 5)) and torch.equal(alone, tokens(adapter, 12))
    shuffled = [rows()[i] for i in (11, 3, 7, 0, 5, 9, 1, 10, 2, 8, 4, 6)]
    got = adapter.generate_tokens([p for p, _ in shuffled], 0, row_seeds=[s for _, s in shuffled])
    assert torch.equal(got[3], alone[0]) and torch.equal(got[0], alone[11])
    # gen-scan's batching helper decodes the same images
    imgs = [im for batch in generate_rows(adapter, rows()[:5], 4) for im in batch]
    assert len(imgs) == 5 and list(imgs[4].getdata()) == list(adapter.decode_images(alone[4:5])[0].getdata())


def test_negative_control_the_global_generator_changes_with_the_grouping(adapter) -> None:  # noqa: ANN001
    r = rows()
    alone = torch.cat([adapter.generate_tokens([p], s) for p, s in r])
    batched = adapter.generate_tokens([p for p, _ in r], r[0][1])
    assert not torch.equal(alone, batched)


def test_inverse_cdf_draws_the_row_distribution() -> None:
    torch.manual_seed(0)
    logits = torch.randn(1, 12) * 2
    logits[0, 3] = float("-inf")  # a token a warper removed: never drawn
    n = 40_000
    sampler = InverseCdfSampler(list(range(n)), steps=1)
    out = sampler(torch.zeros(n, 1, dtype=torch.long), logits.expand(n, -1).clone())
    assert (out == 0).sum(-1).eq(1).all() and torch.isinf(out).sum() == n * 11
    freq = torch.bincount(out.argmax(-1), minlength=12).double() / n
    p = torch.softmax(logits[0].double(), -1)
    sd = (p * (1 - p) / n).sqrt()
    assert freq[3] == 0 and ((freq - p).abs() <= 4 * sd + 1e-12).all(), (freq, p)
    # negative control: the same check against a tempered distribution fails
    q = torch.softmax(logits[0].double() / 2, -1)
    assert ((freq - q).abs() > 4 * sd).any()


def test_sampler_follows_every_processor_upstream_builds(adapter) -> None:  # noqa: ANN001
    """The per-image draw sees the scores upstream's multinomial would: the sampler is appended after
    transformers' own list (here with temperature and top-k warpers from the card), and only then."""
    from unittest.mock import patch

    def kinds(generation: dict[str, Any], **kw: Any) -> list[type]:
        built: list[Any] = []
        build = adapter.model._get_logits_processor
        adapter.card.generation = generation
        try:
            with patch.object(adapter.model, "_get_logits_processor",
                              side_effect=lambda *a, **k: built.append(build(*a, **k)) or built[-1]):
                adapter.generate_tokens(PROMPTS[:2], 0, **kw)
        finally:
            adapter.card.generation = {}
        return [type(p) for p in built[-1]]

    warped = {"temperature": 0.7, "top_k": 5}
    per_image, upstream = kinds(warped, row_seeds=[1, 2]), kinds(warped)
    greedy = kinds({"do_sample": False}, row_seeds=[1, 2])
    assert per_image == [*upstream, InverseCdfSampler]
    assert TemperatureLogitsWarper in upstream and TopKLogitsWarper in upstream
    assert InverseCdfSampler not in greedy and InverseCdfSampler not in upstream
    assert "_get_logits_processor" not in adapter.model.__dict__  # no wrapper is left behind
