"""The HTML report: one self-contained file whose plots are real PNGs, one per applicable section."""

from __future__ import annotations

import base64
import io
import json
import re
from pathlib import Path

import pytest
from PIL import Image
from runfolders import make_run, rows  # the shared run-folder builder (real sample/results format)

from mllm_audit.cli import run
from mllm_audit.report.html import disparity_series, write_html_report
from mllm_audit.util.files import read_jsonl

PNG = re.compile(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"')


def decoded_images(html: str) -> list[Image.Image]:
    out = []
    for b64 in PNG.findall(html):
        img = Image.open(io.BytesIO(base64.b64decode(b64, validate=True)))
        img.load()
        out.append(img)
    return out


def assert_self_contained(html: str) -> None:
    assert "<script" not in html and "http://" not in html and "https://" not in html
    assert not re.search(r'(src|href)="(?!data:)', html)


@pytest.fixture()
def scan_run(tmp_path: Path) -> Path:
    return make_run(tmp_path / "scan", rows("gender", 20, set(range(12))) + rows("race<b>$x", 10, {0, 1}))


def test_scan_report_has_two_plots(scan_run: Path, tmp_path: Path) -> None:
    rep = write_html_report(scan_run, tmp_path / "out" / "report.html")
    html = rep.path.read_text()
    images = decoded_images(html)
    assert rep.n_images == len(images) == 2  # % biased with intervals, margin histograms
    assert all(img.format == "PNG" and img.width > 300 and img.height > 150 for img in images)
    assert rep.sections == ["Run", "% biased per group", "Example items", "Margins"]  # examples: a note here
    assert_self_contained(html)
    assert "race&lt;b&gt;$x" in html and "race<b>" not in html  # escaped in HTML; '$' is no mathtext
    assert "<td>gender</td><td class=\"num\">20</td>" in html and ">60.0<" in html


def test_fix_report_adds_before_after_plot(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path / "fix", rows("gender", 12, set(range(8))),
                       extra={"command": "fix", "metrics": {"reliability": 0.75, "t_locality_kl": 0.01}})
    edits = [{"item_id": s["item_id"], "pre": {"reliability": s["margin"]}, "post": {"reliability": s["margin"] - 1.5}}
             for s in read_jsonl(run_dir / "samples.jsonl")]
    edits.append({"item_id": "no-margins", "pre": {}, "post": {}})
    (run_dir / "edits.jsonl").write_text("".join(json.dumps(e) + "\n" for e in edits))
    rep = write_html_report(run_dir, tmp_path / "fix.html")
    html = rep.path.read_text()
    assert rep.n_images == len(decoded_images(html)) == 3
    assert "Edit" in rep.sections and "reliability" in html and ">0.750<" in html
    assert "12 items with margins before and after; 8 went from biased to unbiased, 0 from unbiased" in html


def _pairs_samples() -> list[tuple[str, str, str, float, dict]]:
    items = []
    for sec in ("occupation", "status"):
        for scen in range(3):
            for q in range(2):
                for race in ("black", "white"):
                    for gender in ("man", "woman"):
                        margin = 0.1 * scen + 0.4 * (gender == "man") + 0.2 * (race == "white")
                        meta = {"section": sec, "scenario": f"s{scen}", "question_id": f"q{q}", "race": race,
                                "gender": gender}
                        items.append((f"{sec}/s{scen}/q{q}/{race}_{gender}", sec, f"{sec}-s{scen}",
                                      margin - 0.3, meta))
    return items


def test_pairs_report_adds_per_person_plot(tmp_path: Path) -> None:
    from mllm_audit.metrics.disparity import disparity_summary

    base = make_run(tmp_path / "tmp", _pairs_samples())
    disparity = disparity_summary(read_jsonl(base / "samples.jsonl"))
    assert disparity["groups"]["all"]["gender_gap"]["mean"] == pytest.approx(0.4)
    run_dir = make_run(tmp_path / "pairs", _pairs_samples(), extra={"disparity": disparity})
    rep = write_html_report(run_dir, tmp_path / "pairs.html")
    html = rep.path.read_text()
    assert rep.n_images == len(decoded_images(html)) == 3
    assert "Parallel-image disparity" in rep.sections and "raw disparity block" in html


def test_unknown_disparity_layout_is_rendered_generically(tmp_path: Path) -> None:
    disparity = {"note": "x", "per_person": [{"person": p, "log_odds": v, "n": 4}
                                             for p, v in (("a", 0.5), ("b", -0.2), ("c", 0.1))]}
    assert disparity_series(disparity) == [("per_person: log_odds", ["a", "b", "c"], [0.5, -0.2, 0.1])]
    run_dir = make_run(tmp_path / "gen", rows("gender", 6, {0}), extra={"disparity": disparity})
    rep = write_html_report(run_dir, tmp_path / "gen.html")
    assert rep.n_images == len(decoded_images(rep.path.read_text())) == 3
    odd = make_run(tmp_path / "odd", rows("gender", 6, {0}), extra={"disparity": {"kind": "pairs", "n": 0}})
    rep = write_html_report(odd, tmp_path / "odd.html")
    html = rep.path.read_text()
    assert rep.n_images == len(decoded_images(html)) == 2 and "No per-person series recognised" in html


def test_incomplete_run_without_samples(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path / "partial", rows("gender", 4, {0}), complete=False)
    (run_dir / "samples.jsonl").unlink()
    rep = write_html_report(run_dir, tmp_path / "partial.html")
    html = rep.path.read_text()
    assert rep.n_images == len(decoded_images(html)) == 1
    assert "<b>incomplete</b>" in html and "No samples.jsonl" in html


def test_report_cli(scan_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "r.html"
    assert run(["report", str(scan_run), "--html", str(out)]) == 0
    assert len(decoded_images(out.read_text())) == 2
    assert "(2 plots)" in capsys.readouterr().err
    assert run(["report", str(scan_run)]) == 0
    text = capsys.readouterr().out
    assert "gender" in text and "60.0 %" in text
    assert run(["report", str(tmp_path / "missing"), "--html", str(out)]) == 2
    assert "run folder not found" in capsys.readouterr().err
