"""The greedy decoder (models/decode.py: scan --greedy and generate_until) against transformers' own
`model.generate(do_sample=False)` on tiny models of every kind the tool scores: the protocol families
(BLIP-2, InstructBLIP, LLaVA-1.5, Janus, Emu3) and generic architectures (Qwen2-VL's M-RoPE, Mllama's
cross-attention, Idefics3's splits, PaliGemma's prefix-LM). Tokens equal, and each step's logits equal
generate's; negative controls: a decoder that drops the KV cache, or reads another image, differs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from mllm_audit.models import load_model
from mllm_audit.models.decode import greedy_ids, greedy_text
from mllm_audit.testing import tiny
from mllm_audit.testing.tiny_generic import save_tiny_generic

PROMPT = "Is this person a doctor or a nurse?"
N = 6
PROTOCOL = ["blip2", "instructblip", "llava", "janus", "emu3"]
GENERIC = ["qwen2_vl", "mllama", "idefics3", "paligemma", "smolvlm"]


def _images() -> list[Image.Image]:
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)) for _ in range(2)]


@pytest.fixture(scope="module", params=PROTOCOL + GENERIC)
def adapter(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Any:
    out = tmp_path_factory.mktemp("m") / request.param
    if request.param in GENERIC:
        return load_model(str(save_tiny_generic(request.param, out)))
    return load_model(str(getattr(tiny, f"save_tiny_{request.param}")(out)))


def stock_inputs(adapter: Any, image: Image.Image | None, prompt: str = PROMPT) -> dict[str, Any]:
    """The model's own processor over the prompt as each family's conformance test builds it."""
    fam = adapter.card.family
    if fam == "generic":
        return adapter.real_inputs(adapter.chat_text(adapter.format_prompt(prompt, "vqa"), image is not None), image)
    if fam in ("blip2", "instructblip"):
        return dict(adapter.processor(images=image, text=adapter.format_prompt(prompt, "vqa"), return_tensors="pt"))
    text = adapter.chat_text(adapter.format_prompt(prompt, "vqa"), True)
    if fam == "emu3":
        return dict(adapter.processor(images=adapter.resize([image]), text=[text], return_tensors="pt"))
    return dict(adapter.processor(images=image, text=text, return_tensors="pt"))


def stock_generate(adapter: Any, image: Image.Image | None) -> tuple[list[int], torch.Tensor]:
    """transformers' greedy generate: the new tokens and each step's raw logits (no CFG: Emu3's card-less
    generation_config asks guidance 3 for image generation)."""
    inputs = stock_inputs(adapter, image)
    with torch.no_grad():
        out = adapter.model.generate(**inputs, max_new_tokens=N, do_sample=False, num_beams=1, guidance_scale=None,
                                     output_logits=True, return_dict_in_generate=True)
    return out.sequences[0, -len(out.logits):].tolist(), torch.stack([lg[0] for lg in out.logits]).float()


def step_logits(adapter: Any, image: Image.Image | None, tokens: list[int], cached: bool = True) -> torch.Tensor:
    """Our decoder's logits along `tokens` (the family's prefill and cached steps). `cached=False` is the
    negative control: each step runs its token alone, without the prompt's KV cache."""
    first, step = adapter.greedy_start(PROMPT, "vqa", image)
    out = [first]
    for t in tokens[:-1]:
        if cached:
            out.append(step(t))
        else:
            with torch.no_grad():
                hidden = _uncached_hidden(adapter, torch.tensor([[t]]))
                out.append(adapter.model.get_output_embeddings()(hidden)[0, -1].float())
    return torch.stack(out)


def _uncached_hidden(adapter: Any, ids: torch.Tensor) -> torch.Tensor:
    """The last hidden state of `ids` run alone (no cache): what a decoder that forgot the prompt sees."""
    emb = adapter.input_embeddings()(ids)
    backbone = adapter.model.model if hasattr(adapter.model, "model") else adapter.model.language_model.model
    lm = getattr(backbone, "language_model", backbone)
    return lm(inputs_embeds=emb, use_cache=False).last_hidden_state


def assert_same_tokens(adapter: Any, ours: list[int], stock: list[int]) -> None:
    """Every token generate chose, the full budget; only a final EOS (which the decoder drops) may differ."""
    eos = adapter.model.generation_config.eos_token_id
    eos = set(eos if isinstance(eos, list) else [eos]) | {adapter.tokenizer.eos_token_id}
    assert ours == stock or (ours == stock[:-1] and stock[-1] in eos), (ours, stock)


def test_greedy_tokens_equal_stock_generate(adapter: Any) -> None:
    image = _images()[0]
    stock, logits = stock_generate(adapter, image)
    ours = greedy_ids(adapter, PROMPT, "vqa", image, N)
    assert_same_tokens(adapter, ours, stock)
    ours_logits = step_logits(adapter, image, stock)
    assert (ours_logits[:, : logits.shape[1]] - logits).abs().max().item() < 1e-4
    # The text is those tokens decoded, special tokens dropped.
    assert greedy_text(adapter, PROMPT, "vqa", image, N) == adapter.tokenizer.decode(ours, skip_special_tokens=True)


