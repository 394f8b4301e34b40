"""Where `toy train` writes, through the one output guard (util/outputs.py): the model folder is built
under a temporary name and renamed into place whole; `--write-suite` may only replace an earlier toy
suite (its manifest says so) and only with `--overwrite`; neither may be inside the other."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from mllm_audit.errors import AuditError

TOY_MODEL_KIND = "toy-model"
TOY_SUITE_KIND = "toy-suite"


def check_toy_suite(folder: Path, overwrite: bool) -> None:
    """`--write-suite DIR` writes DIR/ and DIR.yaml beside it: both must be new or an earlier toy suite."""
    from mllm_audit.util import outputs

    outputs.check_folder(folder, TOY_SUITE_KIND, "--write-suite", overwrite)
    yaml_path = folder.parent / f"{folder.name}.yaml"
    man = outputs.read_manifest(folder)
    if yaml_path.exists() and (man is None or man["kind"] != TOY_SUITE_KIND):
        raise AuditError(f"--write-suite {folder}: {yaml_path} exists and is not an earlier toy suite's; "
                         "refusing to overwrite it (choose another folder)")


def train_guarded(out: Path, write_suite: Path | None, overwrite: bool, train: Callable[[Path], Any]) -> Any:
    """Run `train(save_dir)` (which saves the model into save_dir) and put the folder in place whole."""
    from mllm_audit.util.files import atomic_write_text
    from mllm_audit.util.folders import OutputFolder
    from mllm_audit.util.outputs import write_manifest

    out = Path(out)
    if write_suite is not None:
        suite = Path(write_suite).resolve()
        model = out.resolve()
        if suite == model or model in suite.parents or suite in model.parents:
            raise AuditError(f"--write-suite {write_suite} and --output {out} overlap; give two separate folders")
        check_toy_suite(Path(write_suite), overwrite)
    folder = OutputFolder(out, "--output", "toy train", kind=TOY_MODEL_KIND, overwrite=overwrite)
    tmp = folder.open()
    try:
        report = train(tmp)
        report.out = str(out)
        atomic_write_text(tmp / "toy_train.json", json.dumps(asdict(report), indent=2) + "\n")
        if write_suite is not None:
            write_manifest(Path(write_suite), TOY_SUITE_KIND, "toy train --write-suite")
        folder.commit()
        return report
    finally:
        if not folder.committed:
            folder.abandon()
