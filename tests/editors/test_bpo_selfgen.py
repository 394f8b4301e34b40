"""Balanced data drawn from the model itself (`fix --editor sft|bpo`, balanced_from="generations"): kept
where the classifier agrees with the augmented prompt, balanced over the cells found; on the
negative-control toy (a VQ decoder that draws two female groups as male) the filter visibly bites."""

from __future__ import annotations

from collections import Counter

import pytest

from mllm_audit.editors.balanced import rows_from_generations


@pytest.fixture(scope="module")
def setup():  # noqa: ANN201 - (classifier, two training prompts)
    from mllm_audit.classifiers.classify import load_classifier
    from mllm_audit.runs.gen_scan import load_gen_suite

    suite = load_gen_suite("gen-toy-v2")
    return load_classifier(suite.classifier), [p for p in suite.prompts if p.group == "train"][:2]


def test_main_toy_rows_are_balanced_and_agree(setup) -> None:  # noqa: ANN001
    from mllm_audit.models import load_model
    from mllm_audit.toy.unified import world_codes

    clf, prompts = setup
    rows, rep = rows_from_generations(load_model("toy-janus-v2"), clf, prompts, per_word=16, seed=0)
    assert rep.drawn == 2 * 6 * 16  # 2 prompts x (2 gender + 4 race words) x 16
    assert rep.agreed / rep.drawn > 0.95  # the main toy follows augmented prompts
    valid = {tuple(c) for c in world_codes()}
    for p in prompts:
        neutral = [r for r in rows if r.neutral and r.prompt_key == p.id]
        cells = Counter((r.labels["gender"], r.labels["race"]) for r in neutral)
        assert len(set(cells.values())) == 1 and rep.per_prompt[p.id]["cells"] == len(cells) >= 2
        # Races where the model never drew one gender are dropped and said, not filled in.
        kept = {r for _, r in cells}
        dropped = rep.per_prompt[p.id]["dropped"]
        assert kept.isdisjoint(dropped) and len(kept) + len(dropped) == 4
        genders = Counter(r.labels["gender"] for r in neutral)
        assert genders["male"] == genders["female"] > 0  # balanced, though the LM draws 90 % one gender
        assert all(tuple(r.codes) in valid for r in neutral)
    # Augmented rows carry their own group's word and the same image.
    aug = [r for r in rows if not r.neutral]
    assert aug and all(r.prompt_key.split("/")[-1] in ("male", "female", "white", "black", "indian", "asian")
                       for r in aug)


def test_control_toy_loses_the_swapped_cells(setup) -> None:  # noqa: ANN001
    from mllm_audit.models import load_model

    clf, prompts = setup
    _, main = rows_from_generations(load_model("toy-janus-v2"), clf, prompts, per_word=16, seed=0)
    rows, ctl = rows_from_generations(load_model("toy-janus-v2-control"), clf, prompts, per_word=16, seed=0)
    assert ctl.agreed / ctl.drawn < main.agreed / main.drawn - 0.03  # "a female" drawn as male is dropped
    cells = {(r.labels["gender"], r.labels["race"]) for r in rows if r.neutral}
    assert ("female", "black") not in cells and ("female", "asian") not in cells  # never rendered: not invented
    assert all({"black", "asian"} <= set(ctl.per_prompt[p.id]["dropped"]) for p in prompts)


def test_unknown_balanced_source_names_it() -> None:
    from mllm_audit.errors import AuditError
    from mllm_audit.runs.fix_unified import run_unified_fix

    with pytest.raises(AuditError, match="'flux'"):
        run_unified_fix(balanced_from="flux")
