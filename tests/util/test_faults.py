"""Fault injection (run in CI): a full disk, a read-only folder, SIGKILL in the middle of a write.

Each must leave the user's files as they were, print one line naming the path and what was kept
(exit 2, never 1: CI reads 1 as "a bias check failed"), and the next run must clean up after it.

The disk is a real one where the test may mount (root, as in CI containers): a 512 KiB tmpfs, and
a tmpfs remounted read-only. Elsewhere a full disk is simulated by making the writer's `open()`
raise ENOSPC at util/files.py (the layer every whole-file write goes through), and a read-only
folder is a chmod 555 folder (EACCES), or for root, which chmod does not stop, the same simulation
with EROFS. The model save on a full disk needs the real tmpfs (safetensors writes in native code)
and is skipped without it. MLLM_AUDIT_TEST_NO_MOUNT=1 runs the simulations where mounting works.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from runfolders import make_run, rows

from mllm_audit.cli import run

ROOT = Path(__file__).resolve().parents[2]


def _mount(folder: Path, options: str) -> bool:
    if os.geteuid() != 0 or os.environ.get("MLLM_AUDIT_TEST_NO_MOUNT"):  # the latter: exercise the simulation
        return False
    folder.mkdir(parents=True, exist_ok=True)
    return subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)],
                          capture_output=True).returncode == 0


@pytest.fixture()
def small_disk(tmp_path: Path) -> Iterator[Path | None]:
    """A 512 KiB tmpfs (None where mounting is not allowed)."""
    disk = tmp_path / "disk"
    if not _mount(disk, "size=512k"):
        yield None
        return
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


@pytest.fixture()
def run_dir(tmp_path: Path) -> Path:
    return make_run(tmp_path / "run", rows("gender", 40, set(range(10))))


def one_line(err: str) -> str:
    """The one error line (progress notes on stderr before it are not errors)."""
    lines = [line for line in err.strip().splitlines() if line.startswith("mllm-audit: error")]
    assert len(lines) == 1 and err.strip().endswith(lines[0]), err
    return lines[0]


def _fill(disk: Path) -> None:
    """Leave 8 KiB free: the user's own file takes the rest."""
    (disk / "users-data.bin").write_bytes(b"u" * (504 << 10))


def _refuse_writes(monkeypatch: pytest.MonkeyPatch, code: int) -> None:
    """The simulation: every file util/files.py opens for writing fails with `code` (ENOSPC, EROFS)."""
    import mllm_audit.util.files as files

    real_open = open

    def failing_open(path: object, mode: str = "r", *a: object, **k: object) -> object:
        if "w" in mode:
            raise OSError(code, os.strerror(code), str(path))
        return real_open(path, mode, *a, **k)  # type: ignore[call-overload]

    monkeypatch.setattr(files, "open", failing_open, raising=False)


