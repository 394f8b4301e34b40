"""The lmms-eval model answers loglikelihood requests with the contract: equal to the stock forward
(1e-5) and to the tool's own scores, request by request, in lmms-eval's own request layout."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("lmms_eval.api.model", reason="lmms-eval is not installed (pip install mllm-audit[bridges])")

from lmms_eval.api.instance import Instance  # noqa: E402

from mllm_audit.integrations.lmms_model import MllmAuditLMM  # noqa: E402
from mllm_audit.scoring.contract import Request, score, tokenize  # noqa: E402

CHOICES = ["doctor", "nurse", "flight attendant"]


def _docs() -> list[dict]:
    rng = np.random.default_rng(3)
    docs = [{"image": Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)),
             "question": q, "mllm_audit_task": t}
            for q, t in [("Is this person a doctor or a nurse?", "vqa"), ("a photo of", "ic"), ("Who is it?", "vqa")]]
    docs.append({"image": None, "question": "The capital of France is", "mllm_audit_task": "ic"})
    return docs


def _instances(docs: list[dict]) -> list[Instance]:
    """As lmms-eval's multiple_choice task builds them:
    (ctx, delimiter + choice, doc_to_visual, doc_id, task, split)."""
    def doc_to_visual(doc: dict) -> list:
        return [doc["image"]] if doc["image"] is not None else []

    return [Instance(request_type="loglikelihood", idx=i,
                     arguments=(doc["question"], f" {c}", doc_to_visual, d, "bias_toy", "test"),
                     metadata={"task": "bias_toy", "doc_id": d, "repeats": 1})
            for d, doc in enumerate(docs) for i, c in enumerate(CHOICES)]


def _stock(adapter, req: Request, image) -> float:  # noqa: ANN001
    """The stock transformers forward's loss x n_tokens, labels masking all but the continuation."""
    prefix, cont = tokenize(adapter, req)
    ids = torch.tensor([prefix + cont])
    labels = ids.clone()
    labels[:, : len(prefix)] = -100
    with torch.no_grad():
        if image is None:
            out = adapter.model.language_model(input_ids=ids, labels=labels)
        else:
            inputs = adapter.processor(images=image, text=adapter.format_prompt(req.prompt, req.task),
                                       return_tensors="pt")
            assert inputs["input_ids"][0].tolist() == prefix
            out = adapter.model(pixel_values=inputs["pixel_values"], input_ids=ids, labels=labels)
    return -out.loss.item() * len(cont)


def test_loglikelihood_equals_the_stock_forward_and_the_scan(tiny_adapter) -> None:  # noqa: ANN001
    docs = _docs()
    lm = MllmAuditLMM(adapter=tiny_adapter, batch_size=2)
    lm.task_dict = {"bias_toy": {"test": docs}}
    insts = _instances(docs)
    got = lm.loglikelihood(insts)
    reqs, images = lm.requests_of(insts)
    assert [r.task for r in reqs[:3]] == ["vqa"] * 3 and reqs[0].continuation == " doctor"
    ours = score(tiny_adapter, reqs, images.__getitem__, batch_size=16)
    for (lp, greedy), req, s in zip(got, reqs, ours, strict=True):
        image = images[req.image] if req.image is not None else None
        assert lp == pytest.approx(_stock(tiny_adapter, req, image), abs=1e-5)
        assert lp == pytest.approx(s.logp, abs=1e-5) and isinstance(greedy, bool)
    # Negative control: lmms-eval's own VLM models return the mean loss (its LLaVA: issue #370); that
    # number is not the log-probability, and the same comparison visibly fails on it.
    mean_loss = [-s.logp / s.n_tokens for s in ours]
    assert max(abs(a - b[0]) for a, b in zip(mean_loss, got, strict=True)) > 1e-2


@pytest.fixture(scope="module")
def toy():  # noqa: ANN201 - (adapter, suite): the shipped toy world, whose answers are not random
    from mllm_audit.models import load_model
    from mllm_audit.suites.items import load_suite

    return load_model("toy"), load_suite("toy")


