"""The tokenisation boundary: with a legacy sentencepiece-style tokenizer (Prepend("▁"), as real
LLaMA / Vicuna tokenizers carried) a continuation tokenized alone starts with a stray "▁" that the
same text after the prompt does not have; scoring uses the joint tokenisation split at the prompt
boundary and records that it did."""

from __future__ import annotations

import string
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from mllm_audit.models import load_model
from mllm_audit.scoring.contract import Request, score, tokenize, tokenize_all

WORDS = ["Question", "Answer", "Is", "it", "red", "blue", "yes", "no", "a", "photo", "of", "dog", "cat"]
PROMPT = "Question: Is it red? Answer:"


def legacy_sentencepiece_tokenizer() -> Any:
    """A Unigram tokenizer normalised like legacy LlamaTokenizerFast: Prepend("▁"), spaces -> "▁"."""
    from tokenizers import Tokenizer, decoders, models, normalizers, processors
    from transformers import PreTrainedTokenizerFast

    pieces = [("<unk>", 0.0), ("<s>", 0.0), ("</s>", 0.0), ("<pad>", 0.0), ("▁", -2.0)]
    pieces += [(c, -6.0) for c in string.ascii_letters + string.digits + string.punctuation]
    pieces += [("▁" + w, -1.0) for w in WORDS] + [(w, -1.5) for w in WORDS]
    tok = Tokenizer(models.Unigram(pieces, unk_id=0))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.Fuse(), decoders.Strip(" ", 1, 0)])
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>"
    )


@pytest.fixture(scope="module")
def sp_adapter(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201 - an Adapter
    from mllm_audit.testing.tiny import save_tiny_blip2

    folder = save_tiny_blip2(tmp_path_factory.mktemp("m") / "sp-blip2", tokenizer=legacy_sentencepiece_tokenizer())
    return load_model(str(folder))


def _pieces(adapter: Any, ids: list[int]) -> list[str]:
    return adapter.tokenizer.convert_ids_to_tokens(ids)


def test_the_tokenizer_has_the_boundary_problem(sp_adapter) -> None:  # noqa: ANN001
    """The precondition (and the old contract's failure): alone, " yes" starts with a stray "▁"."""
    tok = sp_adapter.tokenizer
    alone = tok(" yes", add_special_tokens=False).input_ids
    joint = tok(PROMPT + " yes", add_special_tokens=False).input_ids
    head = tok(PROMPT, add_special_tokens=False).input_ids
    assert _pieces(sp_adapter, alone) == ["▁", "▁yes"]
    assert joint[: len(head)] == head and _pieces(sp_adapter, joint[len(head) :]) == ["▁yes"]


def test_scoring_uses_the_joint_split_and_records_it(sp_adapter) -> None:  # noqa: ANN001
    before = sp_adapter.counters.joint_tokenization
    reqs = [Request(PROMPT, "yes"), Request(PROMPT, "no", image="img"), Request(PROMPT, "blue dog")]
    conts = [tokenize(sp_adapter, r)[1] for r in reqs]
    assert [_pieces(sp_adapter, c) for c in conts] == [["▁yes"], ["▁no"], ["▁blue", "▁dog"]]
    assert sp_adapter.counters.joint_tokenization == before + 3
    assert "joint_tokenization" in sp_adapter.counters.as_dict()


def test_scores_equal_the_stock_forward_over_the_joint_text(sp_adapter) -> None:  # noqa: ANN001
    """The score is the stock forward's over exactly the tokens of prompt + answer as one text."""
    rng = np.random.default_rng(0)
    images = {"img": Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8))}
    reqs = [Request(PROMPT, "yes", image="img"), Request(PROMPT, "blue dog", image="img"), Request(PROMPT, "no")]
    got = score(sp_adapter, reqs, images.__getitem__, batch_size=2)
    for req, s in zip(reqs, got, strict=True):
        full = sp_adapter.tokenizer(PROMPT + " " + req.continuation).input_ids  # <s> + joint tokens
        n_prompt = len(sp_adapter.tokenizer(PROMPT).input_ids)
        ids = torch.tensor([full])
        labels = ids.clone()
        labels[:, :n_prompt] = -100
        with torch.no_grad():
            if req.image is None:
                out = sp_adapter.model.language_model(input_ids=ids, labels=labels)
            else:
                inputs = sp_adapter.processor(images=images["img"], text=PROMPT, return_tensors="pt")
                n_img = sp_adapter.n_image_tokens
                ids = torch.tensor([[sp_adapter.image_token_id] * n_img + full])
                labels = torch.cat([torch.full((1, n_img), -100), labels], dim=1)
                out = sp_adapter.model(pixel_values=inputs["pixel_values"], input_ids=ids, labels=labels)
        n = len(full) - n_prompt
        assert s.n_tokens == n == len(req.continuation.split())  # no stray "▁" token scored
        assert s.logp == pytest.approx(-out.loss.item() * n, abs=1e-5)


def test_byte_level_tokenizers_are_unchanged(tiny_adapter) -> None:  # noqa: ANN001
    """The control: a tokenizer without the problem keeps the separate tokenisation, nothing recorded."""
    before = tiny_adapter.counters.joint_tokenization
    prefix, cont = tokenize(tiny_adapter, Request("Is it red?", "blue green", image="x"))
    assert cont == tiny_adapter.continuation_ids(" blue green")
    assert tiny_adapter.counters.joint_tokenization == before


def test_run_records_the_count(sp_adapter) -> None:  # noqa: ANN001
    sp_adapter.counters.joint_tokenization = 0
    score(sp_adapter, [Request(PROMPT, "yes"), Request(PROMPT, "no")])
    assert sp_adapter.counters.as_dict()["joint_tokenization"] == 2


def test_tokenize_all_runs_the_tokenizer_once_per_distinct_request(sp_adapter, monkeypatch) -> None:  # noqa: ANN001
    """A suite repeats its prompts and answers on every image: `tokenize_all` (what `score` uses) gives each
    request `tokenize`'s ids and counts the joint split per request, but tokenises each distinct request once.
    The control: per-request `tokenize` calls the tokenizer for every copy, so the count below can fail."""
    reqs = [Request(PROMPT, a, image=k) for k in ("i0", "i1", "i2") for a in ("yes", "blue dog")]
    reqs += [Request(PROMPT, "yes"), Request(PROMPT, "yes", task="vqa")]  # text-only and another task: distinct
    calls: list[str] = []
    real = sp_adapter.prompt_ids
    monkeypatch.setattr(sp_adapter, "prompt_ids", lambda *a, **k: calls.append(a[0]) or real(*a, **k))
    expected = [tokenize(sp_adapter, r) for r in reqs]
    assert len(calls) == len(reqs) == 8  # the control
    calls.clear()
    before = sp_adapter.counters.joint_tokenization
    got = tokenize_all(sp_adapter, reqs)
    assert got == expected
    assert len(calls) == 4  # (yes, blue dog) with an image, yes text-only, yes under the vqa task
    assert sp_adapter.counters.joint_tokenization == before + len(reqs)  # every request counted, as tokenize does
