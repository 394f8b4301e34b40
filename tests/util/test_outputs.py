"""The output guard (util/outputs.py), and every output option of the CLI going through it.

`test_every_path_option_is_classified` walks the CLI: each Path option is an input or an output; a new
output option must be listed in OUTPUT_CASES, and `test_output_option_refuses_a_users_target` then runs
it against a user's file or model folder and checks it is refused (exit 2, one line, untouched). The
negative controls run the same checks on a command that writes without the guard.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
import typer
from cliwalk import leaf_commands

from mllm_audit.cli import app, run
from mllm_audit.cli.options import OUT_RENAMED
from mllm_audit.errors import AuditError
from mllm_audit.util import outputs

# Path options that name something the command reads.
INPUT_OPTIONS = {
    ("scan", "data_dir"), ("fix", "editor_state"), ("fix", "data_dir"), ("gate", "policy"), ("gate", "report"),
    ("report", "run_dir"), ("compare", "run_a"), ("compare", "run_b"), ("rescore", "run_dir"),
    ("locate", "images"), ("train-editor", "data_dir"), ("study", "data_dir"), ("suites frame", "run_dir"),
    ("suites frame", "data_dir"), ("suites build vlstereoset", "csv"), ("suites build vlstereoset", "images"),
    ("suites build pata", "files"), ("suites build pata", "captions"), ("suites build pata", "images"),
    ("suites build pairs", "src"), ("convert minigpt4", "vit"), ("convert minigpt4", "qformer"),
    ("convert minigpt4", "proj"), ("convert minigpt4", "llama"), ("card", "runs"), ("suites export", "data_dir"),
    ("fix", "hparams_file"), ("train-editor", "hparams_file"), ("toy train", "init_from"),
}
# Output options that merge into what the user has, by design, and why that is safe.
MERGE_OPTIONS = {
    ("card", "update"): "adds the audit to MODEL_FOLDER/README.md, which is outside the model's identity",
}
# Output options: the argv that writes to {T}; "file" targets get a user's file, "folder" a model folder.
OUTPUT_CASES: dict[tuple[str, str], tuple[str, list[str]]] = {
    ("scan", "output"): ("folder", ["scan", "-m", "toy", "-s", "toy", "-o", "{T}"]),
    ("fix", "output"): ("folder", ["fix", "--editor", "ft-l", "-o", "{T}"]),
    ("fix", "save"): ("folder", ["fix", "--editor", "ft-l", "--save", "{T}", "-o", "{D}/run"]),
    ("gate", "junit"): ("file", ["gate", "-p", "{P}", "-r", "{D}/norun", "--junit", "{T}"]),
    ("gate", "output"): ("folder", ["gate", "-p", "{P}", "-m", "toy", "-s", "toy", "-o", "{T}"]),
    ("report", "html"): ("file", ["report", "{D}", "--html", "{T}"]),
    ("gen-scan", "output"): ("folder", ["gen-scan", "-o", "{T}"]),
    ("locate", "output"): ("folder", ["locate", "-o", "{T}"]),
    ("train-editor", "output"): ("folder", ["train-editor", "--editor", "mend", "-o", "{T}"]),
    ("train-editor", "out_alias"): ("folder", ["train-editor", "--editor", "mend", "--out", "{T}"]),
    ("study", "output"): ("folder", ["study", "batch", "-o", "{T}"]),
    ("suites frame", "output"): ("file", ["suites", "frame", "{D}/norun", "--suite", "toy", "--output", "{T}"]),
    ("suites build vlstereoset", "output"): ("folder", ["suites", "build", "vlstereoset", "--csv", "{C}", "--output",
                                                        "{T}"]),
    ("suites build pata", "output"): ("folder", ["suites", "build", "pata", "--files", "{C}", "--captions", "{C}",
                                                 "--output", "{T}"]),
    ("suites build pairs", "output"): ("folder", ["suites", "build", "pairs", "--src", "{S}", "--output", "{T}"]),
    ("convert minigpt4", "output"): ("folder", ["convert", "minigpt4", "--vit", "{C}", "--qformer", "{C}", "--proj",
                                                "{C}", "--llama", "{D}", "--output", "{T}"]),
    ("toy train", "output"): ("folder", ["toy", "train", "--output", "{T}"]),
    ("toy train", "write_suite"): ("folder", ["toy", "train", "--output", "{D}/model", "--write-suite", "{T}"]),
    ("card", "output"): ("file", ["card", "{D}/norun", "--output", "{T}"]),
    ("suites export", "output"): ("folder", ["suites", "export", "{T}"]),
}
# The old spelling `--out` (hidden, cli/options.output_alias) of each command that had it goes through the same
# guard; its one extra stderr line ("--out is now --output") is left out of the one-line check.
OLD_SPELLING = ("suites frame", "suites build vlstereoset", "suites build pata", "suites build pairs",
                "convert minigpt4", "toy train", "card")
for _cmd in OLD_SPELLING:
    _kind, _argv = OUTPUT_CASES[(_cmd, "output")]
    OUTPUT_CASES[(_cmd, "out_alias")] = (_kind, ["--out" if a == "--output" else a for a in _argv])


def path_options(command: typer.Typer | object) -> set[tuple[str, str]]:
    """(command, parameter) for every option or argument typed as a Path."""
    found: set[tuple[str, str]] = set()
    for prefix, cmd in leaf_commands(command).items():
        sig = inspect.signature(cmd.callback)
        found.update((prefix, p.name) for p in cmd.params if "Path" in str(sig.parameters[p.name].annotation))
    return found


def unclassified(command: typer.Typer) -> set[tuple[str, str]]:
    return path_options(command) - INPUT_OPTIONS - set(OUTPUT_CASES) - set(MERGE_OPTIONS)


def test_every_path_option_is_classified() -> None:
    assert unclassified(app) == set()
    assert set(OUTPUT_CASES) <= path_options(app)  # no stale entry


def test_a_merge_option_writes_outside_the_model_identity() -> None:
    from mllm_audit.util.identity import MODEL_FILE_SUFFIXES

    assert ".md" not in MODEL_FILE_SUFFIXES  # card --update's README.md does not change what a model is


def _inputs(tmp: Path) -> dict[str, str]:
    policy = tmp / "policy.yaml"
    policy.write_text("checks:\n  - {name: all, metric: pct_biased, max: 60}\n")
    csv = tmp / "in.csv"
    csv.write_text("x\n")
    src = tmp / "pairs"
    (src / "images").mkdir(parents=True)
    (src / "questions.jsonl").write_text("")
    return {"{P}": str(policy), "{D}": str(tmp), "{C}": str(csv), "{S}": str(src)}


def _users_target(tmp: Path, kind: str) -> tuple[Path, dict[str, bytes]]:
    """A user's file, or a user's model folder (config.json + weights), and its bytes."""
    if kind == "file":
        target = tmp / "users-file.txt"
        target.write_bytes(b"the user's own text\n")
        return target, {target.name: target.read_bytes()}
    target = tmp / "users-model"
    target.mkdir()
    (target / "config.json").write_text('{"model_type": "blip-2"}')
    (target / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
    return target, {p.name: p.read_bytes() for p in target.iterdir()}


def bypass(argv: list[str], tmp: Path, kind: str, capsys: pytest.CaptureFixture[str],
           runner: object = run) -> str | None:
    """Why the command `argv` does not go through the guard for a user's target, or None if it does."""
    target, before = _users_target(tmp, kind)
    subs = {**_inputs(tmp), "{T}": str(target)}
    args = [subs.get(a, a) for a in argv]
    args = [a.replace("{D}", subs["{D}"]) for a in args]
    code = runner(args)  # type: ignore[operator]
    err = "".join(line for line in capsys.readouterr().err.splitlines(keepends=True)
                  if line.strip() != OUT_RENAMED)
    if kind == "file":
        after = {target.name: target.read_bytes()} if target.is_file() else {}
    else:
        after = {p.name: p.read_bytes() for p in target.iterdir() if not p.name.startswith(".")} \
            if target.is_dir() else {}
    if after != before:
        return f"{' '.join(argv)}: the user's {kind} changed"
    if code != 2:
        return f"{' '.join(argv)}: exit {code}, not 2"
    if len(err.strip().splitlines()) != 1 or str(target) not in err:
        return f"{' '.join(argv)}: not one line naming the target: {err!r}"
    return None


