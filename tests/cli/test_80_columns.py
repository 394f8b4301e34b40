"""Every `--help`, table and summary readable at COLUMNS=80 without cut names (issue 25): option names
(`--allow-outside-pat…`), the study table's headers (`edi…`), the sft/bpo stages (`contr…`)."""

from __future__ import annotations

import pytest
from rich.console import Console
from typer.main import get_command

from mllm_audit.cli import app, run


def _commands() -> list[tuple[list[str], list[str]]]:
    out = []

    def walk(prefix: list[str], cmd: object) -> None:
        subs = getattr(cmd, "commands", None)
        if subs:
            for name, sub in subs.items():
                walk([*prefix, name], sub)
        else:
            flags = [o for p in cmd.params for o in getattr(p, "opts", []) if o.startswith("--")]  # type: ignore[attr-defined]
            out.append((prefix, flags))

    walk([], get_command(app))
    return out


def _help(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    capsys.readouterr()
    assert run([*argv, "--help"]) == 0
    return capsys.readouterr().out


@pytest.mark.parametrize(("argv", "flags"), _commands(), ids=lambda v: " ".join(v) if v and v[0][:1] != "-" else "")
def test_every_help_fits_80_columns_with_whole_option_names(argv: list[str], flags: list[str],
                                                            monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    text = _help(argv, capsys)
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "…" not in text
    assert [f for f in flags if f not in text] == []


def test_the_rich_help_boxes_would_cut_names_at_80(monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """Negative control: the boxed help the CLI uses on wide terminals, forced at 80 columns."""
    import mllm_audit.cli as cli

    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.setattr(cli, "help_mode", lambda: "rich")
    assert "…" in _help(["fix"], capsys)


def _render(obj: object, width: int = 80) -> str:
    con = Console(width=width, record=True, file=open("/dev/null", "w"))  # noqa: SIM115
    con.print(obj)
    return con.export_text()


STUDY = {"study": "batch", "model": {"name": "toy"}, "suite": {"name": "toy"}, "n_items": 4,
         "table": [{"editor": e, "batch": b, "reliability": 1.0, "t_generality": 0.75, "v_generality": 0.5,
                    "t_locality_top1": 1.0, "m_locality_top1": 0.98, "parity_before": 3.56, "parity_after": 1.81,
                    "parity_planted": 3.47, "edit_s": 0.08} for e in ("ft-l", "serac") for b in (1, 64)]}


def test_the_study_table_stacks_at_80_columns() -> None:
    from mllm_audit.report.studies import study_table, table_rows

    text = _render(study_table(STUDY, width=80))
    header, _ = table_rows(STUDY)
    assert max(len(x) for x in text.splitlines()) <= 80 and "…" not in text
    assert all(f" {h} " in text for h in header)
    # negative control: the one wide table it replaced cuts its headers at 80 columns
    from mllm_audit.report.tables import new_table

    old = new_table("study")
    for h in header:
        old.add_column(h)
    for r in table_rows(STUDY)[1]:
        old.add_row(*r)
    assert "…" in _render(old)


def test_the_unified_stage_table_and_fix_metrics_fit_80_columns() -> None:
    from mllm_audit.report.tables import fix_table, metrics_table

    summary = {g: {"gender": {"normalised": 0.7, "floor": 0.099}, "race": {"normalised": 0.3, "floor": 0.14}}
               for g in ("test", "control")}
    summary["all"] = {"understanding_p_unknown": 0.8, "understanding_skew": 0.0}
    stage = {"summary": summary, "fidelity": 0.997, "adherence": {"gender": 1.0, "race": 0.96}, "pair_gap": 0.0345}
    res = {"editor": {"name": "bpo"}, "model": {"name": "toy-janus-v2"}, "suite": {"name": "gen-toy-v2"},
           "held_out_prompts": ["a"] * 12, "classifier": {"attributes": {"gender": [], "race": []}},
           "stages": {"base": stage, "sft": stage, "sft+bpo": stage}}
    text = _render(fix_table(res))
    assert max(len(x) for x in text.splitlines()) <= 80 and "…" not in text
    assert "control gender norm. (floor 0.099)" in text and "pair gap" in text and "sft+bpo" in text
    from mllm_audit.metrics.catalog import FIX_EXTRA_METRICS, FIX_RATE_METRICS

    m = {k: 0.5 for k in (*FIX_RATE_METRICS, *FIX_EXTRA_METRICS)}
    fix = {"editor": {"name": "ft-l"}, "model": {"name": "toy"}, "suite": {"name": "toy"}, "mode": "batch",
           "n_edits": 64, "metrics": m, "base_metrics": m, "saved_model": {"metrics": m}}
    text = _render(metrics_table(fix))
    assert max(len(x) for x in text.splitlines()) <= 80 and "…" not in text
    assert all(f" {k} " in text for k in m)
