"""`report` and `report --html` on a real run of every type the tool writes (scan, fix in each mode,
fix --editor sft, gen-scan, locate, study, train-editor), each page naming what ran (editor, mode, edits,
state, objective) in its title and header. The runs are the commands' own, on the toy models."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from mllm_audit.cli import run
from mllm_audit.report.runinfo import KINDS, run_kind, run_title, what_ran

COMMANDS = {
    "scan": ["scan", "--limit", "24"],
    "fix-single": ["fix", "--model", "toy", "--limit", "2"],
    "fix-batch": ["fix", "--model", "toy", "--limit", "4", "--mode", "batch", "--batch-edits", "4"],
    "fix-sequential": ["fix", "--model", "toy", "--limit", "3", "--mode", "sequential"],
    "fix-sft": ["fix", "--editor", "sft", "--set", "sft_epochs=1"],
    "gen-scan": ["gen-scan", "--model", "toy-janus", "--suite", "gen-toy", "-n", "4", "--limit", "2"],
    "locate": ["locate", "-n", "8", "--limit", "3", "--folds", "2"],
    "study": ["study", "batch", "--limit", "2", "--sizes", "1,2", "--editors", "ft-l"],
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("every-run")
    out: dict[str, Path] = {}
    for name, argv in COMMANDS.items():
        out[name] = base / name
        quiet = [] if name == "study" else ["-q"]  # study has no progress bar to silence
        assert run([*argv, *quiet, "-o", str(out[name])]) == 0, name
    out["train-editor"] = base / "mend"
    assert run(["train-editor", "--editor", "mend", "--steps", "3", "--output", str(out["train-editor"])]) == 0
    return out


def _results(folder: Path) -> dict:
    name = "results.json" if (folder / "results.json").is_file() else "config.json"
    return json.loads((folder / name).read_text())


def test_every_kind_has_a_real_run() -> None:
    kinds = {"fix-single": "fix", "fix-batch": "fix", "fix-sequential": "fix", "fix-sft": "fix-unified"}
    assert sorted({kinds.get(n, n) for n in [*COMMANDS, "train-editor"]}) == sorted(KINDS)


@pytest.mark.parametrize("name", [*COMMANDS, "train-editor"])
def test_report_and_html_name_what_ran(runs: dict[str, Path], name: str, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    folder = runs[name]
    res = _results(folder)
    capsys.readouterr()
    assert run(["report", str(folder)]) == 0, capsys.readouterr().err
    console = capsys.readouterr().out
    page = tmp_path / f"{name}.html"
    assert run(["report", str(folder), "--html", str(page)]) == 0, capsys.readouterr().err
    html = page.read_text(encoding="utf-8")
    title = run_title(res)
    assert f"<title>mllm-audit {title}</title>" in html and f"<h1>mllm-audit {title}</h1>" in html
    fields = dict(what_ran(res))
    if run_kind(res) in ("fix", "fix-unified", "train-editor"):
        for key in ("editor", "mode", "edits" if "edits" in fields else "steps", "state", "objective"):
            assert f"<td>{key}</td><td>{fields[key]}</td>" in html.replace("&#x27;", "'"), key
    if run_kind(res) in ("fix", "fix-unified", "study", "locate"):
        assert " ".join(title.split()) in " ".join(console.split())
    assert "Traceback" not in console


def test_fix_pages_of_different_modes_differ_in_their_titles(runs: dict[str, Path]) -> None:
    """Negative control of the naming check: two ft-l runs that differ only in mode get different titles,
    and a title without the mode (the old page: "fix: toy on toy") would not pass the check above."""
    titles = {n: run_title(_results(runs[n])) for n in ("fix-single", "fix-batch", "fix-sequential")}
    assert len(set(titles.values())) == 3
    for name, title in titles.items():  # written out here, not derived from the function under test
        mode = {"fix-batch": r"batch \(4 edits at once\)"}.get(name, name.removeprefix("fix-"))
        assert re.fullmatch(rf"fix: ft-l \(text\), {mode}, [1-9]\d* edits on toy / toy", title), title
    assert not re.fullmatch(r"fix: ft-l \(text\), single, [1-9]\d* edits on toy / toy", "fix: toy on toy")


def test_unified_and_locate_reports_show_their_numbers(runs: dict[str, Path],
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """The KeyError/unknown-type failures of the old report: the numbers of each run are on the page."""
    capsys.readouterr()
    assert run(["report", str(runs["fix-sft"])]) == 0
    out = capsys.readouterr().out
    stages = _results(runs["fix-sft"])["stages"]
    assert list(stages) == ["base", "sft"]
    assert f"{stages['sft']['pair_gap']:.4f}" in out
    loc = _results(runs["locate"])
    assert run(["report", str(runs["locate"])]) == 0
    assert f"verdict: {loc['verdict']}" in capsys.readouterr().out


def test_an_unknown_run_type_is_one_line(tmp_path: Path, runs: dict[str, Path], capsys) -> None:  # noqa: ANN001
    folder = tmp_path / "odd"
    folder.mkdir()
    res = _results(runs["scan"])
    res["command"] = "teleport"
    (folder / "results.json").write_text(json.dumps(res))
    (folder / "samples.jsonl").write_text("")
    capsys.readouterr()
    assert run(["report", str(folder)]) == 2
    assert "does not know run type 'teleport'" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["fix-single", "fix-batch", "fix-sequential"])
def test_fix_pages_lead_with_bias_and_what_broke(runs: dict[str, Path], name: str, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    from mllm_audit.report.headline import fix_headline

    res = _results(runs[name])
    edits = [json.loads(x) for x in (runs[name] / "edits.jsonl").read_text().splitlines()]
    h = fix_headline(res, edits)
    page = tmp_path / "p.html"
    assert run(["report", str(runs[name]), "--html", str(page)]) == 0
    html = page.read_text()
    lead = html.index("bias: "), html.index("roke"), html.index("<th>metric</th>")
    assert lead[0] < lead[1] < lead[2]  # bias, then what broke, then the table
    assert ("Sequential curve" in html) == (name == "fix-sequential")
    capsys.readouterr()
    assert run(["report", str(runs[name])]) == 0
    out = capsys.readouterr().out
    assert out.index(h.bias[:30]) < out.index("┃ metric")
    assert ("broke (beyond tolerance):" in out) == bool(h.broke)


def test_scan_page_explains_its_numbers_and_shows_example_items(runs: dict[str, Path], tmp_path: Path) -> None:
    page = tmp_path / "scan.html"
    assert run(["report", str(runs["scan"]), "--html", str(page)]) == 0
    html = page.read_text()
    assert "<th>% biased 95 % interval</th>" in html and "<th>mean margin 95 % interval (nats)</th>" in html
    assert "95% CI" not in html and not re.search(r"\d - -?\d", html)  # ranges read "a to b"
    gallery = html[html.index("<h2>Example items</h2>"):].split("<h2>")[1]
    assert gallery.count('src="data:image/png;base64,') >= 2 and "most biased:" in gallery
    from mllm_audit.suites.items import load_suite

    first = json.loads((runs["scan"] / "samples.jsonl").read_text().splitlines()[0])
    prompts = {it.prompt for it in load_suite("toy").items}
    shown = re.findall(r"<td>toy/[^<]+</td><td>([^<]+)</td>", gallery)
    assert shown and all(p.replace("&#x27;", "'") in prompts for p in shown) and first["item_id"]


def test_a_scan_whose_suite_is_gone_says_why_there_are_no_examples(runs: dict[str, Path], tmp_path: Path) -> None:
    """Negative control of the gallery check: no suite to read, no thumbnails, and a note saying so."""
    import shutil

    moved = tmp_path / "scan"
    shutil.copytree(runs["scan"], moved)
    res = json.loads((moved / "results.json").read_text())
    res["suite"]["source"] = str(tmp_path / "nowhere.yaml")
    (moved / "results.json").write_text(json.dumps(res))
    assert run(["report", str(moved), "--html", str(tmp_path / "p.html")]) == 0
    html = (tmp_path / "p.html").read_text()
    assert "No examples: its suite could not be read" in html
    assert html[html.index("<h2>Example items</h2>"):].split("<h2>")[1].count("data:image/png") == 0


def test_small_groups_get_a_small_sample_note(tmp_path: Path) -> None:
    from tests.runfolders import make_run, rows

    folder = make_run(tmp_path / "small", rows("gender", 20, set(range(12))) + rows("race", 2, {0}, per_cluster=2))
    assert run(["report", str(folder), "--html", str(tmp_path / "s.html")]) == 0
    html = (tmp_path / "s.html").read_text()
    assert "Small samples: race (1 cluster)" in html and "gender (" not in html.split("Small samples:")[1][:80]


def test_gen_scan_page_has_a_contact_sheet_with_the_classifier_labels(runs: dict[str, Path], tmp_path: Path) -> None:
    page = tmp_path / "gen.html"
    assert run(["report", str(runs["gen-scan"]), "--html", str(page)]) == 0
    html = page.read_text()
    sheet = html[html.index("<h2>Generated images</h2>"):]
    samples = [json.loads(x) for x in (runs["gen-scan"] / "samples.jsonl").read_text().splitlines()]
    labels = [" / ".join(str(p[k]) for k in ("gender", "race") if p.get(k)) if p.get("person", True) else "no person"
              for s in samples for p in s["predictions"][:8]]
    assert re.findall(r"<figcaption><small>([^<]+)</small>", sheet) == labels
    assert sheet.count('src="data:image/png;base64,') == len(labels) == 8


@pytest.mark.skipif(not any(__import__("shutil").which(b) for b in ("chromium", "chromium-browser", "google-chrome")),
                    reason="no headless Chromium (apt-get install chromium)")
def test_every_page_screenshots_in_headless_chromium(runs: dict[str, Path], tmp_path: Path) -> None:
    import importlib.util

    from PIL import Image, ImageStat

    spec = importlib.util.spec_from_file_location("shot", Path(__file__).resolve().parents[2] / "scripts" /
                                                  "screenshot_report.py")
    shot = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(shot)  # type: ignore[union-attr]
    for name, folder in runs.items():
        page = tmp_path / f"{name}.html"
        assert run(["report", str(folder), "--html", str(page)]) == 0
        png = shot.screenshot(page, tmp_path / f"{name}.png", width=1200, height=1600)
        with Image.open(png) as im:
            assert im.size == (1200, 1600)
            assert max(ImageStat.Stat(im.convert("L")).stddev) > 10, name  # a page, not a blank
