"""Every command that loads a model checks dtype/device names first (runs/options.py): before, only
scan did, and `fix --dtype fp33` loaded the model and the suite before failing."""

from __future__ import annotations

import pytest

from mllm_audit.cli import run

CASES = [
    (["fix", "--dtype", "fp33"], "--dtype"),
    (["gen-scan", "--device", "gpu"], "--device"),
    (["train-editor", "--output", "never-written", "--dtype", "half"], "--dtype"),
    (["study", "batch", "--device", "tpu"], "--device"),
    (["locate", "--device", "cuda:x"], "--device"),
    (["scan", "--dtype", "fp33"], "--dtype"),
    (["fix", "--editor", "ft-l", "--balanced-from", "generations"], "--balanced-from"),
]


@pytest.mark.parametrize(("argv", "option"), CASES)
def test_bad_load_option_fails_before_any_load(argv: list[str], option: str, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    def no_load(*_a: object, **_k: object) -> None:
        raise AssertionError("a model was loaded before the option check")

    monkeypatch.setattr("mllm_audit.models.load_model", no_load)
    monkeypatch.setattr("mllm_audit.suites.items.load_suite", no_load)
    assert run(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and option in err[0]


def test_good_options_pass_the_same_check() -> None:
    """Negative control: the check itself accepts every name the loader knows."""
    from mllm_audit.models.base import DTYPES
    from mllm_audit.runs.options import check_load_options

    for dtype in DTYPES:
        for device in ("cpu", "cuda", "cuda:1", "mps"):
            check_load_options(dtype, device)


@pytest.mark.parametrize(("argv", "option"), [*CASES, (["fix", "--editor", "nope"], "nope"),
                                               (["train-editor", "--editor", "ft-l", "--output", "x"], "--editor")])
def test_option_errors_come_before_torch_is_imported(argv: list[str], option: str) -> None:
    """A typo costs a fraction of a second: the check runs before torch (about 2-6 s) is imported."""
    import subprocess
    import sys

    code = ("import sys; from mllm_audit.cli import run; rc = run(sys.argv[1:]); "
            "print(rc, 'torch' in sys.modules, file=sys.stderr)")
    out = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True).stderr
    lines = out.strip().splitlines()
    assert option in lines[0] and lines[-1] == "2 False", out
