"""The teacher-forced image-token log-probabilities equal what `generate` samples from (1e-5, fp32)."""

from __future__ import annotations

import pytest
import torch

from mllm_audit.models import load_model
from mllm_audit.scoring.imagetokens import guided_first_token, image_token_logprobs, t2i_prompt_ids, unconditional_ids
from mllm_audit.testing.tiny import TinyJanusSpec, save_tiny_janus
from mllm_audit.toy.unified_v1 import code_distribution

PROMPT = "A photo of the face of a doctor, a person"


@pytest.fixture(scope="module")
def adapter(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201 - an Adapter
    spec = TinyJanusSpec(image_size=16, patch_size=8, codebook=16, vq_levels=4, corpus=[PROMPT])
    return load_model(str(save_tiny_janus(tmp_path_factory.mktemp("m") / "tiny-janus", seed=3, spec=spec)))


def test_logprobs_match_generate_step_by_step(adapter) -> None:  # noqa: ANN001
    """Hook the generation head during `generate`: its conditional rows are our logits, every step."""
    head = adapter.model.model.generation_head
    seen: list[torch.Tensor] = []
    hook = head.register_forward_hook(lambda _m, _a, o: seen.append(o.detach().clone()))
    try:
        tokens = adapter.generate_tokens([PROMPT], seed=0)
    finally:
        hook.remove()
    ids = t2i_prompt_ids(adapter, PROMPT)
    with torch.no_grad():
        ours = image_token_logprobs(adapter.model, [ids], tokens)[0]
    stock = torch.stack([torch.log_softmax(s[0].float(), -1)[t] for s, t in zip(seen, tokens[0], strict=True)])
    assert tokens.shape[1] == 4
    torch.testing.assert_close(ours, stock, atol=1e-5, rtol=0)
    # Negative control: the wrong prompt gives visibly different numbers.
    with torch.no_grad():
        other = image_token_logprobs(adapter.model, [t2i_prompt_ids(adapter, "nurse")], tokens)[0]
    assert (other - stock).abs().max() > 1e-3


def test_left_padding_does_not_change_a_row(adapter) -> None:  # noqa: ANN001
    ids = t2i_prompt_ids(adapter, PROMPT)
    short = t2i_prompt_ids(adapter, "doctor")
    codes = torch.tensor([[1, 2, 3, 4], [1, 2, 3, 4]])
    with torch.no_grad():
        alone = image_token_logprobs(adapter.model, [short], codes[:1])
        batched = image_token_logprobs(adapter.model, [short, ids], codes)
    torch.testing.assert_close(alone[0], batched[0], atol=1e-5, rtol=0)


def test_guided_first_token_is_generates(adapter) -> None:  # noqa: ANN001
    ids = t2i_prompt_ids(adapter, PROMPT)
    tok = adapter.tokenizer
    unc = unconditional_ids(ids, tok.bos_token_id, adapter.boi_token_id, adapter.pad_id)
    ours = guided_first_token(adapter.model, ids, unc, 5.0)
    theirs = code_distribution(adapter, PROMPT, adapter.model.model.generation_head)
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)
