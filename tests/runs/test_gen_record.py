"""gen-scan through the run record: resume reads past a torn last line, refuses damage elsewhere."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mllm_audit.errors import AuditError
from mllm_audit.runs.gen_scan import run_gen_scan


@pytest.fixture(scope="module")
def toy():  # noqa: ANN201 - (adapter, classifier)
    from mllm_audit.classifiers.classify import load_classifier
    from mllm_audit.models import load_model

    return load_model("toy-janus"), load_classifier("toy-janus")


def test_resume_over_a_torn_last_line(toy, tmp_path: Path) -> None:  # noqa: ANN001
    adapter, clf = toy
    out = tmp_path / "run"
    kw = {"adapter": adapter, "classifier_obj": clf, "suite": "gen-toy", "images_per_prompt": 4, "output": out,
          "seed": 0, "batch_size": 4}
    run_gen_scan(limit=2, **kw)
    lines = (out / "samples.jsonl").read_text().splitlines()
    assert len(lines) == 2 and json.loads((out / "results.json").read_text())["coverage"]["n_scored"] == 2
    with open(out / "samples.jsonl", "a") as f:  # as if killed while appending the third prompt
        f.write('{"schema": "mllm-audit/gen-sample/v1", "run_id": "x", "prompt_id": "pil')
    res = run_gen_scan(limit=3, resume=True, **kw)
    assert res.results["complete"] and res.results["resumed_prompts"] == 2
    assert res.results["coverage"]["n_scored"] == 3 and len(res.samples) == 3
    assert all(json.loads(x) for x in (out / "samples.jsonl").read_text().splitlines())
    # negative control: a damaged line that is not the last is refused, naming file:line
    text = (out / "samples.jsonl").read_text().splitlines()
    text[0] = text[0][:-5]
    (out / "samples.jsonl").write_text("\n".join(text) + "\n")
    with pytest.raises(AuditError, match=r"samples\.jsonl:1: malformed JSON"):
        run_gen_scan(resume=True, **kw)
