"""Who may write where: run folders, output folders, and the lock that keeps writers apart.

- A run folder is written only by a fresh run of a command (the folder is new, empty, or holds
  no run), or by `--resume` of the same command. A folder holding a model, a suite or an editor
  state is never a run folder.
- One process at a time: `RunLock` holds an exclusive lock file (`flock`, released by the kernel
  when the holder dies, so a killed run never leaves a stale lock); the second writer exits 2
  naming the holder.
- Output folders (`fix --save`, `train-editor --output`) are built under a temporary name beside
  the target and renamed into place only when whole, manifest included: a killed save leaves no
  loadable half-model under the target name.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from mllm_audit.errors import AuditError
from mllm_audit.util.faults import writing
from mllm_audit.util.holders import LOCK_NAME, folder_kind

RESULTS_NAME = "results.json"


def read_command(folder: Path) -> str | None:
    try:
        data = json.loads((Path(folder) / RESULTS_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return str(data.get("command")) if isinstance(data, dict) and data.get("command") else None


def check_run_folder(folder: Path, command: str, resume: bool, flag: str = "--output") -> None:
    """Refuse to write a run into a folder that holds something else, or another run without --resume."""
    path = Path(folder)
    if path.exists() and not path.is_dir():
        raise AuditError(f"{flag} {path} exists and is not a folder")
    from mllm_audit.util.outputs import refuse_inside

    refuse_inside(path, flag)  # a run inside a model folder would change the model's identity
    kind = folder_kind(path)
    if kind in ("model", "editor-state", "suite"):
        raise AuditError(f"{flag} {path} holds a {kind.replace('-', ' ')}; a run is never written there "
                         "(choose another folder)")
    if kind == "files":  # the output guard's rule (util/outputs.py): a folder of the user's is not taken over
        raise AuditError(f"{flag} {path} holds files mllm-audit did not write; refusing to write a run "
                         "there (choose a new or empty folder)")
    if kind == "run":
        other = read_command(path)
        if not resume:
            raise AuditError(f"output folder {path} already holds a run ({other or 'unknown command'}); "
                             f"pass --resume to continue it or choose another {flag}")
        if other != command:
            raise AuditError(f"cannot resume {path}: it holds a {other!r} run, not {command}")


def check_new_output(folder: Path, flag: str) -> None:
    """An output folder (--save, --output) must not exist yet, or be empty: nothing of the user's is replaced."""
    path = Path(folder)
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        kind = folder_kind(path) if path.is_dir() else "file"
        what = f"holds a {kind.replace('-', ' ')}" if kind and kind != "files" else "exists and is not empty"
        raise AuditError(f"{flag} {path} {what}; refusing to overwrite it (choose a new folder)")


def _pid_alive(pid: int) -> bool:
    from mllm_audit.util.outputs import pid_alive

    return pid_alive(pid)


class RunLock:
    """An exclusive lock on a folder for one writing process (a lock file inside it)."""

    def __init__(self, folder: Path, command: str) -> None:
        self.folder = Path(folder)
        self.command = command
        self.path = self.folder / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise AuditError(f"cannot create output folder {self.folder}: {e.strerror}") from None
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            if not _try_lock(fd):
                os.close(fd)
                raise AuditError(f"{self.folder} is being written by another run ({self._holder()}); "
                                 "wait for it or choose another folder")
            # The holder before us may have unlinked the file as we opened it: lock the file that is there.
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        info = {"pid": os.getpid(), "host": socket.gethostname(), "command": self.command,
                "since": time.strftime("%Y-%m-%dT%H:%M:%S")}
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps(info).encode())
        os.fsync(fd)
        self._fd = fd
        return self

    @property
    def held(self) -> bool:
        """Is the lock held now (acquired, not yet released)?"""
        return self._fd is not None

    def _holder(self) -> str:
        try:
            info = json.loads(self.path.read_text(encoding="utf-8"))
            return f"{info.get('command', '?')}, pid {info.get('pid', '?')} on {info.get('host', '?')} " \
                   f"since {info.get('since', '?')}"
        except (OSError, ValueError):
            return "holder unknown"

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)
        except OSError:
            pass
        os.close(self._fd)  # closing drops the lock
        self._fd = None

    def __enter__(self) -> RunLock:
        return self.acquire() if self._fd is None else self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.release()


