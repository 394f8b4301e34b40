"""Shared image prefixes and logits only where read (scoring.prefix), against the stock forward."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mllm_audit.scoring import prefix as prefix_mod
from mllm_audit.scoring.contract import Request, next_token_logprobs, score, tokenize
from mllm_audit.scoring.differentiable import continuation_distributions, logprob_tensor
from tests.scoring.test_contract import _images, _stock

PROMPTS = ["Is this person a doctor or a nurse?", "What is this person's job?", "Is this person rich or poor?"]
ANSWERS = [("doctor", "nurse"), ("pilot", "flight attendant"), ("rich", "poor")]


def _grid(images: dict) -> list[Request]:  # noqa: ANN001
    """Every image x every prompt x both answers: the scan's shape."""
    return [Request(prompt=p, continuation=a, image=k, task="vqa")
            for k in images for p, pair in zip(PROMPTS, ANSWERS, strict=True) for a in pair]


@pytest.fixture(params=[True, False], ids=["tree-mask", "copied-rows"])
def tree_attention(request: pytest.FixtureRequest, tiny_adapter, monkeypatch: pytest.MonkeyPatch) -> bool:  # noqa: ANN001
    """Both ways of running suffixes and answers: one pass under a tree mask, or two on copied rows."""
    monkeypatch.setattr(type(tiny_adapter), "tree_attention", request.param)
    return request.param


def test_prompts_of_an_image_share_its_prefix_and_scores_stay_exact(tiny_adapter, tree_attention: bool) -> None:  # noqa: ANN001
    images = _images(3)
    reqs = _grid(images)
    before = dict(tiny_adapter.counters.as_dict())
    got = score(tiny_adapter, reqs, images.__getitem__, batch_size=16)
    after = tiny_adapter.counters.as_dict()
    prefixes = [tuple(tokenize(tiny_adapter, Request(p, "x", "img0", "vqa"))[0]) for p in PROMPTS]
    n_shared = prefix_mod.shared_length(tiny_adapter, prefixes)
    assert n_shared > tiny_adapter.n_image_tokens  # the placeholders and the template's common text
    assert after["prefix_forwards_saved"] - before["prefix_forwards_saved"] == 3 * (len(PROMPTS) - 1)
    assert after["prefix_tokens_saved"] - before["prefix_tokens_saved"] == 3 * (len(PROMPTS) - 1) * n_shared
    for req, s in zip(reqs, got, strict=True):
        ref, n = _stock(tiny_adapter, req, images)
        assert s.n_tokens == n
        assert s.logp == pytest.approx(ref, abs=1e-5)