@pytest.mark.parametrize("key", sorted(OUTPUT_CASES), ids=" ".join)
def test_output_option_refuses_a_users_target(key: tuple[str, str], tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    kind, argv = OUTPUT_CASES[key]
    assert bypass(argv, tmp_path, kind, capsys) is None


def test_a_writer_without_the_guard_is_caught(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Negative control: a command that writes its --out itself fails both checks above."""
    rogue = typer.Typer()

    @rogue.command()
    def export(out: Path = typer.Option(..., "--out")) -> None:
        out.write_text("exported\n")

    @rogue.command()
    def other() -> None: ...

    assert unclassified(rogue) == {("export", "out")}

    def runner(args: list[str]) -> int:
        try:
            rogue(args=args, standalone_mode=False)
        except AuditError:
            return 2
        return 0

    why = bypass(["export", "--out", "{T}"], tmp_path, "file", capsys, runner)
    assert why is not None and "changed" in why


# ---- the guard's rules ------------------------------------------------------------------------------


def test_own_output_is_replaced_only_with_overwrite(tmp_path: Path) -> None:
    f = tmp_path / "gate.xml"
    outputs.write_text(f, outputs.marker_line("gate-junit", "<!--") + "\n<x/>\n", "gate-junit")
    with pytest.raises(AuditError, match="earlier gate-junit; pass --overwrite"):
        outputs.check_file(f, "gate-junit", "--junit")
    assert outputs.check_file(f, "gate-junit", "--junit", overwrite=True) == f
    with pytest.raises(AuditError, match="a gate-junit written by mllm-audit"):  # same bytes, other command
        outputs.check_file(f, "html-report", "--html", overwrite=True)
    f.write_text("<x/>\n")  # the user's file now: --overwrite does not make it ours
    with pytest.raises(AuditError, match="a file mllm-audit did not write"):
        outputs.check_file(f, "gate-junit", "--junit", overwrite=True)


def test_folder_manifest_decides(tmp_path: Path) -> None:
    d = tmp_path / "suite"
    d.mkdir()
    (d / "items.jsonl").write_text("{}\n")
    with pytest.raises(AuditError, match="holds a suite; refusing"):
        outputs.check_folder(d, "suite-build", "--out", overwrite=True)
    outputs.write_manifest(d, "suite-build", "suites build pata", complete=False)
    assert outputs.check_folder(d, "suite-build", "--out") == d  # an unfinished build is continued
    outputs.write_manifest(d, "suite-build", "suites build pata")
    with pytest.raises(AuditError, match="pass --overwrite"):
        outputs.check_folder(d, "suite-build", "--out")
    with pytest.raises(AuditError, match="not a toy-model"):
        outputs.check_folder(d, "toy-model", "--out", overwrite=True)


@pytest.mark.parametrize("name", ["../x", "/abs", "a/b", "a\\b", "..", ".hidden", "", "x..y"])
def test_names_are_plain(name: str) -> None:
    with pytest.raises(AuditError, match="--name"):
        outputs.check_name(name)


def test_plain_name_passes() -> None:
    assert outputs.check_name("vlstereoset-2") == "vlstereoset-2"


def test_suites_build_name_cannot_escape_out(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    csv = tmp_path / "in.csv"
    csv.write_text("x\n")
    out = tmp_path / "out"
    code = run(["suites", "build", "vlstereoset", "--csv", str(csv), "--out", str(out), "--name", "../escaped"])
    assert code == 2 and "--name" in capsys.readouterr().err
    assert not (tmp_path / "escaped.yaml").exists() and not out.exists()


def test_nothing_is_written_into_a_run_or_model_folder(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "results.json").write_text("{}")
    with pytest.raises(AuditError, match="holds a run; mllm-audit writes nothing into"):
        outputs.check_file(run_dir / "report.html", "html-report", "--html")
    assert outputs.check_file(run_dir / "report.html", "html-report", "--html", created=[run_dir])
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    (model / "model.safetensors").write_bytes(b"")
    with pytest.raises(AuditError, match="holds a model"):
        outputs.check_folder(model / "audit", "run", "--output")
    with pytest.raises(AuditError, match="holds a model"):
        outputs.check_file(model / "gate.xml", "gate-junit", "--junit")
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "items.jsonl").write_text("{}\n")
    assert outputs.check_file(suite / "gate.xml", "gate-junit", "--junit")  # beside a suite: its identity holds


def test_leftover_temporary_folders_are_cleaned_and_named(tmp_path: Path) -> None:
    dead = tmp_path / ".edited.tmp-999999999"  # no such process
    dead.mkdir()
    (dead / "model.safetensors").write_bytes(b"half")
    live = tmp_path / f".edited.tmp-{__import__('os').getppid()}"  # a live process: left alone
    live.mkdir()
    lines: list[str] = []
    assert outputs.clean_leftovers(tmp_path / "edited", lines.append) == [dead]
    assert not dead.exists() and live.exists()
    assert lines == [f"removed {dead}, left by an interrupted earlier run"]


def test_step_summary_is_never_a_runs_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    """$GITHUB_STEP_SUMMARY is appended to by protocol, but not when it names a file inside a run."""
    from runfolders import make_run, rows

    run_dir = make_run(tmp_path / "run", rows("gender", 4, {0}))
    policy = tmp_path / "p.yaml"
    policy.write_text("checks:\n  - {name: all, metric: pct_biased, max: 60}\n")
    before = (run_dir / "results.json").read_bytes()
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(run_dir / "results.json"))
    assert run(["gate", "-p", str(policy), "-r", str(run_dir)]) == 2
    assert "holds a run" in capsys.readouterr().err and (run_dir / "results.json").read_bytes() == before
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(tmp_path / "summary.md"))  # negative control: appended
    assert run(["gate", "-p", str(policy), "-r", str(run_dir)]) == 0
    assert "mllm-audit gate: passed" in (tmp_path / "summary.md").read_text()


def test_output_folder_cleans_a_killed_runs_leftover_and_replaces_only_its_own_kind(tmp_path: Path) -> None:
    """What `convert`, `fix --save` and `toy train` write through: util/folders.OutputFolder."""
    from mllm_audit.util.folders import OutputFolder

    target = tmp_path / "converted"
    left = tmp_path / ".converted.tmp-999999999"  # a killed convert's folder (no such process)
    left.mkdir()
    (left / "model.safetensors").write_bytes(b"half")
    folder = OutputFolder(target, "--out", "convert")
    tmp = folder.open()
    assert not left.exists()
    (tmp / "config.json").write_text("{}")
    folder.commit()
    assert outputs.read_manifest(target)["kind"] == "convert"
    again = OutputFolder(target, "--out", "convert")
    with pytest.raises(AuditError, match="refusing to overwrite"):
        again.open()
    replace = OutputFolder(target, "--out", "convert", overwrite=True)
    (replace.open() / "config.json").write_text('{"v": 2}')
    replace.commit()
    assert (target / "config.json").read_text() == '{"v": 2}' and not list(tmp_path.glob(".converted.*"))
    with pytest.raises(AuditError, match="holds a convert written by mllm-audit, not a toy-model"):
        OutputFolder(target, "--out", "toy train", kind="toy-model", overwrite=True).open()
