"""Robustness: a killed scan resumes to the uninterrupted result; signals exit cleanly; OOM halves the batch."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mllm_audit.cli import run
from mllm_audit.errors import AuditError
from mllm_audit.runs.scan import run_scan
from mllm_audit.testing.hooks import CHUNK_DELAY_ENV
from mllm_audit.util.files import read_appended_jsonl, read_jsonl

# Start the CLI with Python's own Ctrl-C handler even if this test runs with SIGINT ignored.
CHILD = ("import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
         "from mllm_audit.cli import main; sys.argv[0] = 'mllm-audit'; main()")


def _child(model: Path, suite: Path, out: Path, delay: float) -> subprocess.Popen[str]:
    env = {**os.environ, CHUNK_DELAY_ENV: str(delay), "HF_HUB_OFFLINE": "1"}
    # --batch-size 2: chunks of 2 images (4 items), so the 12-item suite is written in 3 steps.
    argv = [sys.executable, "-c", CHILD, "scan", "--model", str(model), "--suite", str(suite), "--output", str(out),
            "--batch-size", "2", "-q"]
    return subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_lines(proc: subprocess.Popen[str], path: Path, n: int, timeout: float = 240) -> int:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if path.is_file():
            have = len(path.read_text().splitlines())
            if have >= n:
                return have
        if proc.poll() is not None:
            raise AssertionError(f"child ended early: {proc.returncode} {proc.stderr.read() if proc.stderr else ''}")
        time.sleep(0.05)
    proc.kill()
    raise AssertionError("child never wrote its first chunk")


def _same_samples(a: list[dict], b: list[dict]) -> None:
    assert [s["item_id"] for s in a] == [s["item_id"] for s in b]
    for x, y in zip(a, b, strict=True):
        # fp32 sums of ~30 nats: batch composition moves the last bits (the contract says 1e-5).
        assert x["logp_more"] == pytest.approx(y["logp_more"], rel=1e-6, abs=1e-6)
        assert x["logp_less"] == pytest.approx(y["logp_less"], rel=1e-6, abs=1e-6)
        assert (x["n_tokens_more"], x["n_tokens_less"], x["biased"]) == (y["n_tokens_more"], y["n_tokens_less"],
                                                                       y["biased"])


def test_sigkill_then_resume_equals_uninterrupted(
    tiny_blip2_dir: Path, tiny_suite: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "killed"
    proc = _child(tiny_blip2_dir, tiny_suite, out, delay=2.0)
    have = _wait_for_lines(proc, out / "samples.jsonl", 4)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    partial = read_jsonl(out / "samples.jsonl")
    assert 4 <= have == len(partial) < 12
    assert json.loads((out / "results.json").read_text())["complete"] is False
    # As if the kill had landed mid-write: a torn last line must be dropped and redone.
    with open(out / "samples.jsonl", "a") as f:
        f.write('{"schema": "mllm-audit/sample/v1", "run_id": "x", "item_id": "it5-')

    # Without --resume the folder is refused, with one line that says what to do.
    assert run(["scan", "--model", str(tiny_blip2_dir), "--suite", str(tiny_suite), "--output", str(out), "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "already holds a run" in err and "--resume" in err

    argv = ["scan", "--model", str(tiny_blip2_dir), "--suite", str(tiny_suite), "-q", "--batch-size", "2"]
    assert run([*argv, "--output", str(out), "--resume"]) == 0
    assert run([*argv, "--output", str(tmp_path / "whole")]) == 0
    resumed, whole = read_jsonl(out / "samples.jsonl"), read_jsonl(tmp_path / "whole" / "samples.jsonl")
    _same_samples(resumed, whole)
    assert len({s["item_id"] for s in resumed}) == len(resumed) == 12
    res = json.loads((out / "results.json").read_text())
    assert res["complete"] is True and res["resumed"] == {"reused_samples": len(partial)}
    assert {s["run_id"] for s in resumed} == {res["run_id"]}  # the reused lines keep the run's id
    # Only the images of the items not yet done were encoded again (2 items per image).
    assert res["counters"]["images_encoded"] == (12 - len(partial)) // 2
    whole_res = json.loads((tmp_path / "whole" / "results.json").read_text())
    assert res["summary"] == whole_res["summary"]
    # Resuming a complete run reuses everything and encodes nothing.
    assert run([*argv, "--output", str(out), "--resume"]) == 0
    again = json.loads((out / "results.json").read_text())
    assert again["counters"]["images_encoded"] == 0 and read_jsonl(out / "samples.jsonl") == resumed


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signals_stop_cleanly_and_leave_a_resumable_folder(
    tiny_blip2_dir: Path, tiny_adapter, tiny_suite: Path, tmp_path: Path, sig: int, code: int  # noqa: ANN001
) -> None:
    out = tmp_path / "run"
    proc = _child(tiny_blip2_dir, tiny_suite, out, delay=2.0)
    _wait_for_lines(proc, out / "samples.jsonl", 4)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    lines = [x for x in err.strip().splitlines() if x.startswith("mllm-audit:")]  # after the progress lines
    assert len(lines) == 1 and "--resume --output" in lines[0] and "Traceback" not in err, err
    assert err.strip().splitlines()[-1] == lines[0]
    assert json.loads((out / "results.json").read_text())["complete"] is False
    kept = read_jsonl(out / "samples.jsonl")  # every line whole
    res = run_scan(suite=str(tiny_suite), output=out, adapter=tiny_adapter, resume=True, batch_size=2)
    assert res.results["complete"] is True and res.results["resumed"]["reused_samples"] == len(kept)
    assert [s["item_id"] for s in res.samples] == [f"it{i}-{j}" for i in range(6) for j in range(2)]


def test_resume_refuses_another_model_or_suite(tiny_adapter, tiny_suite: Path, tmp_path: Path) -> None:  # noqa: ANN001
    out = tmp_path / "run"
    run_scan(suite=str(tiny_suite), output=out, adapter=tiny_adapter)
    res = json.loads((out / "results.json").read_text())
    res["model"]["revision"] = "sha256:other"
    (out / "results.json").write_text(json.dumps(res))
    with pytest.raises(AuditError, match="cannot resume .* scanned with model"):
        run_scan(suite=str(tiny_suite), output=out, adapter=tiny_adapter, resume=True)
    res["model"] = tiny_adapter.identity()
    res["suite"]["content_hash"] = "0" * 64
    (out / "results.json").write_text(json.dumps(res))
    with pytest.raises(AuditError, match="suite's content changed"):
        run_scan(suite=str(tiny_suite), output=out, adapter=tiny_adapter, resume=True)
    with pytest.raises(AuditError, match="--resume needs --output"):
        run_scan(suite=str(tiny_suite), adapter=tiny_adapter, resume=True)
    # --resume on an empty folder simply starts the run.
    fresh = run_scan(suite=str(tiny_suite), output=tmp_path / "new", adapter=tiny_adapter, resume=True)
    assert fresh.results["complete"] is True and fresh.results["resumed"] == {"reused_samples": 0}


def test_torn_last_line_is_dropped_but_damage_elsewhere_is_refused(tmp_path: Path) -> None:
    f = tmp_path / "s.jsonl"
    f.write_text('{"a": 1}\n{"a": 2}\n{"a": 3, "b": [1, 2')
    assert read_appended_jsonl(f) == ([{"a": 1}, {"a": 2}], 1)
    f.write_text('{"a": 1}\n{"a": \n{"a": 3}\n')
    with pytest.raises(AuditError, match=r"s.jsonl:2: malformed JSON"):
        read_appended_jsonl(f)
    assert read_appended_jsonl(tmp_path / "none.jsonl") == ([], 0)


def test_out_of_memory_halves_the_batch_without_changing_scores(
    tiny_adapter, tiny_suite: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,  # noqa: ANN001
    capsys: pytest.CaptureFixture[str],
) -> None:
    import torch

    import mllm_audit.scoring.prefix as scoring

    ref = run_scan(suite=str(tiny_suite), output=tmp_path / "ref", adapter=tiny_adapter, batch_size=8)
    real = scoring.score_trees
    sizes: list[int] = []

    def small_only(adapter, batch, groups, *rest):  # noqa: ANN001, ANN002, ANN202
        n = sum(t.n_rows(groups, rest[0], scoring.uses_tree_mask(adapter)) for t in batch)  # what batch_size bounds
        sizes.append(n)
        if n > 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(adapter, batch, groups, *rest)

    monkeypatch.setattr(scoring, "score_trees", small_only)
    capsys.readouterr()
    res = run_scan(suite=str(tiny_suite), output=tmp_path / "oom", adapter=tiny_adapter, batch_size=8)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "out of memory; retrying with batch size 4" in err[0]  # logged once, 8 -> 4 -> 2
    assert res.results["options"]["batch_size_after_oom"] == 2 and max(sizes[-3:]) <= 2
    _same_samples(res.samples, ref.samples)

    def always(*a, **k):  # noqa: ANN002, ANN003, ANN202
        raise RuntimeError("out of memory")

    monkeypatch.setattr(scoring, "score_trees", always)
    with pytest.raises(AuditError, match="out of memory even at batch size 1"):
        run_scan(suite=str(tiny_suite), output=tmp_path / "oom1", adapter=tiny_adapter, batch_size=2)
    # Other runtime errors are not mistaken for OOM.
    monkeypatch.setattr(scoring, "score_trees", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("shape bug")))
    with pytest.raises(RuntimeError, match="shape bug"):
        run_scan(suite=str(tiny_suite), output=tmp_path / "other", adapter=tiny_adapter, batch_size=2)