def test_is_greedy_marks_the_argmax_continuation(toy) -> None:  # noqa: ANN001
    """The toy model's greedy answer (decoded through the same adapter) is flagged greedy, the other not."""
    from mllm_audit.integrations.generate import greedy_text
    from mllm_audit.suites.items import load_image

    adapter, suite = toy
    item = next(it for it in suite.items if it.task == "vqa")
    doc = {"image": load_image(suite.image_path(item.image)), "mllm_audit_task": "vqa"}
    lm = MllmAuditLMM(adapter=adapter)
    lm.task_dict = {"t": {"test": [doc]}}
    answer = greedy_text(adapter, item.prompt, "vqa", doc["image"], 1)
    assert answer.strip() in (item.y_more, item.y_less)
    other = item.y_less if answer.strip() == item.y_more else item.y_more
    insts = [Instance(request_type="loglikelihood", idx=i, arguments=(item.prompt, f" {a}", lambda d: [d["image"]],
                                                                          0, "t", "test"),
                      metadata={"task": "t", "doc_id": 0, "repeats": 1}) for i, a in enumerate([answer.strip(), other])]
    (lp_a, greedy_a), (lp_b, greedy_b) = lm.loglikelihood(insts)
    assert greedy_a and not greedy_b and lp_a > lp_b


def test_greedy_generation_equals_the_stock_generate(toy) -> None:  # noqa: ANN001
    """generate_until's decoder (prompt ids, image features, KV cache through the adapter) gives the tokens
    of transformers' own greedy `generate`; negative control: another item's stock tokens differ."""
    from mllm_audit.integrations.generate import greedy_ids
    from mllm_audit.suites.items import load_image

    adapter, suite = toy
    vqa = next(it for it in suite.items if it.task == "vqa")
    ic = next(it for it in suite.items if it.task == "ic")

    def stock(it) -> list[int]:  # noqa: ANN001
        inputs = adapter.processor(images=load_image(suite.image_path(it.image)),
                                   text=adapter.format_prompt(it.prompt, it.task), return_tensors="pt")
        with torch.no_grad():
            out = adapter.model.generate(**inputs, max_new_tokens=6, do_sample=False, num_beams=1)
        return out[0].tolist()[-6:]

    ours = greedy_ids(adapter, vqa.prompt, vqa.task, load_image(suite.image_path(vqa.image)), 6)
    assert ours == stock(vqa)
    assert ours != stock(ic)


def test_generate_until_stops_at_the_stop_string(tiny_adapter) -> None:  # noqa: ANN001
    docs = _docs()[:1]
    lm = MllmAuditLMM(adapter=tiny_adapter, max_new_tokens=6)
    lm.task_dict = {"bias_toy": {"test": docs}}
    free = Instance(request_type="generate_until", idx=0,
                    arguments=(docs[0]["question"], {"until": []}, lambda d: [d["image"]], 0, "bias_toy", "test"),
                    metadata={"task": "bias_toy", "doc_id": 0, "repeats": 1})
    (text,) = lm.generate_until([free])
    assert len(tiny_adapter.tokenizer(text, add_special_tokens=False).input_ids) <= 6
    if len(text.strip()) > 1:
        stop = text.strip()[-1]
        cut = Instance(request_type="generate_until", idx=0,
                       arguments=(docs[0]["question"], {"until": [stop]}, lambda d: [d["image"]], 0, "bias_toy",
                                  "test"),
                       metadata={"task": "bias_toy", "doc_id": 0, "repeats": 1})
        (short,) = lm.generate_until([cut])
        assert stop not in short and text.startswith(short)


def test_lmms_eval_finds_the_model_through_the_declared_entry_point(tmp_path: Path) -> None:
    """pyproject's `lmms_eval.models` entry point, installed as pip lays it out, is what lmms-eval's
    registry resolves `--model mllm_audit` to."""
    tomllib = pytest.importorskip("tomllib")
    root = Path(__file__).resolve().parents[2]
    eps = tomllib.loads((root / "pyproject.toml").read_text())["project"]["entry-points"]["lmms_eval.models"]
    info = tmp_path / "site" / "mllm_audit_probe-0.1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: mllm-audit-probe\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text("[lmms_eval.models]\n" + "".join(f"{k} = {v}\n" for k, v in eps.items()))
    code = ("from lmms_eval.models import get_model; c = get_model('mllm_audit'); "
            "print(c.__module__ + '.' + c.__name__)")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path / "site"), str(root)])}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[-1] == "mllm_audit.integrations.lmms_model.MllmAuditLMM"
