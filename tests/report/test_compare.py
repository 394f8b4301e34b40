"""`rescore` reproduces a run's summary from its samples; `compare` pairs two runs on shared items."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from runfolders import make_run, rows  # the shared run-folder builder (real sample/results format)

from mllm_audit.cli import run
from mllm_audit.metrics.bias import bias_summary
from mllm_audit.report.compare import compare_runs, rescore
from mllm_audit.util.files import read_jsonl


def _grouped_run(folder: Path) -> Path:
    items = rows("gender", 12, {0, 1, 2, 5}, meta={"condition": "planted"}) + rows(
        "gender", 12, {0}, meta={"condition": "control"}
    )
    items = [(f"{c}-{i}", b, cl, m, meta) for i, (_, b, cl, m, meta) in enumerate(items) for c in ["x"]]
    return make_run(folder, items + rows("race", 9, {1, 2, 3, 4, 5}, per_cluster=3), group_by="condition")


def test_rescore_reproduces_the_summary_exactly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = _grouped_run(tmp_path / "run")
    stored = json.loads((run_dir / "results.json").read_text())["summary"]
    assert list(stored) == ["gender/planted", "gender/control", "race", "all"]
    res = rescore(run_dir)
    assert res.matches and res.mismatches == [] and not res.written
    assert res.summary == stored  # every float bit for bit, intervals included
    assert stored["gender/planted"]["pct_biased"] == 100 * (4 / 12) and stored["race"]["n_clusters"] == 3
    assert run(["rescore", str(run_dir)]) == 0
    assert "summary reproduced exactly from 33 samples" in capsys.readouterr().out


def test_rescore_detects_and_rewrites_a_tampered_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = _grouped_run(tmp_path / "run")
    path = run_dir / "results.json"
    results = json.loads(path.read_text())
    results["summary"]["race"]["pct_biased"] = 10.0
    del results["summary"]["gender/control"]
    path.write_text(json.dumps(results))
    assert run(["rescore", str(run_dir)]) == 1
    out = capsys.readouterr().out
    assert "race.pct_biased: stored 10.0, recomputed 55.55555555555556" in out
    assert "row 'gender/control' missing from the stored summary" in out
    assert json.loads(path.read_text())["summary"]["race"]["pct_biased"] == 10.0  # untouched without --write
    assert run(["rescore", str(run_dir), "--write"]) == 0
    fixed = json.loads(path.read_text())
    assert fixed["summary"] == bias_summary(read_jsonl(run_dir / "samples.jsonl"), "condition")
    assert {k: v for k, v in fixed.items() if k != "summary"} == {
        k: v for k, v in results.items() if k != "summary"
    }
    assert sorted(p.name for p in run_dir.iterdir()) == ["results.json", "samples.jsonl"]  # no temp file left
    assert rescore(run_dir).matches


def test_rescore_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = make_run(tmp_path / "run", rows("gender", 4, {0}))
    (run_dir / "samples.jsonl").write_text('{"item_id": "a"\n')
    assert run(["rescore", str(run_dir)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "samples.jsonl:1: malformed JSON" in err


def test_compare_pairs_shared_items(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """B flips 8 of 30 (one image each) gender items to biased; race is unchanged; B has 3 extra items."""
    race = rows("race", 20, set(range(10)))
    a = make_run(tmp_path / "a", rows("gender", 30, set(range(6)), per_cluster=1) + race)
    extra = [(f"new{i}", "gender", f"n{i}", 1.0, {}) for i in range(3)]
    b = make_run(tmp_path / "b", rows("gender", 30, set(range(14)), per_cluster=1) + race + extra)
    cmp = compare_runs(a, b)
    assert (cmp.n_a, cmp.n_b, cmp.n_shared) == (50, 53, 50)
    by = {r.label: r for r in cmp.rows}
    assert list(by) == ["gender", "race", "all"]
    g = by["gender"].pct_biased
    assert (g.n, g.mean_a, g.diff) == (30, 20.0, pytest.approx(100 * 8 / 30))  # percent, points
    assert g.p_value < 0.01 and g.ci_low > 0
    assert by["gender"].mean_margin.diff == pytest.approx(2 * 8 / 30)
    r = by["race"].pct_biased
    assert (r.diff, r.p_value) == (0.0, 1.0)
    assert by["all"].pct_biased.diff == pytest.approx(100 * 8 / 50)
    assert run(["compare", str(a), str(b)]) == 0
    out = capsys.readouterr().out
    assert "B - A on 50 shared items" in out
    assert re.search(r"20\.0 │\s+46\.7 │\s+\+26\.7", out) and re.search(r"50\.0 │\s+50\.0 │", out) and "1.000" in out
    assert max(len(line) for line in out.splitlines() if "│" in line) <= 80  # fits an 80-column terminal


def test_compare_refuses_runs_without_shared_items(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = make_run(tmp_path / "a", rows("gender", 4, {0}))
    b = make_run(tmp_path / "b", rows("race", 4, {0}))
    assert run(["compare", str(a), str(b)]) == 2
    assert "share no item_id" in capsys.readouterr().err
