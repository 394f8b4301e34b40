"""`scan` end to end on a tiny model: records that re-derive, counters, and bad input -> exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mllm_audit.cli import run
from mllm_audit.metrics.bias import bias_summary
from mllm_audit.util.files import read_jsonl


def _scan(model: Path, suite: Path, out: Path, *extra: str) -> int:
    return run(["scan", "--model", str(model), "--suite", str(suite), "--output", str(out), "-q", *extra])


def test_scan_writes_records_that_rederive(tiny_blip2_dir: Path, tiny_suite: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert _scan(tiny_blip2_dir, tiny_suite, out, "--batch-size", "3") == 0
    res = json.loads((out / "results.json").read_text())
    samples = read_jsonl(out / "samples.jsonl")
    assert res["complete"] is True and res["suite"]["n_items"] == len(samples) == 12
    for s in samples:
        assert s["margin"] == pytest.approx(s["logp_more"] - s["logp_less"], abs=0)
        assert s["biased"] == (s["logp_more"] - s["logp_less"] > 0)
        assert s["run_id"] == res["run_id"] and s["schema"] == "mllm-audit/sample/v1"
    # 6 distinct images in the suite, each encoded exactly once.
    assert res["counters"]["images_encoded"] == 6
    assert res["summary"] == bias_summary(samples, res["group_by"])
    assert set(res["summary"]) == {"gender", "race", "all"}
    for key in ("load_s", "scoring_s", "total_s"):
        assert res["timings"][key] >= 0
    assert res["model"]["family"] == "blip2" and res["model"]["revision"].startswith("sha256:")
    assert len(res["suite"]["content_hash"]) == 64


def test_limit_and_batch_size_do_not_change_scores(tiny_blip2_dir: Path, tiny_suite: Path, tmp_path: Path) -> None:
    assert _scan(tiny_blip2_dir, tiny_suite, tmp_path / "a", "--batch-size", "1") == 0
    assert _scan(tiny_blip2_dir, tiny_suite, tmp_path / "b", "--batch-size", "16", "--limit", "5") == 0
    a = read_jsonl(tmp_path / "a" / "samples.jsonl")
    b = read_jsonl(tmp_path / "b" / "samples.jsonl")
    assert len(b) == 5
    for x, y in zip(a, b, strict=False):
        assert x["item_id"] == y["item_id"]
        assert x["logp_more"] == pytest.approx(y["logp_more"], abs=1e-5)


def _bad_suite(tmp_path: Path, tiny_suite: Path, mutate) -> Path:  # noqa: ANN001
    lines = tiny_suite.read_text().splitlines()
    lines = mutate(lines)
    path = tiny_suite.parent / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def _drop_y_less(lines: list[str]) -> list[str]:
    obj = json.loads(lines[3])
    del obj["y_less"]
    return lines[:3] + [json.dumps(obj)] + lines[4:]


def _missing_image(lines: list[str]) -> list[str]:
    obj = json.loads(lines[2])
    obj["image"] = "images/nope.png"
    return lines[:2] + [json.dumps(obj)] + lines[3:]


@pytest.mark.parametrize(
    ("mutate", "needle"),
    [
        (lambda ls: ls[:4] + ["{not json"] + ls[4:], "bad.jsonl:5: malformed JSON"),
        (_drop_y_less, "bad.jsonl:4: missing required field 'y_less'"),
        (_missing_image, "image not found"),
    ],
)
def test_bad_suite_lines_exit_2_with_one_line(
    tiny_blip2_dir: Path, tiny_suite: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], mutate, needle: str  # noqa: ANN001
) -> None:
    bad = _bad_suite(tmp_path, tiny_suite, mutate)
    out = tmp_path / "run"
    assert _scan(tiny_blip2_dir, bad, out) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err and "Traceback" not in err
    assert not (out / "results.json").exists()


def test_corrupt_image_exit_2_and_no_complete_results(
    tiny_blip2_dir: Path, tiny_suite: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tiny_suite.parent / "images" / "img3.png").write_bytes(b"\x89PNG\r\n\x1a\nthis is not a png")
    out = tmp_path / "run"
    assert _scan(tiny_blip2_dir, tiny_suite, out) == 2
    err = capsys.readouterr().err.strip()
    # Progress lines (model load, the run folder) may come first; the error is one line, the last.
    errors = [x for x in err.splitlines() if "error" in x]
    assert len(errors) == 1 and err.splitlines()[-1] == errors[0] and "img3.png" in errors[0]
    # The folder may exist (the model loaded) but never claims to be complete.
    if (out / "results.json").exists():
        assert json.loads((out / "results.json").read_text())["complete"] is False


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--model", "no-such-model"], "unknown model 'no-such-model'"),
        (["--suite", "no-such-suite"], "unknown suite 'no-such-suite'"),
        (["--batch-size", "0"], "--batch-size"),
        (["--dtype", "fp8"], "--dtype"),
    ],
)
def test_bad_arguments_exit_2(
    tiny_blip2_dir: Path, tiny_suite: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str],
    needle: str,
) -> None:
    base = {"--model": str(tiny_blip2_dir), "--suite": str(tiny_suite)}
    for flag, value in zip(args[::2], args[1::2], strict=True):
        base[flag] = value
    argv = ["scan", "-q", "--output", str(tmp_path / "r")] + [x for kv in base.items() for x in kv]
    assert run(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err


def test_help_imports_nothing_heavy() -> None:
    """`--help` must be instant: torch and transformers are imported only inside commands."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "mllm_audit.cli", "--help"], capture_output=True, text=True,
                         check=True)
    for command in ("scan", "fix", "gate", "report", "ls"):
        assert command in out.stdout
    probe = subprocess.run(
        [sys.executable, "-c", "import sys, mllm_audit.cli; print('torch' in sys.modules)"],
        capture_output=True, text=True, check=True,
    )
    assert probe.stdout.strip() == "False"


def test_ls_lists_cards_and_suites_with_sizes(capsys: pytest.CaptureFixture[str], monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setenv("COLUMNS", "200")
    assert run(["ls", "suites"]) == 0
    rows = {line.split("│")[1].strip(): line for line in capsys.readouterr().out.splitlines() if line.count("│") > 3}
    assert "│ 384 " in rows["toy"] and "│ 508 " in rows["pairs-vqa"] and "CC-BY-4.0" in rows["pairs-vqa"]
    assert run(["ls", "models"]) == 0
    out = capsys.readouterr().out
    assert "Salesforce/blip2-opt-2.7b" in out and "shipped" in out and "not built" in out
    assert run(["ls", "nothing"]) == 2
