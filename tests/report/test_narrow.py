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
    assert len(lines) == len(data) + 5  # one line per entry, no wrapping (borders, header, caption)
    text = "\n".join(lines)
    for row in data:
        assert f" {row[0]} " in text  # the name, whole
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

    row = {"n": 10, "pct_biased": 0.8, "ci_low": 0.6, "ci_high": 0.95, "mean_margin": 0.5}
    lines = _render(bias_table({"gender/planted": row, "all": row}, "toy on toy"))
    text = " ".join(" ".join(lines).split())
    assert "Red: the 95 % interval lies above 50 %" in text and max(len(x) for x in lines) <= 80