@pytest.mark.parametrize("arch", ["qwen2_vl", "llava"])
def test_negative_controls_differ(arch: str, tmp_path: Path) -> None:
    """A decoder that reads another image, or drops the prompt's cache, gives other logits than generate."""
    folder = save_tiny_generic(arch, tmp_path / arch) if arch != "llava" else tiny.save_tiny_llava(tmp_path / arch)
    a = load_model(str(folder))
    image, other = _images()
    stock, logits = stock_generate(a, image)
    good = (step_logits(a, image, stock)[:, : logits.shape[1]] - logits).abs().max().item()
    wrong_image = (step_logits(a, other, stock)[:, : logits.shape[1]] - logits).abs().max().item()
    no_cache = (step_logits(a, image, stock, cached=False)[:, : logits.shape[1]] - logits).abs().max().item()
    assert good < 1e-4 and wrong_image > 1e-3 and no_cache > 1e-3


def test_stop_strings_and_budget(tmp_path: Path) -> None:
    """At most max_new_tokens; the card's generation.stop_strings cut the text (as the caller's `until` do)."""
    a = load_model(str(tiny.save_tiny_llava(tmp_path / "llava")))
    image = _images()[0]
    full = greedy_text(a, PROMPT, "vqa", image, N)
    assert len(greedy_ids(a, PROMPT, "vqa", image, 2)) == 2 and greedy_ids(a, PROMPT, "vqa", image, 0) == []
    stop = full.strip()[-1]
    a.card.generation["stop_strings"] = [stop]
    cut = greedy_text(a, PROMPT, "vqa", image, N)
    assert stop not in cut and full.startswith(cut) and cut != full


@pytest.mark.parametrize("arch", ["qwen2_vl", "paligemma"])
def test_outside_the_prefix_cache_list_the_decoder_runs_whole_rows(arch: str, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """An architecture scored without a cache (not in PREFIX_CACHE, e.g. one loaded with --trust-generic) is
    decoded without one too, and still gives generate's tokens; the control: listed, the same model decodes on
    its cache (the spy sees it), so the check tells the two paths apart."""
    import mllm_audit.models.families.generic as generic

    a = load_model(str(save_tiny_generic(arch, tmp_path / arch)))
    image = _images()[0]
    stock, _ = stock_generate(a, image)
    monkeypatch.setattr(generic, "PREFIX_CACHE", set())
    seen: list[bool] = []
    forward = a.model.forward

    def spy(*args: Any, **kw: Any) -> Any:
        seen.append(kw.get("past_key_values") is not None or bool(kw.get("use_cache")))
        return forward(*args, **kw)

    monkeypatch.setattr(a.model, "forward", spy)
    ours = greedy_ids(a, PROMPT, "vqa", image, N)
    assert_same_tokens(a, ours, stock)
    assert seen and not any(seen)  # no step read or kept a cache
    monkeypatch.setattr(generic, "PREFIX_CACHE", {arch})
    seen.clear()
    assert greedy_ids(a, PROMPT, "vqa", image, N) == ours and any(seen)  # the listed path does use the cache


def test_stop_check_reads_the_tail_and_stops_where_the_whole_text_does(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """A stop string is looked for in the tail the new token completes, not in the whole answer decoded again
    at every step (the old check: 63 tokens in its last call here). It stops where that whole-text check
    stops, for stop strings ending at tokens all along a 64-token answer that splits characters into bytes."""
    from mllm_audit.models.decode import TAIL_MARGIN

    a = load_model(str(tiny.save_tiny_llava(tmp_path / "llava")))
    image = _images()[0]
    full = greedy_ids(a, PROMPT, "vqa", image, 64)
    tok = a.tokenizer
    texts = [tok.decode(full[:k], skip_special_tokens=True) for k in range(1, len(full) + 1)]
    assert len(full) == 64 and "\ufffd" in texts[-1]  # byte pieces: decoded slices start mid-character
    stopped = []
    for k in range(3, 64, 4):
        stop = texts[k - 1][-3:]
        want = next(j for j, t in enumerate(texts, 1) if stop in t)  # the whole-text check's first stop
        assert greedy_ids(a, PROMPT, "vqa", image, 64, until=[stop]) == full[:want], (k, stop)
        stopped.append(want)
    # Stops at many tokens, past twice the window too (the answer repeats itself after about 30 tokens).
    assert len(set(stopped)) > 5 and max(stopped) > 2 * (3 + TAIL_MARGIN)
    calls: list[int] = []
    decode = tok.decode

    def counted(ids: Any, **kw: Any) -> Any:
        calls.append(len(ids))
        return decode(ids, **kw)

    monkeypatch.setattr(tok, "decode", counted)
    assert greedy_ids(a, PROMPT, "vqa", image, 64, until=["<never>"]) == full
    assert max(calls) <= len("<never>") + TAIL_MARGIN and sum(calls) < 64 * 65 // 2