def _try_lock(fd: int) -> bool:
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: fall back to the pid written in the file
        try:
            info = json.loads(os.read(fd, 4096) or b"{}")
        except ValueError:
            info = {}
        pid = info.get("pid")
        return not (isinstance(pid, int) and pid != os.getpid() and _pid_alive(pid))
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError:
        return False


class OutputFolder:
    """Build a folder under a temporary name beside `target`; `commit()` renames it into place.

    `stable=True` uses a fixed temporary name (`.NAME.partial`) that survives a crash, so a
    resumable writer (train-editor) finds its checkpoints there; otherwise the name carries the pid
    and an unfinished folder is removed on error.
    """

    def __init__(self, target: Path, flag: str, command: str, stable: bool = False, kind: str | None = None,
                 overwrite: bool = False) -> None:
        """`kind` names the output in its manifest (util/outputs.py; default: the command); an earlier
        output of that kind is replaced only with `overwrite`."""
        self.target = Path(target)
        self.flag = flag
        self.command = command
        self.kind = kind or command.replace(" ", "-")
        self.overwrite = overwrite
        suffix = "partial" if stable else f"tmp-{os.getpid()}"
        self.tmp = self.target.parent / f".{self.target.name}.{suffix}"
        self.stable = stable
        self.lock = RunLock(self.tmp, command)
        self.committed = False
        self._writing: Any = None

    def _check(self) -> None:
        from mllm_audit.util.outputs import check_folder, refuse_inside

        refuse_inside(self.target, self.flag)
        if self.overwrite:
            check_folder(self.target, self.kind, self.flag, overwrite=True)
        else:
            check_new_output(self.target, self.flag)

    def open(self) -> Path:
        from mllm_audit.util.outputs import clean_leftovers

        self._check()
        clean_leftovers(self.target)  # temporary folders of a killed earlier run, named on stderr
        if not self.stable and self.tmp.exists():
            shutil.rmtree(self.tmp)
        self.lock.acquire()
        if self.stable:  # a checkpoint being replaced when the run was killed: the last whole one stays
            from mllm_audit.util.console import note

            for left in sorted(self.tmp.glob("*.tmp")):
                left.unlink()
                note(f"removed {left}, left by an interrupted earlier run")
        kept = (f"the checkpoints so far are kept in {self.tmp} (--resume continues)" if self.stable
                else f"the unfinished folder is removed; {self.target} is not written")
        self._writing = writing(self.tmp, kept)
        self._writing.__enter__()
        return self.tmp

    def commit(self) -> Path:
        """Write the manifest, then rename the whole folder into place (the lock file is dropped first;
        an earlier output of the same kind, allowed by `overwrite`, is moved aside and removed)."""
        from mllm_audit.util.faults import named_faults
        from mllm_audit.util.outputs import write_manifest

        self._check()  # nothing appeared there meanwhile
        write_manifest(self.tmp, self.kind, self.command)
        self._end_writing()
        self.lock.release()
        with named_faults(self.tmp, f"the unfinished output is in {self.tmp}; {self.target} is unchanged"):
            for f in self.tmp.rglob("*"):
                if f.is_file():
                    with open(f, "rb") as fh:
                        os.fsync(fh.fileno())
            old = self.target.parent / f".{self.target.name}.old-{os.getpid()}"
            moved = False
            if self.target.is_dir() and any(self.target.iterdir()):
                os.replace(self.target, old)  # an earlier output of this kind (checked above)
                moved = True
            elif self.target.is_dir():
                self.target.rmdir()  # empty (checked above)
            try:
                os.replace(self.tmp, self.target)
            except BaseException:
                if moved:  # the earlier output goes back where it was: "unchanged" stays true
                    os.replace(old, self.target)
                raise
        shutil.rmtree(old, ignore_errors=True)
        self.committed = True
        return self.target

    def _end_writing(self) -> None:
        if self._writing is not None:
            import sys

            try:
                self._writing.__exit__(*sys.exc_info())  # an exception in flight marks this writer as failed
            except BaseException:  # noqa: BLE001, S110 - the same exception, re-raised by the caller
                pass
            self._writing = None

    def abandon(self) -> None:
        """Drop an unfinished temporary folder (not a stable one: it holds the checkpoints)."""
        self._end_writing()
        self.lock.release()
        if not self.stable and not self.committed:
            shutil.rmtree(self.tmp, ignore_errors=True)
