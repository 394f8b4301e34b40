"""Tables fit an 80-column terminal: names never wrap or truncate; only free text ends in '…'."""

from __future__ import annotations

import pytest
from rich.console import Console

from mllm_audit.cli import run
from mllm_audit.cli.ls import model_rows, short_table, suite_rows


def _render(table: object, width: int = 80) -> list[str]:
    con = Console(width=width, record=True, file=open("/dev/null", "w"))  # noqa: SIM115
    con.print(table)
    return con.export_text().splitlines()


@pytest.mark.parametrize(("rows", "header"), [
    (model_rows, ("model", "family", "weights", "description")),
    (suite_rows, ("suite", "kind", "items", "license", "source", "description")),
])
def test_ls_fits_80_columns_with_whole_names(rows, header) -> None:  # noqa: ANN001
    data = rows()
    lines = _render(short_table(header, data, width=80))
    assert max(len(x) for x in lines) <= 80
    text = "\n".join(lines)
    for row in data:
        assert f" {row[0]} " in text  # the name, whole
    if "source" in header:  # suites: the source steps aside and each description wraps, read whole (issue 25)
        cells = " ".join(" ".join(x.split("│")[-2].split()) for x in lines if x.startswith("│"))
        assert all(" ".join(row[-1].split()) in cells for row in data)
        assert "…" not in text
    else:
        assert len(lines) == len(data) + 5  # one line per entry, no wrapping (borders, header, caption)
    # The negative control: the old layout (every column folding) wrapped names onto two lines.
    from rich.table import Table

    old = Table()
    for col in header:
        old.add_column(col, overflow="fold")
    for row in data:
        old.add_row(*row)
    assert len(_render(old)) > len(data) + 5


def test_ls_long_prints_every_field_in_full(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["ls", "suites", "--long"]) == 0
    out = capsys.readouterr().out
    assert "Standard Occupational Classification" in " ".join(out.split())


def test_scan_table_has_a_legend() -> None:
    from mllm_audit.report.tables import bias_table

    row = {"n": 10, "pct_biased": 80.0, "ci_low": 60.0, "ci_high": 95.0, "mean_margin": 0.5}
    lines = _render(bias_table({"gender/planted": row, "all": row}, "toy on toy"))
    text = " ".join(" ".join(lines).split())
    assert "Red: the 95 % interval lies above 50 %" in text and max(len(x) for x in lines) <= 80


GEN_ATTRS = {"gender": ["male", "female"], "race": ["white", "black", "indian", "asian"]}


def _gen_samples() -> list[dict]:
    out = []
    for i, occ in enumerate(["software developer", "nurse", "chief executive officer"]):
        out.append({"prompt_id": f"p{i}", "occupation": occ, "n_person": 60, "n_images": 64,
                    "counts": {"gender": {"male": 50 - 10 * i, "female": 10 + 10 * i},
                               "race": {"white": 30, "black": 10, "indian": 10, "asian": 10}},
                    "understanding": {"p_male": 0.6, "p_female": 0.3, "p_unknown": 0.1, "skew": 0.3}})
    return out


def _whole(lines: list[str], *cells: str) -> bool:
    """Every cell appears whole on some line (nothing cut with '…' or folded mid-number)."""
    return max(len(x) for x in lines) <= 80 and "…" not in "".join(lines) and all(
        any(c in line for line in lines) for c in cells)


def test_gen_scan_tables_fit_80_columns_whole() -> None:
    """gen-scan's per-prompt and summary tables (issue 18): every value whole at 80 columns. Before,
    each cell folded to 7 characters ('softwa…', '0.60/0…')."""
    from mllm_audit.metrics.generation import gen_summary
    from mllm_audit.report.tables import gen_table, summary_table

    samples = _gen_samples()
    per_prompt = _render(gen_table(samples, GEN_ATTRS, "toy-janus-v2 on gen-toy-v2: per prompt"))
    assert _whole(per_prompt, "software developer", "0.67*", "[0.43, 0.83]", "0.60/0.30/0.10", "male 83%")
    summary = _render(summary_table(gen_summary(samples, GEN_ATTRS), GEN_ATTRS, "mean over prompts"))
    assert _whole(summary, "floor 0.10", "raw 0.33", "gender", "race")


def test_whole_check_fails_on_a_table_too_wide() -> None:
    """Negative control: the same check fails on a table whose cells cannot all fit 80 columns."""
    from mllm_audit.report.tables import new_table

    wide = new_table("wide")
    for k in range(8):
        wide.add_column(f"column {k}")
    wide.add_row(*[f"[0.{k}1, 0.{k}9] value" for k in range(8)])
    assert not _whole(_render(wide), "[0.01, 0.09] value")
