"""`report`, `report --html` and `rescore` on every run type, from runs the commands really wrote."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mllm_audit.cli import run


@pytest.fixture(scope="module")
def fix_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("views") / "fix"
    assert run(["fix", "--limit", "3", "-q", "-o", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def gen_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("views") / "gen"
    assert run(["gen-scan", "--model", "toy-janus", "--suite", "gen-toy", "-n", "4", "--limit", "2", "-q",
                "-o", str(out)]) == 0
    return out


def test_report_of_a_fix_run_shows_metrics_diffs_and_counts(fix_run: Path, capsys: pytest.CaptureFixture) -> None:
    capsys.readouterr()
    assert run(["report", str(fix_run)]) == 0
    out = capsys.readouterr().out
    edits = [json.loads(x) for x in (fix_run / "edits.jsonl").read_text().splitlines()]
    fixed = sum(e["reliability"] == 1.0 for e in edits)
    assert "reliability" in out and "t_locality_top1" in out
    assert f"{fixed} fixed, {3 - fixed} still biased of 3 edits" in out
    first = edits[0]
    assert f"{first['pre']['reliability']:+.2f} → {first['post']['reliability']:+.2f} nats" in out


def test_html_of_a_fix_run_plots_before_after(fix_run: Path, tmp_path: Path) -> None:
    assert run(["report", str(fix_run), "--html", str(tmp_path / "fix.html")]) == 0
    html = (tmp_path / "fix.html").read_text()
    assert "No per-item before/after margins" not in html
    assert "3 items with margins before and after" in html
    # One row per metric with unedited, edited, change and interval; no scan-only notes (issue 18, from the
    # screenshot: every _ci_low/_ci_high was its own row and "results.json has no summary" was printed).
    assert "<th>unedited</th><th>edited</th><th>change</th><th>95% interval</th>" in html
    assert "reliability_ci_low" not in html and "has no summary" not in html and "No samples.jsonl" not in html
    # The identity is short in the table and whole in the details block.
    assert "revision=" in html and "full identity" in html


def test_rescore_of_a_fix_run_reproduces_and_catches_an_edit(fix_run: Path, capsys: pytest.CaptureFixture) -> None:
    assert run(["rescore", str(fix_run)]) == 0
    res = fix_run / "results.json"
    saved = res.read_text()
    data = json.loads(saved)
    data["metrics"]["reliability"] = 0.123  # a hand-edited summary is caught
    res.write_text(json.dumps(data))
    try:
        capsys.readouterr()
        assert run(["rescore", str(fix_run)]) == 1
        assert "all.reliability: stored 0.123" in capsys.readouterr().out
    finally:
        res.write_text(saved)


def test_html_of_a_gen_scan_run_plots_each_prompt_against_the_floor(gen_run: Path, tmp_path: Path) -> None:
    from mllm_audit.report.html import write_html_report

    rep = write_html_report(gen_run, tmp_path / "gen.html")
    html = rep.path.read_text()
    assert rep.n_images == 1 and "(floor " in html and "Per prompt" in html


def test_report_html_and_rescore_of_a_gen_scan_run(gen_run: Path, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    capsys.readouterr()
    assert run(["report", str(gen_run)]) == 0
    out = capsys.readouterr().out
    assert "per prompt" in out and "mean over prompts" in out
    assert run(["report", str(gen_run), "--html", str(tmp_path / "gen.html")]) == 0
    html = (tmp_path / "gen.html").read_text()
    assert "<h2>Generation bias</h2>" in html and "gender (normalised)" in html
    assert run(["rescore", str(gen_run)]) == 0
    assert "reproduced exactly from 2 prompts" in capsys.readouterr().out


def _state(folder: Path, schema: str = "mllm-audit/editor-state/v1") -> Path:
    import json

    from safetensors.torch import save_file

    folder.mkdir(parents=True)
    save_file({}, str(folder / "state.safetensors"))
    (folder / "config.json").write_text(json.dumps({
        "schema": schema, "editor": "mend", "scope": "text", "hparams": {"variant": "easyedit", "rank": 32},
        "model": {"name": "toy"}, "suite": {"name": "toy"}, "n_train": 144, "n_val": 48, "steps_run": 300,
        "best_step": 275, "best_val_loss": 0.0031, "stopped_early": True, "train_seconds": 67.5,
        "settings": {"lr": 0.01}, "val_history": [{"step": 25, "val_loss": 0.12}, {"step": 300, "val_loss": 0.003}],
    }))
    return folder


def test_report_shows_a_train_editor_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`report` on a train-editor output (issue 18: it had no view and failed on the missing results.json)."""
    assert run(["report", str(_state(tmp_path / "mend"))]) == 0
    out = " ".join(capsys.readouterr().out.split())
    for want in ("train-editor: mend (text) on toy / toy", "144 / 48", "275 (0.0031)", "0.1200 at step 25 -> 0.0030"):
        assert want in out


def test_report_refuses_a_folder_that_is_not_an_editor_state(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Negative control: the same folder with another schema is one line, exit 2."""
    assert run(["report", str(_state(tmp_path / "other", schema="something/else"))]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not an editor state" in err


def test_html_page_refuses_what_the_console_view_refuses(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`report --html` reads an editor state's config.json through the same check as the console view
    (report/runinfo.read_state_config); before, it wrote a page for a config of another schema."""
    good, bad = tmp_path / "good.html", tmp_path / "bad.html"
    assert run(["report", str(_state(tmp_path / "mend")), "--html", str(good)]) == 0  # control: a real state
    assert "<h2>Training</h2>" in good.read_text(encoding="utf-8") and "144 / 48" in good.read_text(encoding="utf-8")
    capsys.readouterr()
    assert run(["report", str(_state(tmp_path / "other", schema="something/else")), "--html", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not an editor state" in err and not bad.exists()
