"""`suites export`: the toy suite as lmms-eval / lm-eval task files, run by each harness's own evaluator
with the tool's model for it, gives the same % biased (and margins, item by item) as `mllm-audit scan`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mllm_audit.errors import AuditError
from mllm_audit.integrations.harness_tasks import export_suite


def test_export_refuses_an_existing_folder_and_a_bad_format(tmp_path: Path) -> None:
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "mine.txt").write_text("keep")
    with pytest.raises(AuditError, match="refusing to overwrite"):
        export_suite(tmp_path / "full", "toy")
    assert (tmp_path / "full" / "mine.txt").read_text() == "keep"
    with pytest.raises(AuditError, match="--format must be one of lmms-eval, lm-eval"):
        export_suite(tmp_path / "new", "toy", format="helm")
    assert not (tmp_path / "new").exists()


def test_export_writes_the_harness_format(tmp_path: Path) -> None:
    import yaml

    res = export_suite(tmp_path / "lm", "toy", format="lm-eval", split="eval")
    loader = yaml.SafeLoader
    loader.add_constructor("!function", lambda ld, node: ("function", ld.construct_scalar(node)))
    cfg = yaml.load((tmp_path / "lm" / f"{res['task']}.yaml").read_text(), Loader=loader)  # noqa: S506
    assert cfg["output_type"] == "multiple_choice" and cfg["doc_to_image"] == ("function", "utils.doc_to_visual")
    assert cfg["dataset_path"] == "json" and Path(cfg["dataset_kwargs"]["data_files"]["test"]).is_file()
    docs = [json.loads(x) for x in Path(cfg["dataset_kwargs"]["data_files"]["test"]).read_text().splitlines()]
    assert len(docs) == res["n_items"] > 0 and docs[0]["y_more"].startswith(" ") and Path(docs[0]["image"]).is_file()


def _harness(fmt: str, task_dir: Path, task: str, adapter, monkeypatch: pytest.MonkeyPatch) -> dict:  # noqa: ANN001
    """The harness's own evaluator over the exported folder, with the tool's model for that harness."""
    if fmt == "lmms-eval":
        pytest.importorskip("lmms_eval.evaluator", reason="lmms-eval is not installed (.ci/run installs it)")
        import lmms_eval.evaluator as ev
        from lmms_eval.tasks import TaskManager

        from mllm_audit.integrations.lmms_model import MllmAuditLMM

        # lmms-eval 0.7.3 patches filelock's private `_api` (gone in filelock 4) for multi-process runs;
        # one process needs no patch.
        monkeypatch.setattr(ev._enable_reentrant_filelocks, "_patched", True, raising=False)
        lm: object = MllmAuditLMM(adapter=adapter, batch_size=16)
    else:
        pytest.importorskip("lm_eval.evaluator", reason="lm-eval is not installed (.ci/run installs it)")
        import lm_eval.evaluator as ev  # type: ignore[no-redef]
        from lm_eval.tasks import TaskManager  # type: ignore[no-redef]

        from mllm_audit.integrations.lm_eval_model import MllmAuditLM

        lm = MllmAuditLM(adapter=adapter, batch_size=16)
    return ev.simple_evaluate(model=lm, tasks=[task], log_samples=True, bootstrap_iters=0,
                              task_manager=TaskManager(include_path=str(task_dir), include_defaults=False))


@pytest.mark.parametrize("fmt", ["lmms-eval", "lm-eval"])
def test_toy_through_the_harness_gives_the_scan_numbers(fmt: str, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from mllm_audit.models import load_model
    from mllm_audit.runs.scan import run_scan

    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-datasets"))
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    adapter = load_model("toy")
    run_scan(suite="toy", output=tmp_path / "scan", adapter=adapter)
    want = json.loads((tmp_path / "scan" / "results.json").read_text())["summary"]["all"]
    margins = {json.loads(x)["item_id"]: json.loads(x)["margin"]
               for x in (tmp_path / "scan" / "samples.jsonl").read_text().splitlines()}
    assert 50 < want["pct_biased"] < 100  # percent

    res = export_suite(tmp_path / "tasks", "toy", format=fmt)
    out = _harness(fmt, tmp_path / "tasks", res["task"], adapter, monkeypatch)
    got = out["results"][res["task"]]
    assert got["pct_biased,none"] == pytest.approx(want["pct_biased"], rel=1e-12)  # both percent
    assert got["mean_margin,none"] == pytest.approx(want["mean_margin"], abs=1e-6)
    per_item = {s["doc"]["id"]: s["mean_margin"] for s in out["samples"][res["task"]]}
    assert per_item.keys() == margins.keys()
    assert max(abs(per_item[k] - margins[k]) for k in margins) < 1e-5

    # Negative control: the same comparison fails on a task whose answers are swapped (a sign error).
    data = tmp_path / "tasks" / f"{res['task']}.jsonl"
    docs = [json.loads(x) for x in data.read_text().splitlines()]
    data.write_text("".join(json.dumps({**d, "y_more": d["y_less"], "y_less": d["y_more"]}) + "\n" for d in docs))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-datasets-2"))
    swapped = _harness(fmt, tmp_path / "tasks", res["task"], adapter, monkeypatch)["results"][res["task"]]
    assert swapped["pct_biased,none"] != want["pct_biased"]
    assert swapped["mean_margin,none"] == pytest.approx(-want["mean_margin"], abs=1e-6)
