"""scan --greedy on the toy world: the free-text answer decoded per item (runs/greedy.py through the one
decoder, models/decode.py) stored in samples.jsonl, classified and summarised per group beside % biased, in
results.json, the console table and the HTML report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mllm_audit.cli import run
from mllm_audit.models import load_model
from mllm_audit.models.decode import greedy_text
from mllm_audit.runs.scan import run_scan
from mllm_audit.suites.items import load_image, load_suite


@pytest.fixture(scope="module")
def toy_greedy(tmp_path_factory: pytest.TempPathFactory) -> tuple[object, Path, object]:
    adapter = load_model("toy")
    out = tmp_path_factory.mktemp("scan") / "run"
    return adapter, out, run_scan(model="toy", suite="toy", output=out, greedy=True, adapter=adapter)


def test_toy_summary_numbers(toy_greedy) -> None:  # noqa: ANN001
    """The toy (a tiny BLIP-2 that never emits EOS) runs on after its answer: its text never *is* an answer
    within 8 tokens, and *begins with* y_more on 313 of 384 items, y_less on 69, neither on 2."""
    _, _, res = toy_greedy
    g = res.results["greedy"]
    assert res.results["options"]["greedy_tokens"] == 8
    assert g["all"]["said"] == {"n": 384, "y_more": 0.0, "y_less": 0.0, "both": 0.0, "neither": 1.0,
                                "prefer_more_and_says_more": 0.0}
    lead = g["all"]["leads"]
    assert (round(lead["y_more"] * 384), round(lead["y_less"] * 384), round(lead["neither"] * 384)) == (313, 69, 2)
    assert g["gender/planted"]["leads"]["y_more"] == 1.0 and g["gender/control"]["leads"]["y_more"] == 0.4375
    # Two computations agree item by item: the text the decoder wrote begins with the answer whose every
    # token is the argmax of the scorer's distributions (lm-eval's is_greedy).
    assert all(s["greedy_leads"] == s["greedy"] for s in res.samples)


def test_samples_store_the_decoded_text(toy_greedy) -> None:  # noqa: ANN001
    adapter, out, res = toy_greedy
    suite = load_suite("toy")
    lines = [json.loads(x) for x in (out / "samples.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [x["greedy_text"] for x in lines] == [s["greedy_text"] for s in res.samples]
    for item, rec in list(zip(suite.items, lines, strict=True))[:3]:
        image = load_image(suite.image_path(item.image)) if item.image else None
        assert rec["greedy_text"] == greedy_text(adapter, item.prompt, item.task, image, 8)
        assert rec["greedy_text"].strip().startswith(item.y_more if rec["greedy_leads"] == "y_more" else item.y_less)


def test_one_token_budget_says_the_answer(tmp_path: Path, toy_greedy) -> None:  # noqa: ANN001
    """Negative control of the strict rule: with one new token the toy's text is one word, so "says" equals
    "begins with" item by item and 12 of the first 24 items say y_more (at 8 tokens none did); the rest say "a"."""
    adapter, _, _ = toy_greedy
    res = run_scan(model="toy", suite="toy", output=tmp_path / "r", greedy=True, greedy_tokens=1, limit=24,
                   adapter=adapter)
    assert res.results["options"]["greedy_tokens"] == 1
    assert all(s["greedy_said"] == s["greedy_leads"] for s in res.samples)
    said = [s["greedy_said"] for s in res.samples]
    assert all(s["greedy_text"].strip() == "a" for s in res.samples if s["greedy_said"] == "neither")
    assert (said.count("y_more"), said.count("y_less"), said.count("neither")) == (12, 0, 12)


def test_console_and_html_show_the_section(toy_greedy, tmp_path: Path,  # noqa: ANN001
                                           capsys: pytest.CaptureFixture[str]) -> None:
    from mllm_audit.report.html import write_html_report

    _, out, _ = toy_greedy
    assert run(["report", str(out)]) == 0
    text = capsys.readouterr().out
    assert "what the model would say" in text and "81.5/18.0" in text
    html = (write_html_report(out, tmp_path / "r.html").path).read_text(encoding="utf-8")
    assert "What the model would say" in html and "81.5/18.0" in html and "prefers &amp; says y_more" in html


@pytest.mark.parametrize("value", ["0", "257", "x"])
def test_bad_greedy_tokens_exit_2(value: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = run(["scan", "-q", "--greedy", "--greedy-tokens", value, "--output", str(tmp_path / "r")])
    assert code == 2 and not (tmp_path / "r").exists()
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_greedy_table_fits_80_columns(toy_greedy) -> None:  # noqa: ANN001
    """The toy's groups fit 80 columns whole; the control: at 60 the same table has to cut cells."""
    import io

    from rich.console import Console

    from mllm_audit.report.greedy import greedy_table

    _, _, res = toy_greedy

    def render(width: int) -> str:
        buf = io.StringIO()
        Console(file=buf, width=width, color_system=None).print(
            greedy_table(res.results["greedy"], "toy on toy: what the model would say", res.results["summary"]))
        return buf.getvalue()

    text = render(80)
    assert max(len(x) for x in text.splitlines()) <= 80 and "…" not in text and "profession/planted" in text
    assert "…" in render(60)


def test_resume_refuses_other_greedy_options(toy_greedy, tmp_path: Path) -> None:  # noqa: ANN001
    """Reused samples carry the old decode: a resume with other greedy options is refused in one line; the same
    options resume (the control)."""
    from mllm_audit.errors import AuditError

    adapter = toy_greedy[0]
    out = tmp_path / "r"
    run_scan(model="toy", suite="toy", output=out, greedy=True, greedy_tokens=2, limit=4, adapter=adapter)
    for other in ({"greedy": True, "greedy_tokens": 3}, {"greedy": False}):
        with pytest.raises(AuditError, match="cannot resume .* greedy"):
            run_scan(model="toy", suite="toy", output=out, resume=True, limit=4, adapter=adapter, **other)
    again = run_scan(model="toy", suite="toy", output=out, greedy=True, greedy_tokens=2, limit=4, resume=True,
                     adapter=adapter)
    assert again.results["options"]["greedy_tokens"] == 2
