"""The public API and the CLI say the same thing: one function per command, the command's options as
its arguments (same names), library-only arguments keyword-only. A new option without its API argument
(or the reverse) fails here."""

from __future__ import annotations

import inspect
import subprocess
import sys

import pytest
from cliwalk import leaf_commands

import mllm_audit
from mllm_audit import api
from mllm_audit.cli import app

# command -> API function. `report`'s console and the CLI's --quiet are presentation, not work.
COMMANDS = {
    "scan": "scan", "fix": "fix", "gate": "gate", "report": "report", "compare": "compare",
    "rescore": "rescore", "gen-scan": "gen_scan", "locate": "locate", "train-editor": "train_editor",
    "study": "study", "suites frame": "frame_suite", "toy train": "train_toy",
    "suites export": "export_suite", "card": "card",
}
CLI_ONLY = {"quiet", "out_alias"}  # out_alias: the hidden old spelling `--out` of `--output` (cli/options.py)
# Commands with no API function, and why.
NOT_IN_API = {"ls": "prints the registry (models.cards / suites.items list it)",
              "suites build vlstereoset": "suites.builders.vlstereoset.build_vlstereoset",
              "suites build pata": "suites.builders.pata.build_pata",
              "suites build pairs": "suites.builders.pairs.build_pairs",
              "convert minigpt4": "models.convert.minigpt4"}


def cli_commands() -> dict[str, list[str]]:
    return {name: [p.name for p in cmd.params] for name, cmd in leaf_commands(app).items()}


def split_params(fn: object) -> tuple[list[str], list[str]]:
    ps = inspect.signature(fn).parameters.values()  # type: ignore[arg-type]
    return ([p.name for p in ps if p.kind is not p.KEYWORD_ONLY], [p.name for p in ps if p.kind is p.KEYWORD_ONLY])


def test_every_command_has_an_api_function_or_a_reason() -> None:
    assert sorted(set(cli_commands()) - set(COMMANDS) - set(NOT_IN_API)) == []


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_cli_options_are_the_api_arguments(command: str) -> None:
    options = [o for o in cli_commands()[command] if o not in CLI_ONLY]
    positional, _ = split_params(getattr(api, COMMANDS[command]))
    assert sorted(options) == sorted(positional), f"{command}: CLI {sorted(options)} vs API {sorted(positional)}"


def test_parity_check_catches_a_missing_argument() -> None:
    """Negative control: an API function that lost one option's argument fails the same comparison."""

    def scan_without_seed(model: str = "toy", suite: str = "toy") -> None: ...

    options = [o for o in cli_commands()["scan"] if o not in CLI_ONLY]
    assert sorted(options) != sorted(split_params(scan_without_seed)[0])


def test_top_level_reexports_are_lazy() -> None:
    assert mllm_audit.fix is api.fix and mllm_audit.scan is api.scan
    code = "import sys, mllm_audit; print('torch' in sys.modules, 'mllm_audit.api' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False"]


def test_docs_api_lists_every_function() -> None:
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "api.md").read_text(encoding="utf-8")
    assert [n for n in api.__all__ if f"### `{n}`" not in text] == []
