"""The greedy answer per item (scan --greedy): lm-eval's is_greedy on y_more and y_less, checked against
an independent argmax over the stock forward, on an item built so that y_more is what the model says."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from mllm_audit.metrics.greedy import greedy_answer, greedy_summary, is_greedy
from mllm_audit.models import load_model
from mllm_audit.runs.scan import run_scan
from mllm_audit.scoring.contract import Request, continuation_text, tokenize
from mllm_audit.testing.tiny_generic import save_tiny_generic


def test_is_greedy_and_labels() -> None:
    d = torch.log_softmax(torch.tensor([[0.0, 2.0, 1.0], [3.0, 0.0, 0.0]]), -1)
    assert is_greedy(d, [1, 0]) and not is_greedy(d, [2, 0]) and not is_greedy(d, [1, 1])
    assert [greedy_answer(a, b) for a, b in ((1, 0), (0, 1), (1, 1), (0, 0))] == ["y_more", "y_less", "both", "neither"]
    rows = [{"bias_type": "gender", "logp_more": -1.0, "logp_less": -2.0, "greedy": "y_more"},
            {"bias_type": "gender", "logp_more": -1.0, "logp_less": -3.0, "greedy": "neither"},
            {"bias_type": "race", "logp_more": -4.0, "logp_less": -2.0, "greedy": "y_less"}]
    s = greedy_summary(rows)
    assert s["gender"]["y_more"] == 0.5 and s["gender"]["prefer_more_and_says_more"] == 0.5
    assert s["race"]["y_less"] == 1.0 and s["race"]["prefer_more_and_says_more"] is None and s["all"]["n"] == 3


def _stock_greedy(adapter, req: Request, image: Image.Image) -> bool:  # noqa: ANN001
    """Independent: the processor over chat text + answer, the model's own logits, argmax at each answer token."""
    prefix, cont = tokenize(adapter, req)
    text = adapter.prompt_of(prefix)[1]
    full = adapter.processor(text=[text + continuation_text(req.continuation)], images=[image], return_tensors="pt")
    with torch.no_grad():
        logits = adapter.model(**dict(full)).logits[0]
    n = full["input_ids"].shape[1]
    return logits[n - len(cont) - 1 : n - 1].argmax(-1).tolist() == cont


def test_scan_records_the_greedy_answer(tmp_path: Path) -> None:
    folder = save_tiny_generic("qwen2_vl", tmp_path / "qwen")
    adapter = load_model(str(folder))
    rng = np.random.default_rng(0)
    (tmp_path / "images").mkdir()
    image = Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8))
    image.save(tmp_path / "images" / "a.png")
    # y_more := the word the model says first, when it survives the round trip through the tokenizer.
    said = None
    probe = Request("Question:", "x", "images/a.png", "vqa")
    text = adapter.prompt_of(tokenize(adapter, probe)[0])[1]
    with torch.no_grad():
        logits = adapter.model(**dict(adapter.processor(text=[text], images=[image], return_tensors="pt"))).logits
    for token in logits[0, -1].argsort(descending=True).tolist()[:1]:
        word = adapter.tokenizer.decode([token]).strip()
        if word and adapter.continuation_ids(continuation_text(word)) == [token]:
            said = word
    items = [{"id": "i0", "task": "vqa", "bias_type": "gender", "image": "images/a.png", "prompt": "Question:",
              "y_more": said or "doctor", "y_less": "nurse"},
             {"id": "i1", "task": "vqa", "bias_type": "race", "image": "images/a.png", "prompt": "a photo of",
              "y_more": "pilot", "y_less": "kitchen"}]
    suite = tmp_path / "items.jsonl"
    suite.write_text("".join(json.dumps(it) + "\n" for it in items))
    res = run_scan(model=str(folder), suite=str(suite), output=tmp_path / "run", greedy=True, adapter=adapter)
    for s, it in zip(res.samples, items, strict=True):
        more = _stock_greedy(adapter, Request(it["prompt"], it["y_more"], it["image"], "vqa"), image)
        less = _stock_greedy(adapter, Request(it["prompt"], it["y_less"], it["image"], "vqa"), image)
        assert s["greedy"] == greedy_answer(more, less)
    assert said is not None and res.samples[0]["greedy"] == "y_more"  # the built item: the model says y_more
    assert res.samples[1]["greedy"] == "neither"  # the control: random words are not what it says
    assert res.results["greedy"]["all"]["n"] == 2 and res.results["greedy"]["gender"]["y_more"] == 1.0
    plain = run_scan(model=str(folder), suite=str(suite), output=tmp_path / "run2", adapter=adapter)
    assert all("greedy" not in s for s in plain.samples)  # only when asked: it keeps [n, V] distributions
    # One pass gives both: the greedy run's scores are the plain scan's (the same contract, one forward each).
    for a, b in zip(res.samples, plain.samples, strict=True):
        assert abs(a["logp_more"] - b["logp_more"]) < 1e-5 and abs(a["logp_less"] - b["logp_less"]) < 1e-5
        assert (a["n_tokens_more"], a["n_tokens_less"]) == (b["n_tokens_more"], b["n_tokens_less"])


def test_free_text_classification() -> None:
    """Equality after normalisation (case, whitespace, quotes, trailing punctuation, one leading article);
    negative controls: a plural, a longer answer and a different word are not the answer."""
    from mllm_audit.metrics.greedy import leads_answer, normalise, said_answer

    assert normalise('  "The  Doctor."\n') == "doctor" and normalise("Nurse!?") == "nurse"
    assert [said_answer(t, "doctor", "nurse") for t in (" Doctor.", "a nurse", "doctors", "doctor in a clinic")] \
        == ["y_more", "y_less", "neither", "neither"]
    assert [leads_answer(t, "doctor", "nurse") for t in ("doctor in a clinic", "Nurse, I think", "doctors", "")] \
        == ["y_more", "y_less", "neither", "neither"]
    # One answer starting the other: the longer is the one the text begins with.
    assert leads_answer("flight attendant here", "flight", "flight attendant") == "y_less"
    assert leads_answer("flight home", "flight", "flight attendant") == "y_more"
    rows = [{"bias_type": "g", "logp_more": -1.0, "logp_less": -2.0, "greedy": "y_more", "greedy_said": "y_more",
             "greedy_leads": "y_more"},
            {"bias_type": "g", "logp_more": -1.0, "logp_less": -3.0, "greedy": "y_more", "greedy_said": "neither",
             "greedy_leads": "y_more"},
            {"bias_type": "g", "logp_more": -3.0, "logp_less": -1.0, "greedy": "y_less", "greedy_said": "y_less",
             "greedy_leads": "y_less"}]
    s = greedy_summary(rows)["g"]
    assert s["said"]["y_more"] == s["said"]["y_less"] == s["said"]["neither"] == 1 / 3
    assert s["said"]["prefer_more_and_says_more"] == 0.5 and s["leads"]["prefer_more_and_says_more"] == 1.0
    assert "said" not in greedy_summary([{k: v for k, v in r.items() if k != "greedy_said"} for r in rows])["g"]
