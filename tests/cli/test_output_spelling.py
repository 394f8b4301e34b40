"""One spelling of the output option: `--output` everywhere; `--out` only as a hidden alias that says so."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
from cliwalk import leaf_commands
from runfolders import make_run, rows

from mllm_audit.cli import app, options, run
from mllm_audit.cli.options import OUT_RENAMED


def visible_spellings(command: typer.Typer | object) -> dict[str, list[str]]:
    """command -> every flag its --help shows (hidden options left out)."""
    return {name: [o for p in cmd.params if not getattr(p, "hidden", False) for o in (*p.opts, *p.secondary_opts)]
            for name, cmd in leaf_commands(command).items()}


def spelled_out(command: typer.Typer | object) -> list[str]:
    return sorted(name for name, flags in visible_spellings(command).items() if "--out" in flags)


def test_no_visible_option_is_spelled_out() -> None:
    flags = visible_spellings(app)
    assert spelled_out(app) == []
    assert sum("--output" in f for f in flags.values()) >= 12  # the walk sees the commands (scan, fix, suites ...)
    assert [n for n in ("suites frame", "suites build pata", "toy train", "card", "convert minigpt4")
            if "--output" not in flags[n]] == []


def test_a_visible_out_is_caught() -> None:
    """Negative control: a command whose --out is visible (not the hidden alias) fails the same check."""
    rogue = typer.Typer()

    @rogue.command()
    def export(out: Path = typer.Option(..., "--out"), hidden: Path | None = options.output_alias()) -> None: ...

    @rogue.command()
    def other() -> None: ...

    assert spelled_out(rogue) == ["export"]


def test_the_old_spelling_still_works_and_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    scan = make_run(tmp_path / "scan", rows("gender", 4, {0}), extra={"finished_at": "2026-01-01T00:00:00"})
    assert run(["card", str(scan), "--out", str(tmp_path / "old.md")]) == 0
    assert capsys.readouterr().err.splitlines()[0] == OUT_RENAMED
    assert run(["card", str(scan), "--output", str(tmp_path / "new.md")]) == 0
    assert OUT_RENAMED not in capsys.readouterr().err  # the new spelling: no notice
    old, new = (tmp_path / "old.md").read_text(), (tmp_path / "new.md").read_text()
    assert old == new and "pct_biased" in new
    # Both spellings at once: refused in one line (after the notice), nothing written.
    assert run(["card", str(scan), "--out", str(tmp_path / "a.md"), "--output", str(tmp_path / "b.md")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [OUT_RENAMED, "mllm-audit: error: give --output once (--out is its old spelling)"]
    assert not (tmp_path / "a.md").exists() and not (tmp_path / "b.md").exists()


def test_a_required_output_is_named_when_missing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["suites", "frame", str(tmp_path), "--suite", "toy"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "suites frame needs --output" in err[0]