def test_disk_full_while_writing_the_report(small_disk: Path | None, run_dir: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("matplotlib")
    if small_disk is None:  # simulated: the write of the temporary file fails as on a full disk
        _refuse_writes(monkeypatch, errno.ENOSPC)
        disk = tmp_path / "simulated"
        disk.mkdir()
        (disk / "users-data.bin").write_bytes(b"u" * 100)
    else:
        disk = small_disk
        _fill(disk)
    before = (disk / "users-data.bin").read_bytes()
    assert run(["report", str(run_dir), "--html", str(disk / "r.html")]) == 2
    line = one_line(capsys.readouterr().err)
    assert "disk full" in line and "r.html" in line and "nothing was written" in line
    assert sorted(p.name for p in disk.iterdir() if p.name != "lost+found") == ["users-data.bin"]  # no temp file
    assert (disk / "users-data.bin").read_bytes() == before


def test_disk_full_while_saving_a_model(small_disk: Path | None, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    """safetensors reports ENOSPC in its own exception type; the CLI still names the path (exit 2)."""
    if small_disk is None:
        pytest.skip("needs a real small disk (tmpfs mount as root); the simulated case is the test above")
    (small_disk / "notes.txt").write_text("mine\n")
    code = run(["fix", "-m", "toy", "-s", "toy", "--editor", "ft-l", "--limit", "1", "-q",
                "--save", str(small_disk / "edited"), "-o", str(tmp_path / "run")])
    line = one_line(capsys.readouterr().err)
    assert code == 2 and "disk full" in line and ".edited.tmp-" in line and "is not written" in line
    assert sorted(p.name for p in small_disk.iterdir()) == ["notes.txt"]
    assert (small_disk / "notes.txt").read_text() == "mine\n"


def test_read_only_folder(tmp_path: Path, run_dir: Path, capsys: pytest.CaptureFixture[str],
                          monkeypatch: pytest.MonkeyPatch) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    (ro / "keep.txt").write_text("mine\n")
    mounted = _mount(ro, "size=64k")
    simulated = not mounted and os.geteuid() == 0  # root writes through chmod 555: simulate EROFS
    if mounted:
        (ro / "keep.txt").write_text("mine\n")
        subprocess.run(["mount", "-o", "remount,ro", str(ro)], check=True)
    elif simulated:
        _refuse_writes(monkeypatch, errno.EROFS)
    else:
        ro.chmod(0o555)
    try:
        policy = tmp_path / "p.yaml"
        policy.write_text("checks:\n  - {name: all, metric: pct_biased, max: 60}\n")
        assert run(["gate", "-p", str(policy), "-r", str(run_dir), "--junit", str(ro / "g.xml")]) == 2
        line = one_line(capsys.readouterr().err)
        why = "permission denied" if not (mounted or simulated) else "read-only file system"
        assert why in line and "g.xml" in line and "nothing was written" in line
        assert sorted(p.name for p in ro.iterdir()) == ["keep.txt"] and (ro / "keep.txt").read_text() == "mine\n"
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(ro)], capture_output=True)
        elif not simulated:
            ro.chmod(0o755)


