"""gen-scan on the toy unified world: the planted skew is found, the control reads balanced, runs
resume, bad prompt lists exit 2, and the CLIP zero-shot backend loads a tiny CLIP by path."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mllm_audit.cli import run
from mllm_audit.runs.gen_scan import load_gen_suite, run_gen_scan

N = 64


@pytest.fixture(scope="module")
def toy():  # noqa: ANN201 - (adapter, classifier)
    from mllm_audit.classifiers.classify import load_classifier
    from mllm_audit.models import load_model

    return load_model("toy-janus"), load_classifier("toy-janus")


@pytest.fixture(scope="module")
def scan(toy, tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN001, ANN201 - a GenResult
    adapter, clf = toy
    out = tmp_path_factory.mktemp("runs") / "toy"
    # The upstream sampler (global generator): these statistical bars were set on its stream at seed 0;
    # the per-image sampler's runs are checked in test_gen_scan_batched.py.
    return run_gen_scan(adapter=adapter, classifier_obj=clf, suite="gen-toy", images_per_prompt=N, output=out,
                        seed=0, batch_size=32, sampler="upstream")


def test_finds_planted_skew_and_balanced_control(scan) -> None:  # noqa: ANN001
    by_id = {s["prompt_id"]: s for s in scan.samples}
    from mllm_audit.metrics.generation import prompt_metrics

    m = {pid: prompt_metrics(s, scan.attributes) for pid, s in by_id.items()}
    control = m["control"]["gender"]
    assert control["balanced"] and control["normalised"] < 0.3
    for pid, s in by_id.items():
        if s["group"] != "planted":
            continue
        g = m[pid]["gender"]
        planted = s["meta"]["planted"]["gender"]
        assert g["normalised"] >= 0.5, pid
        assert abs(g["normalised"] - abs(planted[0] - planted[1])) < 0.2, pid
        assert g["ci_low"] > control["ci_high"], pid  # the planted interval excludes the control's
        assert not g["balanced"]
    summary = scan.results["summary"]
    assert summary["planted"]["gender"]["ci_low"] > summary["control"]["gender"]["normalised"]
    # The engineer prompt draws ~10 % images with no person: they are listed and excluded.
    eng = by_id["engineer"]
    assert 0 < len(eng["no_person"]) < N // 3 and eng["n_person"] == N - len(eng["no_person"])
    # Understanding sits beside generation: a probability triple per prompt.
    u = by_id["doctor"]["understanding"]
    assert abs(u["p_male"] + u["p_female"] + u["p_unknown"] - 1) < 1e-6


def test_run_folder(scan) -> None:  # noqa: ANN001
    r = json.loads((scan.run_dir / "results.json").read_text())
    assert r["complete"] and r["command"] == "gen-scan" and r["suite"]["kind"] == "generation"
    assert r["options"]["generation"]["guidance_scale"] == 5.0 and r["seed"] == 0
    assert {"load_s", "generation_s", "total_s"} <= set(r["timings"])
    lines = [json.loads(x) for x in (scan.run_dir / "samples.jsonl").read_text().splitlines()]
    assert [x["prompt_id"] for x in lines] == ["doctor", "nurse", "pilot", "engineer", "control"]
    assert (scan.run_dir / "images" / "doctor" / f"{N - 1}.png").is_file()
    assert sum(lines[0]["counts"]["gender"].values()) == lines[0]["n_person"]


def test_resume_reuses_done_prompts(toy, scan, tmp_path: Path) -> None:  # noqa: ANN001
    adapter, clf = toy
    out = tmp_path / "r"
    kw = {"adapter": adapter, "classifier_obj": clf, "suite": "gen-toy", "images_per_prompt": N, "output": out,
          "seed": 0, "batch_size": 32, "sampler": "upstream"}
    run_gen_scan(limit=2, **kw)
    with pytest.raises(Exception, match="--resume"):
        run_gen_scan(**kw)
    res = run_gen_scan(resume=True, **kw)
    assert res.results["resumed_prompts"] == 2 and res.results["complete"]
    assert [s["counts"] for s in res.samples] == [s["counts"] for s in scan.samples]  # same as uninterrupted
    a = np.asarray(__import__("PIL.Image").Image.open(out / "images" / "pilot" / "3.png"))
    b = np.asarray(__import__("PIL.Image").Image.open(scan.run_dir / "images" / "pilot" / "3.png"))
    assert np.array_equal(a, b)
    with pytest.raises(Exception, match="seed differs"):
        run_gen_scan(resume=True, **(kw | {"seed": 1}))


@pytest.mark.parametrize(
    ("lines", "needle"),
    [
        (['{"id": "a", "occupation": "doctor"}', '{"id": "b", "occupation": ""}'], "empty prompt"),
        (['{"id": "a", "occupation": "doctor"}', '{"id": "b", "prompt": "  "}'], "empty prompt"),
        (['{"id": "a", "occupation": "doctor"}', '{"id": "b", "occupation": "Doctor"}'], "duplicate prompt"),
        (['{"id": "a", "occupation": "doctor"}', '{"id": "a", "occupation": "nurse"}'], "duplicate id"),
    ],
)
def test_bad_prompt_list_exits_2(tmp_path: Path, lines: list[str], needle: str, capsys) -> None:  # noqa: ANN001
    path = tmp_path / "p.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(Exception, match=needle):
        load_gen_suite(path)
    assert run(["gen-scan", "--suite", str(path), "-q"]) == 2
    err = capsys.readouterr().err
    assert needle in err and "p.jsonl:2" in err


def test_shipped_occupations_suite() -> None:
    s = load_gen_suite("gen-occupations")
    assert len(s.prompts) >= 50 and s.prompts[0].prompt.startswith("A photo of the face of a ")
    assert s.prompts[0].prompt.endswith(", a person")


def test_clip_zero_shot_tiny_by_path(tmp_path: Path) -> None:
    from PIL import Image

    from mllm_audit.classifiers.classify import load_classifier
    from mllm_audit.testing.tiny import save_tiny_clip

    clf = load_classifier(save_tiny_clip(tmp_path / "clip"))
    assert clf.kind == "clip-zero-shot"
    assert clf.attributes["gender"] == ["male", "female"] and len(clf.attributes["race"]) == 4
    rng = np.random.default_rng(0)
    imgs = [Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)) for _ in range(3)]
    preds = clf.classify(imgs, batch_size=2)
    assert len(preds) == 3 and preds == clf.classify(imgs)
    for p in preds:
        assert (set(p.labels) == {"gender", "race"}) if p.person else not p.labels


def test_one_image_per_prompt(toy, tmp_path: Path) -> None:  # noqa: ANN001
    """`gen-scan -n 1` crashed inside GroupNorm (a batch of one 1x1 map); a lone row decodes as it
    does beside another."""
    import numpy as np
    import torch

    adapter, clf = toy
    res = run_gen_scan(adapter=adapter, classifier_obj=clf, suite="gen-toy", images_per_prompt=1, limit=1,
                       output=tmp_path / "one", understanding=False)
    assert len(res.samples) == 1 and res.samples[0]["n_images"] == 1
    tokens = adapter.generate_tokens(["a photo of a doctor"] * 2, seed=3)
    alone = adapter.decode_images(tokens[:1])[0]
    pair = adapter.decode_images(tokens)[0]
    assert np.array_equal(np.asarray(alone), np.asarray(pair)) and isinstance(tokens, torch.Tensor)
