"""Run folders and their records: `samples.jsonl` (one line per item) and `results.json`.

A run folder is written so that it never lies: samples are appended and flushed as they are
scored, and `results.json` is replaced atomically (temporary file, then rename) and says
`complete: false` until the last item is in. Every sample line carries what is needed to
recompute its metric without the model (`rescore`).
"""

from __future__ import annotations

import json
import os
import re
import time
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mllm_audit.errors import AuditError
from mllm_audit.runs.record import RESULTS_SCHEMA as _RECORD_SCHEMA
from mllm_audit.util.files import atomic_write_json

if TYPE_CHECKING:
    from mllm_audit.util.folders import RunLock

SAMPLE_SCHEMA = "mllm-audit/sample/v1"
RESULTS_SCHEMA = _RECORD_SCHEMA  # the run record's version lives with its dataclasses (runs/record.py)
DEFAULT_RUNS_DIR = Path("mllm-audit-runs")


def new_run_id() -> str:
    return time.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:8]


def default_run_dir(command: str, model: str, suite: str) -> Path:
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{model}-{suite}").strip("_")[:80]
    return DEFAULT_RUNS_DIR / f"{time.strftime('%Y%m%d-%H%M%S')}-{command}-{slug}"


def read_results(run_dir: Path) -> dict[str, Any]:
    """results.json of a run folder as written (an older schema in today's units), after type-checking it
    through the run record (runs/record.py); not normalised further, so that a rewrite (`rescore --write`)
    changes only what it means to."""
    from mllm_audit.runs.record import RunRecord, read_results_json

    data = read_results_json(run_dir)  # older schemas converted to today's units (runs/record.py)
    RunRecord.from_dict(data, str(Path(run_dir) / "results.json"))
    return data


class RunWriter:
    """Owns one run folder: the samples file (append + flush) and results.json (atomic)."""

    def __init__(
        self, out_dir: Path, run_id: str, samples_name: str = "samples.jsonl", append: bool = False,
        lock: RunLock | None = None,
    ) -> None:
        """`append=True` continues an existing samples file (resume, shard files) instead of starting it.

        Every run folder goes through here, so here the output guard's rules hold for all of them: a
        fresh run of a command that did not lock the folder itself (and so did not check it) starts only
        in a new or empty folder (util/folders.check_run_folder), and locks it against a second writer.
        A command that did lock and check it passes its `lock`: only that holder skips the check (a
        second writer in the same process, holding no lock of its own, is refused like any other)."""
        from mllm_audit.util.folders import RunLock, check_run_folder

        self.dir = Path(out_dir)
        self.run_id = run_id
        self._lock: RunLock | None = None
        self._writing: Any = None
        if lock is not None and not (lock.held and lock.folder.resolve() == self.dir.resolve()):
            raise ValueError(f"RunWriter({self.dir}): the lock passed is not held on this folder")
        if not append and lock is None:
            check_run_folder(self.dir, "run", resume=False)
            self._lock = RunLock(self.dir, "run").acquire()
        self.samples_path = self.dir / samples_name
        self.results_path = self.dir / "results.json"
        try:
            self.samples_path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = open(self.samples_path, "a" if append else "w", encoding="utf-8")
        except OSError as e:
            if self._lock is not None:
                self._lock.release()
            raise AuditError(f"cannot write {self.samples_path}: {e.strerror}") from None
        from mllm_audit.util.faults import writing

        self._writing = writing(self.samples_path, "the samples written before it are kept (--resume continues "
                                                   "a scan or gen-scan)")
        self._writing.__enter__()

    def write_results(self, results: Mapping[str, Any]) -> None:
        atomic_write_json(self.results_path, results)

    def append(self, records: Iterable[Mapping[str, Any]]) -> None:
        """Append records and push them to disk, so a killed run keeps every finished chunk."""
        self._fh.write("".join(json.dumps(rec, allow_nan=False) + "\n" for rec in records))
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self, *exc: Any) -> None:
        """Close the samples file and drop the lock; `exc` (from __exit__) marks a failed writer."""
        if self._writing is not None:
            try:
                self._writing.__exit__(*(exc or (None, None, None)))
            except BaseException:  # noqa: BLE001, S110 - the caller's exception, re-raised by it
                pass
            self._writing = None
        if not self._fh.closed:
            self._fh.close()
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def __enter__(self) -> RunWriter:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close(*exc)