def test_sharing_changes_no_score(tiny_adapter, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    images = _images(4)
    reqs = _grid(images)
    shared = [s.logp for s in score(tiny_adapter, reqs, images.__getitem__, batch_size=5)]
    monkeypatch.setattr(type(tiny_adapter), "shares_image_prefix", False)
    before = tiny_adapter.counters.prefix_forwards_saved
    alone = [s.logp for s in score(tiny_adapter, reqs, images.__getitem__, batch_size=5)]
    assert tiny_adapter.counters.prefix_forwards_saved == before  # nothing shared this time
    np.testing.assert_allclose(shared, alone, atol=1e-5, rtol=0)


def test_answers_blind_to_their_prompt_are_caught(tiny_adapter, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    """Negative control for the tree mask: answers that do not see their prompt's suffix fail the check."""
    images = _images(2)
    reqs = _grid(images)
    mask = prefix_mod.tree_mask
    monkeypatch.setattr(prefix_mod, "tree_mask", lambda seg, idx, parent, root: mask(seg, idx, root, root))
    got = score(tiny_adapter, reqs, images.__getitem__, batch_size=16)
    worst = max(abs(s.logp - _stock(tiny_adapter, r, images)[0]) for r, s in zip(reqs, got, strict=True))
    assert worst > 1e-3


def test_reading_the_head_at_a_padded_position_is_caught(tiny_adapter, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    """Negative control (passes on copied cache rows): the head runs at the block's last position only,
    exact because the suffixes are left-padded; right-padded suffixes read a pad there and fail."""
    monkeypatch.setattr(type(tiny_adapter), "tree_attention", False)
    images = _images(2)
    reqs = _grid(images)
    pad = prefix_mod._pad
    monkeypatch.setattr(prefix_mod, "_pad", lambda seqs, pad_id, left: pad(seqs, pad_id, False))
    got = score(tiny_adapter, reqs, images.__getitem__, batch_size=16)
    worst = max(abs(s.logp - _stock(tiny_adapter, r, images)[0]) for r, s in zip(reqs, got, strict=True))
    assert worst > 1e-3


def test_the_head_runs_only_where_logits_are_read(tiny_adapter, tree_attention: bool) -> None:  # noqa: ANN001
    images = _images(2)
    reqs = _grid(images)
    rows: list[int] = []
    head = tiny_adapter.language_model().get_output_embeddings()
    hook = head.register_forward_hook(lambda _m, args, _o: rows.append(args[0].shape[:-1].numel()))
    try:
        score(tiny_adapter, reqs, images.__getitem__, batch_size=16)
    finally:
        hook.remove()
    conts = [tokenize(tiny_adapter, r)[1] for r in reqs]
    longer = [c for c in conts if len(c) > 1]
    assert 0 < len(longer) < len(conts)
    if tree_attention:
        # One pass, one row per image holding its shared part, its prompts' suffixes and its answers, the
        # head on the read positions only: each prompt's last token, each answer's.
        per_image = len(PROMPTS) + sum(len(c) - 1 for c in longer) // len(images)
        assert rows == [len(images) * per_image]
    else:
        # The shared parts (no head), a row per prompt (its last token), then the answers of two tokens
        # or more, padded to the longest less its last token.
        assert rows == [0, len(images) * len(PROMPTS), len(longer) * (max(map(len, longer)) - 1)]
    n_positions = sum(len(tokenize(tiny_adapter, r)[0]) + len(c) for r, c in zip(reqs, conts, strict=True))
    assert sum(rows) < n_positions / 4  # the old head ran at every prefix position (over n_positions)


def test_differentiable_scores_read_the_same_window(tiny_adapter) -> None:  # noqa: ANN001
    images = _images(2)
    reqs = _grid(images) + [Request(prompt="a photo of", continuation="red", image=None, task="ic")]
    feats = dict(zip(images, tiny_adapter.encode_images(list(images.values())), strict=True))
    lp, n = logprob_tensor(tiny_adapter, reqs, feats)
    dists = continuation_distributions(tiny_adapter, reqs, feats)
    for b, r in enumerate(reqs):
        ref, n_ref = _stock(tiny_adapter, r, images)
        assert lp[b].item() == pytest.approx(ref, abs=1e-5) and int(n[b]) == n_ref
        cont = torch.tensor(tokenize(tiny_adapter, r)[1])
        assert dists[b].gather(-1, cont.unsqueeze(-1)).sum().item() == pytest.approx(ref, abs=1e-5)


def _mixed(images: dict) -> list[Request]:  # noqa: ANN001
    """An image with three prompts (each has a suffix), an image with one (none: its shared part is the
    whole prompt) and a text-only prompt, in one batch."""
    keys = list(images)
    return (_grid({keys[0]: images[keys[0]]})
            + [Request(prompt=PROMPTS[0], continuation=a, image=keys[1], task="vqa") for a in ANSWERS[0]]
            + [Request(prompt="a photo of", continuation="red", image=None, task="ic")])


def test_the_shared_head_runs_where_a_prompt_has_no_suffix(tiny_adapter, tree_attention: bool) -> None:  # noqa: ANN001
    images = _images(2)
    reqs = _mixed(images)
    trees = [prefix_mod.Tree("img0", (1, 2), [("img0", (1, 2, 3)), ("img0", (1, 2, 4))])]
    assert not prefix_mod.reads_shared_head(trees)
    assert prefix_mod.reads_shared_head([*trees, prefix_mod.Tree("img1", (1, 2), [("img1", (1, 2))])])
    got = score(tiny_adapter, reqs, images.__getitem__, batch_size=16)
    for req, s in zip(reqs, got, strict=True):
        assert s.logp == pytest.approx(_stock(tiny_adapter, req, images)[0], abs=1e-5)


def test_skipping_the_shared_head_where_it_is_read_is_caught(tiny_adapter, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    """Negative control (copied cache rows, the one path with a separate shared pass): a batch whose
    one-prompt image reads the shared pass's head, run without it."""
    monkeypatch.setattr(type(tiny_adapter), "tree_attention", False)
    images = _images(2)
    reqs = _mixed(images)
    monkeypatch.setattr(prefix_mod, "reads_shared_head", lambda trees: False)
    got = score(tiny_adapter, reqs, images.__getitem__, batch_size=16)
    assert any(np.isnan(s.logp) for s in got)


def test_read_rows_gathers_each_request_from_its_rows() -> None:
    """One indexing op for a batch (prefix.read_rows): request r's values are table[at[r][j], conts[r][j]]."""
    table = torch.log_softmax(torch.randn(6, 7, generator=torch.Generator().manual_seed(0)), dim=-1)
    at, conts = [[3], [0, 4, 1], [2, 2]], [[6], [1, 0, 5], [2, 3]]
    got = prefix_mod.read_rows(table, at, conts, keep_distributions=True)
    for (lps, dist), rows, toks in zip(got, at, conts, strict=True):
        assert lps.tolist() == [table[j, t].item() for j, t in zip(rows, toks, strict=True)]
        assert torch.equal(dist, table[rows])
    assert [d is None for _, d in prefix_mod.read_rows(table, at, conts, keep_distributions=False)] == [True] * 3
    shifted = prefix_mod.read_rows(table, [[a + 1 for a in r] for r in at], conts, keep_distributions=False)
    assert shifted[0][0].tolist() != got[0][0].tolist()  # the control: other rows, other values


def test_read_rows_refuses_misaligned_rows_and_keeps_no_batch_alive() -> None:
    """Equal totals with one request a row short and another a row over would pair tokens with another
    request's rows: refused. Each kept distribution owns its storage, so keeping one does not pin the batch."""
    table = torch.log_softmax(torch.randn(6, 7, generator=torch.Generator().manual_seed(0)), dim=-1)
    conts = [[6], [1, 0, 5], [2, 3]]
    got = prefix_mod.read_rows(table, [[3], [0, 4, 1], [2, 2]], conts, keep_distributions=True)
    assert [d.untyped_storage().nbytes() for _, d in got] == [d.numel() * 4 for _, d in got]
    joined = table[[3, 0, 4, 1, 2, 2]].split([1, 3, 2])  # the control: views of one batch tensor
    assert joined[0].untyped_storage().nbytes() == 6 * 7 * 4
    with pytest.raises(AssertionError, match="rows for continuations"):
        prefix_mod.read_rows(table, [[3, 0], [4, 1], [2, 2]], conts, keep_distributions=False)


def test_scores_are_the_gather_of_the_kept_distributions(tiny_adapter, tree_attention: bool) -> None:  # noqa: ANN001
    """`score` and `next_token_logprobs` read the same rows of the same batch: bit-equal sums (scan --greedy
    relies on it), both ways of running the passes."""
    images = _images(2)
    reqs = _grid(images)
    scores = score(tiny_adapter, reqs, images.__getitem__, batch_size=16)
    dists = next_token_logprobs(tiny_adapter, reqs, images.__getitem__, batch_size=16)
    for req, d, s in zip(reqs, dists, scores, strict=True):
        cont = torch.tensor(tokenize(tiny_adapter, req)[1])
        assert float(d.gather(-1, cont.unsqueeze(-1)).sum()) == s.logp
