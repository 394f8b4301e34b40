"""gen-scan with the per-image sampler (the default): rows of several prompts share a generate call, and
every image is the same whatever the batch size, --limit, or a resume after a kill; the upstream sampler
(global generator) is the negative control whose images change with the batch size."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from mllm_audit.errors import AuditError
from mllm_audit.runs.gen_scan import run_gen_scan

N = 12  # 5 prompts x 12 images: a batch of 8 or 32 spans prompts


@pytest.fixture(scope="module")
def toy():  # noqa: ANN201 - (adapter, classifier)
    from mllm_audit.classifiers.classify import load_classifier
    from mllm_audit.models import load_model

    return load_model("toy-janus"), load_classifier("toy-janus")


def scan(toy: Any, out: Path, **kw: Any) -> Any:
    adapter, clf = toy
    args = {"adapter": adapter, "classifier_obj": clf, "suite": "gen-toy", "images_per_prompt": N, "output": out,
            "seed": 0, "understanding": False} | kw
    return run_gen_scan(**args)


def pixels(run: Path) -> dict[str, np.ndarray]:
    return {str(p.relative_to(run)): np.asarray(Image.open(p)) for p in sorted((run / "images").rglob("*.png"))}


@pytest.fixture(scope="module")
def reference(toy, tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN001, ANN201 - (run folder, pixels)
    res = scan(toy, tmp_path_factory.mktemp("ref") / "b1", batch_size=1)
    assert res.results["options"]["sampler"] == "per-image"
    return res, pixels(res.run_dir)


def same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("batch", [8, 32])
def test_images_do_not_depend_on_the_batch(toy, reference, tmp_path: Path, batch: int) -> None:  # noqa: ANN001
    ref, ref_px = reference
    res = scan(toy, tmp_path / "run", batch_size=batch)
    assert len(ref_px) == 5 * N and same(pixels(res.run_dir), ref_px)
    assert [s["counts"] for s in res.samples] == [s["counts"] for s in ref.samples]
    # fewer generate calls: rows of several prompts share one
    assert res.results["counters"]["forward_passes"] == -(-5 * N // batch) < ref.results["counters"]["forward_passes"]


def test_negative_control_upstream_images_change_with_the_batch(toy, tmp_path: Path) -> None:  # noqa: ANN001
    a = pixels(scan(toy, tmp_path / "a", batch_size=8, sampler="upstream").run_dir)
    b = pixels(scan(toy, tmp_path / "b", batch_size=32, sampler="upstream").run_dir)
    assert a.keys() == b.keys() and not same(a, b)
    # batch 8 draws images 8-11 of a prompt from a second seed, batch 32 from the first seed's stream
    late = [k for k in a if int(Path(k).stem) >= 8]
    assert len(late) == 20 and sum(not np.array_equal(a[k], b[k]) for k in late) >= 10  # one token: codes collide


def test_limit_then_resume_after_a_kill_at_another_batch(toy, reference, tmp_path: Path) -> None:  # noqa: ANN001
    _, ref_px = reference
    out = tmp_path / "run"
    scan(toy, out, batch_size=8, limit=2)

    def killed_after_one(_total: int) -> Any:
        done = []

        def tick(n: int) -> None:
            done.append(n)
            if len(done) == 2:  # the resumed prompts' tick, then one new prompt: kill
                raise KeyboardInterrupt

        return tick

    with pytest.raises(Exception, match="--resume"):
        scan(toy, out, batch_size=32, resume=True, progress=killed_after_one)
    assert len((out / "samples.jsonl").read_text().splitlines()) == 3
    res = scan(toy, out, batch_size=5, resume=True)
    assert res.results["complete"] and res.results["resumed_prompts"] == 3
    assert same(pixels(out), ref_px)


def test_resume_with_another_sampler_is_refused_in_one_line(toy, tmp_path: Path) -> None:  # noqa: ANN001
    out = tmp_path / "run"
    scan(toy, out, batch_size=8, limit=1)
    with pytest.raises(AuditError) as e:
        scan(toy, out, batch_size=8, resume=True, sampler="upstream")
    msg = str(e.value)
    assert "\n" not in msg and "--sampler per-image" in msg and "--sampler upstream" in msg
    # a record from before --sampler drew with the global generator: it resumes only as upstream
    rec = json.loads((out / "results.json").read_text())
    del rec["options"]["sampler"]
    (out / "results.json").write_text(json.dumps(rec))
    with pytest.raises(AuditError, match="drawn with --sampler upstream"):
        scan(toy, out, batch_size=8, resume=True)
    # the upstream sampler's images depend on the batch size: a resume at another is refused
    up = tmp_path / "up"
    scan(toy, up, batch_size=8, limit=1, sampler="upstream")
    with pytest.raises(AuditError, match="options differs"):
        scan(toy, up, batch_size=4, resume=True, sampler="upstream")
    with pytest.raises(AuditError, match="--sampler 'multinomial'"):
        scan(toy, tmp_path / "bad", sampler="multinomial")


def test_cli_unknown_sampler_exits_2_in_one_line(capsys) -> None:  # noqa: ANN001
    from mllm_audit.cli import run

    assert run(["gen-scan", "--sampler", "multinomial", "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--sampler 'multinomial'" in err and "per-image, upstream" in err and "Traceback" not in err