def _cli(args: list[str], cwd: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "MLLM_AUDIT_HASH_CACHE": str(cwd / "h.json")}
    return subprocess.Popen([sys.executable, "-m", "mllm_audit.cli", *args], cwd=cwd, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _kill_when(proc: subprocess.Popen[str], ready: object, timeout: float = 240) -> bool:
    """SIGKILL `proc` as soon as `ready()` is true; False if it ended first."""
    end = time.monotonic() + timeout
    while time.monotonic() < end and proc.poll() is None:
        if ready():  # type: ignore[operator]
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return True
        time.sleep(0.002)
    proc.kill()
    proc.wait()
    return False


def test_sigkill_during_save_is_cleaned_by_the_next_save(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine\n")
    target = tmp_path / "edited"
    args = ["fix", "-m", "toy", "-s", "toy", "--editor", "ft-l", "--limit", "1", "-q", "--save", str(target)]
    for attempt in range(3):
        proc = _cli([*args, "-o", str(tmp_path / f"run{attempt}")], tmp_path)
        if _kill_when(proc, lambda: any(tmp_path.glob(".edited.tmp-*/*.safetensors"))):
            break
    else:
        pytest.fail("the save finished before it could be killed three times")
    assert not target.exists() and list(tmp_path.glob(".edited.tmp-*"))  # no half model under the name
    assert (tmp_path / "notes.txt").read_text() == "mine\n"
    proc = _cli([*args, "-o", str(tmp_path / "again")], tmp_path)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert "left by an interrupted earlier run" in err and ".edited.tmp-" in err
    assert not list(tmp_path.glob(".edited.tmp-*")) and (target / "model.safetensors").is_file()


def test_sigkill_during_train_editor_checkpoint_is_cleaned(tmp_path: Path) -> None:
    for attempt in range(3):  # the checkpoint is being replaced for milliseconds: try again if missed
        out = tmp_path / f"state{attempt}"
        partial = tmp_path / f".state{attempt}.partial"
        args = ["train-editor", "--editor", "mend", "-m", "toy", "-s", "toy", "--steps", "400", "-o", str(out)]
        if _kill_when(_cli(args, tmp_path), lambda p=partial: (p / "checkpoint.tmp").exists()):
            break
    else:
        pytest.fail("train-editor was never caught replacing its checkpoint in three runs")
    assert not out.exists() and (partial / "checkpoint.tmp").exists()
    _, err = _kill_after_note(_cli([*args, "--resume"], tmp_path))
    assert f"removed {partial / 'checkpoint.tmp'}, left by an interrupted earlier run" in err


def _kill_after_note(proc: subprocess.Popen[str]) -> tuple[str, str]:
    """Let the resumed run announce its cleanup, then stop it (training to the end is not the point)."""
    assert proc.stderr is not None
    err = ""
    end = time.monotonic() + 240
    while time.monotonic() < end:
        line = proc.stderr.readline()
        if not line:
            break
        err += line
        if "left by an interrupted earlier run" in line:
            break
    proc.kill()
    proc.wait()
    return "", err


def test_sigkill_during_study_leaves_a_run_that_says_so(tmp_path: Path) -> None:
    """A killed study leaves its own run folder (complete: false); the next study there is refused in one line."""
    out = tmp_path / "study"
    args = ["study", "batch", "-m", "toy", "--editors", "ft-l", "--limit", "4", "--sizes", "1,4", "-o", str(out)]
    proc = _cli(args, tmp_path)
    assert _kill_when(proc, lambda: (out / "records.jsonl").is_file() and (out / "records.jsonl").stat().st_size > 0)
    results = json.loads((out / "results.json").read_text())
    assert results["complete"] is False
    proc = _cli(args, tmp_path)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 2 and one_line(err).endswith("choose another --output")


# ---- refusals name the file ----------------------------------------------------------------------------


def test_pickle_only_model_folder_is_refused_naming_the_file(tmp_path: Path, tiny_blip2_dir: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    """A folder with pytorch_model.bin only: loading it unpickles it (it loaded before, exit 0)."""
    import shutil

    import torch
    from safetensors.torch import load_file

    folder = tmp_path / "pickled"
    shutil.copytree(tiny_blip2_dir, folder)
    torch.save(load_file(folder / "model.safetensors"), folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()
    assert run(["scan", "-m", str(folder), "-s", "toy", "--limit", "1", "-o", str(tmp_path / "run")]) == 2
    line = one_line(capsys.readouterr().err)
    assert str(folder / "pytorch_model.bin") in line and "never unpickles" in line


def test_unknown_safetensors_dtype_names_file_and_tensor(tmp_path: Path) -> None:
    import torch
    from safetensors.torch import save_file

    from mllm_audit.errors import AuditError
    from mllm_audit.util.files import check_safetensors_files

    f = tmp_path / "model.safetensors"
    save_file({"w": torch.zeros(2, 2)}, str(f))
    check_safetensors_files(tmp_path)  # negative control: the good file passes
    f.write_bytes(f.read_bytes().replace(b'"F32"', b'"Z32"', 1))
    with pytest.raises(AuditError, match=r"model\.safetensors: tensor 'w' has unknown dtype 'Z32'"):
        check_safetensors_files(tmp_path)


def test_a_failed_final_rename_puts_the_earlier_output_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`--overwrite` moves the earlier output aside before the new one is renamed into place; a disk
    fault at that last rename must leave the earlier output where it was (the message says "unchanged")."""
    import errno

    from mllm_audit.errors import AuditError
    from mllm_audit.util import folders
    from mllm_audit.util.outputs import write_manifest

    target = tmp_path / "out"
    target.mkdir()
    (target / "weights.txt").write_text("earlier")
    write_manifest(target, "toy-model", "toy train")
    folder = folders.OutputFolder(target, "--out", "toy train", kind="toy-model", overwrite=True)
    tmp = folder.open()
    (tmp / "weights.txt").write_text("new")
    real = os.replace
    moves: list[str] = []

    def failing(src: object, dst: object) -> None:
        if Path(str(dst)).parent == tmp_path:  # renames beside the target (not a manifest written inside)
            moves.append(Path(str(dst)).name)
        if Path(str(src)) == tmp:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(src, dst)  # type: ignore[arg-type]

    monkeypatch.setattr(folders.os, "replace", failing)
    with pytest.raises(AuditError, match="unchanged"):
        folder.commit()
    folder.abandon()
    assert (target / "weights.txt").read_text() == "earlier"
    # The earlier output really was moved aside before the failing rename (else the check above is empty),
    # and moved back: nothing is left beside it for the next run's clean-up to delete.
    assert moves[0].startswith(".out.old-") and moves[-1] == "out"
    assert not list(tmp_path.glob(".out.old-*"))
