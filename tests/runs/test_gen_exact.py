"""The exact guided distribution of a classified attribute (runs/gen_exact.py) on the toy unified world,
and `fix`'s control check on it (issue 26: the anchored SFT skews the balanced control "student")."""

from __future__ import annotations

from types import SimpleNamespace

import pytest


@pytest.fixture(scope="module")
def world():  # noqa: ANN201 - (suite, classifier)
    from mllm_audit.classifiers.classify import load_classifier
    from mllm_audit.runs.gen_scan import load_gen_suite

    suite = load_gen_suite("gen-toy-v2")
    return suite, load_classifier(suite.classifier)


def test_exact_shares_are_what_generate_draws(world) -> None:  # noqa: ANN001
    """The walk's gender share equals the guided first-token mass of the male face codes, and 512 real
    draws land inside its binomial 99.9 % band."""
    from mllm_audit.metrics.gen_intervals import clopper_pearson
    from mllm_audit.models import load_model
    from mllm_audit.runs.gen_exact import exact_shares
    from mllm_audit.scoring.imagetokens import guided_first_token, t2i_prompt_ids, unconditional_ids

    suite, clf = world
    adapter = load_model("toy-janus-v2")
    student = next(p for p in suite.prompts if p.id == "student")
    ex = exact_shares(adapter, clf, student.prompt)
    assert ex is not None and ex["pruned_mass"] < 1e-5 and ex["person_mass"] > 0.99999
    tk = adapter.tokenizer
    ids = t2i_prompt_ids(adapter, student.prompt)
    first = guided_first_token(adapter.model, ids, unconditional_ids(ids, tk.bos_token_id, adapter.boi_token_id,
                                                                     adapter.pad_id), 5.0)
    assert ex["shares"]["gender"][0] == pytest.approx(float(first[:4].sum()), abs=1e-4)  # measured 0.4941
    preds = clf.classify(adapter.generate_images([student.prompt], 512, seed=3, batch_size=128), 128)
    male = sum(p.labels.get("gender") == "male" for p in preds if p.person)
    lo, hi = clopper_pearson(male, 512, 0.001)
    assert lo < ex["shares"]["gender"][0] < hi


def test_the_classifier_is_in_the_loop_on_the_tokenizer_bias_control(world) -> None:  # noqa: ANN001
    """Negative control for reading face codes instead of images: the control variant's LM draws face codes
    evenly but its codebook renders two female faces as male, so the exact *classified* share is ~0.76
    male while the face codes say ~0.5."""
    from mllm_audit.models import load_model
    from mllm_audit.runs.gen_exact import exact_shares, image_tree

    suite, clf = world
    adapter = load_model("toy-janus-v2-control")
    student = next(p for p in suite.prompts if p.id == "student")
    codes, probs, _ = image_tree(adapter, student.prompt)
    by_code = float(probs[codes[:, 0] < 4].sum())
    read = exact_shares(adapter, clf, student.prompt)["shares"]["gender"][0]
    assert abs(by_code - 0.5) < 0.05 and read > 0.7


def test_models_that_cannot_be_enumerated_say_why() -> None:
    from mllm_audit.runs.gen_exact import exact_unavailable

    inner = SimpleNamespace(generation_head=object())

    def fake(n: int, **gen: object) -> SimpleNamespace:
        settings = {"guidance_scale": 5.0, "temperature": 1.0, "do_sample": True, "top_k": 0, "top_p": 1.0, **gen}
        return SimpleNamespace(model=SimpleNamespace(model=inner, config=None), generates_images=True,
                               n_image_tokens=n, generation_settings=lambda: settings)

    assert exact_unavailable(fake(4)) is None
    assert exact_unavailable(fake(576)) == "576 image tokens per image (enumerated only up to 16)"
    assert exact_unavailable(fake(4, top_k=50)) == "top-k / top-p sampling"
    assert exact_unavailable(fake(4, do_sample=False)) == "greedy decoding"


@pytest.mark.slow
def test_the_anchored_sft_fix_fails_its_exact_control_check(world) -> None:  # noqa: ANN001
    """Anchored balanced SFT (lr 1e-3, guided term, anchor 0.3, seed 0; about a minute): held-out targets
    improve, the balanced control "student" goes 0.01 -> 0.30 on the exact distribution (p_male 0.49 ->
    0.65) and the fix's own check fails it; the base against itself passes (negative control)."""
    from mllm_audit.editors.balanced import rows_from_folder
    from mllm_audit.editors.bpo import BalancedSettings, add_lora, train_sft
    from mllm_audit.metrics.gen_intervals import control_check_exact
    from mllm_audit.models import load_model
    from mllm_audit.runs.gen_exact import exact_controls
    from mllm_audit.runs.locate import labelled_images_of

    suite, clf = world
    adapter = load_model("toy-janus-v2")
    train = [p for p in suite.prompts if p.group == "train"]
    rows = rows_from_folder(adapter, labelled_images_of("gen-toy-v2"), train, clf.attributes)
    before = exact_controls(adapter, clf, suite.prompts)
    assert isinstance(before, dict) and set(before) == {"writer", "student", "cook", "artist"}
    assert control_check_exact(before, before)["passed"]
    s = BalancedSettings(sft_lr=1e-3, sft_guidance=5.0, anchor=0.3, seed=0)
    train_sft(add_lora(adapter.model, s), rows, s)
    after = exact_controls(adapter, clf, suite.prompts)
    res = control_check_exact(before, after)
    st = res["prompts"]["student"]["gender"]
    assert st["before"] == pytest.approx(0.012, abs=0.01) and st["after"] == pytest.approx(0.30, abs=0.03)
    assert res["method"] == "exact" and not res["passed"] and "student/gender" in res["failed"]
